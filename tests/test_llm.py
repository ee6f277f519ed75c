"""The LLM seam: the real AnthropicLLM and SDK client against the fake Messages API."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import anthropic
import pytest
from pydantic import BaseModel

from agents.llm import (
    DEFAULT_PRICES,
    AnthropicLLM,
    LLMError,
    Price,
    Prompt,
    Usage,
    anthropic_llm,
)
from tests.fakes.anthropic_api import (
    FAKE_API_KEY,
    Error,
    FakeAnthropic,
    Hang,
    RecordedRequest,
    StreamError,
    Text,
    ToolUse,
    Truncated,
    estimate_tokens,
)

pytestmark = pytest.mark.anyio

SONNET = "claude-sonnet-5-5"
HAIKU = "claude-haiku-5-5"
EPHEMERAL = {"type": "ephemeral"}
RULES = "You review pull requests. Answer with the submit tool."
SHARED = "diff --git a/app.py b/app.py\n+    total = price * quantity\n" * 100
TASK = "Give your verdict and a score from 0 to 10."
PROMPT = Prompt(rules=RULES, shared=SHARED, task=TASK, max_tokens=512)
GOOD = {"verdict": "ok", "score": 7}


class Answer(BaseModel):
    verdict: str
    score: int


Make = Callable[..., AnthropicLLM]


@pytest.fixture
async def client(fake_anthropic: FakeAnthropic) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with fake_anthropic.client() as real_client:
        yield real_client


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make(client: anthropic.AsyncAnthropic, sleeps: list[float]) -> Make:
    """Build an AnthropicLLM on the fake whose backoff is recorded, not waited."""

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    def build(**overrides: Any) -> AnthropicLLM:
        options: dict[str, Any] = {
            "client": client,
            "models": (SONNET,),
            "call_timeout_s": 5.0,
            "sleep": sleep,
        }
        return AnthropicLLM(**(options | overrides))

    return build


def billed(record: RecordedRequest) -> Usage:
    """The usage the fake billed for one request."""
    assert record.usage is not None
    return Usage(
        input_tokens=record.usage["input_tokens"],
        cache_write_tokens=record.usage["cache_creation_input_tokens"],
        cache_read_tokens=record.usage["cache_read_input_tokens"],
        output_tokens=record.usage["output_tokens"],
    )


async def fails(llm: AnthropicLLM, prompt: Prompt = PROMPT) -> LLMError:
    """The LLMError `llm.ask` raises."""
    with pytest.raises(LLMError) as caught:
        await llm.ask(prompt, Answer)
    return caught.value


# --------------------------------------------------------------------------- success


async def test_success_request_shape_usage_and_cost(
    fake_anthropic: FakeAnthropic, make: Make
) -> None:
    fake_anthropic.script(ToolUse("submit", GOOD))
    reply = await make().ask(PROMPT, Answer)
    assert reply.value == Answer(verdict="ok", score=7)
    (record,) = fake_anthropic.requests
    assert record.forced_tool == "submit" and record.tool_names == ["submit"]
    assert record.stream
    body = record.body
    assert body is not None
    assert body["tools"][0]["input_schema"] == Answer.model_json_schema()
    assert (body["model"], body["max_tokens"]) == (SONNET, 512)
    assert body["system"] == [{"type": "text", "text": RULES, "cache_control": EPHEMERAL}]
    shared, task = body["messages"][0]["content"]
    assert shared == {"type": "text", "text": SHARED, "cache_control": EPHEMERAL}
    assert task == {"type": "text", "text": TASK}
    usage = billed(record)
    assert usage.input_tokens == estimate_tokens(TASK)
    assert usage.cache_write_tokens > estimate_tokens(SHARED) > 1024
    assert usage.cache_read_tokens == 0 and usage.output_tokens > 0
    assert (reply.model, reply.usage, reply.attempts) == (SONNET, usage, 1)
    assert reply.cost_usd == pytest.approx(DEFAULT_PRICES[SONNET].cost(usage))


async def test_second_identical_call_reads_the_cache(
    fake_anthropic: FakeAnthropic, make: Make
) -> None:
    fake_anthropic.default = ToolUse("submit", GOOD)
    llm = make()
    first = await llm.ask(PROMPT, Answer)
    second = await llm.ask(PROMPT, Answer)
    assert second.usage.cache_read_tokens == first.usage.cache_write_tokens > 0
    assert second.usage.cache_write_tokens == 0
    assert second.usage == billed(fake_anthropic.requests[1])
    assert second.cost_usd < first.cost_usd


async def test_prompt_cache_off_sends_no_breakpoints(
    fake_anthropic: FakeAnthropic, make: Make
) -> None:
    fake_anthropic.default = ToolUse("submit", GOOD)
    llm = make(prompt_cache=False)
    await llm.ask(PROMPT, Answer)
    second = await llm.ask(PROMPT, Answer)
    body = fake_anthropic.requests[1].body
    assert body is not None
    assert "cache_control" not in body["system"][0]
    assert all("cache_control" not in b for b in body["messages"][0]["content"])
    assert second.usage.cache_read_tokens == second.usage.cache_write_tokens == 0
    assert second.usage.input_tokens == billed(fake_anthropic.requests[1]).prompt_tokens


# --------------------------------------------------------------------------- backoff


@pytest.mark.parametrize(
    ("headers", "wanted"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "9", "retry-after-ms": "250"}, 0.25),
        ({"retry-after": "3600"}, 20.0),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.5),
        ({}, 0.5),
    ],
)
async def test_rate_limit_waits_as_asked_within_the_cap(
    fake_anthropic: FakeAnthropic,
    make: Make,
    sleeps: list[float],
    headers: dict[str, str],
    wanted: float,
) -> None:
    fake_anthropic.script(
        Error(429, "rate_limit_error", "slow down", headers), ToolUse("submit", GOOD)
    )
    reply = await make(max_backoff_s=20.0).ask(PROMPT, Answer)
    assert reply.value.score == 7 and reply.attempts == 2
    assert [r.status for r in fake_anthropic.requests] == [429, 200]
    (slept,) = sleeps
    assert wanted <= slept <= wanted * 1.1


async def test_default_backoff_doubles_between_attempts(make: Make, sleeps: list[float]) -> None:
    with socket.socket() as probe:  # a port nothing listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with anthropic.AsyncAnthropic(
        api_key=FAKE_API_KEY, base_url=f"http://127.0.0.1:{port}", max_retries=0
    ) as nowhere:
        error = await fails(make(client=nowhere))
    assert error.kind == "connection" and error.transient
    assert len(sleeps) == 2
    assert 0.5 <= sleeps[0] <= 0.55 and 1.0 <= sleeps[1] <= 1.1


# --------------------------------------------------------------------------- transient errors


@pytest.mark.parametrize(
    "failure",
    [
        Error(529, "overloaded_error", "Overloaded"),
        Error(500, "api_error", "Internal"),
        Error(503, "unknown_new_error", "Unavailable"),
        StreamError("overloaded_error", "Overloaded"),
        StreamError("api_error", "Internal"),
    ],
)
async def test_server_trouble_is_retried(
    fake_anthropic: FakeAnthropic, make: Make, sleeps: list[float], failure: Error | StreamError
) -> None:
    fake_anthropic.script(failure, ToolUse("submit", GOOD))
    reply = await make().ask(PROMPT, Answer)
    assert reply.value.verdict == "ok" and reply.attempts == 2
    assert len(fake_anthropic.requests) == 2 and len(sleeps) == 1


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        (Error(529, "overloaded_error", "Overloaded"), "overloaded"),
        (Error(500, "api_error", "Internal"), "server_error"),
        (StreamError("overloaded_error", "Overloaded"), "overloaded"),
    ],
)
async def test_exhausted_attempts_raise_the_last_kind(
    fake_anthropic: FakeAnthropic,
    make: Make,
    sleeps: list[float],
    failure: Error | StreamError,
    kind: str,
) -> None:
    fake_anthropic.script(failure, failure, failure)
    error = await fails(make())
    assert error.kind == kind and error.transient
    assert len(fake_anthropic.requests) == 3
    assert len(sleeps) == 2  # none after the last attempt


async def test_exhausted_model_falls_back_to_the_next(
    fake_anthropic: FakeAnthropic, make: Make
) -> None:
    fake_anthropic.script(
        Truncated("submit", GOOD, output_tokens=50), ToolUse("submit", GOOD, output_tokens=20)
    )
    reply = await make(models=(SONNET, HAIKU), attempts=1).ask(PROMPT, Answer)
    first, second = fake_anthropic.requests
    assert [r.body and r.body["model"] for r in (first, second)] == [SONNET, HAIKU]
    assert reply.model == HAIKU and reply.attempts == 2
    assert reply.usage == billed(first) + billed(second)
    expected = DEFAULT_PRICES[SONNET].cost(billed(first)) + DEFAULT_PRICES[HAIKU].cost(
        billed(second)
    )
    assert reply.cost_usd == pytest.approx(expected)


# --------------------------------------------------------------------------- timeouts


async def test_no_answer_times_out(
    fake_anthropic: FakeAnthropic, make: Make, sleeps: list[float]
) -> None:
    fake_anthropic.script(Hang(), Hang())
    error = await fails(make(call_timeout_s=0.3, attempts=2))
    assert error.kind == "timeout" and "no answer within 0.3 s" in str(error)
    assert len(fake_anthropic.requests) == 2 and len(sleeps) == 1


async def test_stall_after_message_start_times_out(
    fake_anthropic: FakeAnthropic, make: Make
) -> None:
    fake_anthropic.script(Hang(after_start=True), Hang(after_start=True))
    error = await fails(make(call_timeout_s=0.3, attempts=2))
    assert error.kind == "timeout"
    assert len(fake_anthropic.requests) == 2
    assert all(r.started_at is not None for r in fake_anthropic.requests)


async def test_stall_caught_by_the_client_read_timeout(
    fake_anthropic: FakeAnthropic, make: Make
) -> None:
    fake_anthropic.script(Hang(after_start=True))
    async with fake_anthropic.client(timeout=0.2) as impatient:
        error = await fails(make(client=impatient, attempts=1))
    assert error.kind == "timeout" and "stalled mid-stream" in str(error)


async def test_slow_stream_hits_the_outer_deadline(fake_anthropic: FakeAnthropic) -> None:
    slow = ToolUse("submit", {"verdict": "x" * 400, "score": 1}, duration_s=5.0)
    fake_anthropic.script(slow)
    llm = anthropic_llm(api_key=FAKE_API_KEY, base_url=fake_anthropic.base_url, call_timeout_s=0.4)
    try:
        error = await fails(dataclasses.replace(llm, attempts=1, models=(SONNET,)))
    finally:
        await llm.client.close()
    # Deltas arrive every ~0.25 s, so the client's 0.4 s read timeout never fires.
    assert error.kind == "timeout" and "no answer within 0.4 s" in str(error)
    assert fake_anthropic.requests[0].finished_at is None  # the stream was cut short


# --------------------------------------------------------------------------- bad output


async def test_malformed_json_is_retried(fake_anthropic: FakeAnthropic, make: Make) -> None:
    fake_anthropic.script(
        ToolUse("submit", '{"verdict": "x",, "score": 1}'), ToolUse("submit", GOOD)
    )
    reply = await make().ask(PROMPT, Answer)
    assert reply.value.score == 7 and reply.attempts == 2


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (ToolUse("submit", '{"verdict": "x",, "score": 1}'), "not valid JSON"),
        (ToolUse("submit", '{"verdict": "x", "score": '), "score: Field required"),
        (ToolUse("submit", {"verdict": "x", "score": "abc"}), "score: Input should be"),
        (Text("The code looks fine."), "did not call the answer tool"),
    ],
)
async def test_bad_output_is_invalid_output(
    fake_anthropic: FakeAnthropic,
    make: Make,
    sleeps: list[float],
    reply: ToolUse | Text,
    message: str,
) -> None:
    fake_anthropic.script(reply, reply, reply)
    error = await fails(make())
    assert error.kind == "invalid_output" and message in str(error)
    assert len(fake_anthropic.requests) == 3 and len(sleeps) == 2


async def test_truncated_is_retried_then_raised(fake_anthropic: FakeAnthropic, make: Make) -> None:
    fake_anthropic.script(*[Truncated("submit", GOOD, output_tokens=100)] * 3)
    error = await fails(make())
    assert error.kind == "truncated"
    assert len(fake_anthropic.requests) == 3
    spent = [billed(r) for r in fake_anthropic.requests]
    assert error.usage == spent[0] + spent[1] + spent[2]
    assert error.usage.output_tokens == 300
    assert error.cost_usd == pytest.approx(sum(DEFAULT_PRICES[SONNET].cost(u) for u in spent))


async def test_refusal_is_not_retried(
    fake_anthropic: FakeAnthropic, make: Make, sleeps: list[float]
) -> None:
    fake_anthropic.script(Text("I can't help with that.", stop_reason="refusal"))
    error = await fails(make(models=(SONNET, HAIKU)))
    assert error.kind == "refused" and not error.transient
    assert len(fake_anthropic.requests) == 1 and sleeps == []
    assert error.usage == billed(fake_anthropic.requests[0])


async def test_failed_attempts_are_billed_into_the_reply(
    fake_anthropic: FakeAnthropic, make: Make
) -> None:
    fake_anthropic.script(
        Truncated("submit", GOOD, output_tokens=512), ToolUse("submit", GOOD, output_tokens=30)
    )
    reply = await make().ask(PROMPT, Answer)
    first, second = (billed(r) for r in fake_anthropic.requests)
    assert reply.attempts == 2
    assert reply.usage.output_tokens == 542
    assert reply.usage == first + second
    assert second.cache_read_tokens > 0  # the truncated attempt still wrote the cache
    price = DEFAULT_PRICES[SONNET]
    assert reply.cost_usd == pytest.approx(price.cost(first) + price.cost(second))


async def test_fatal_after_transient_carries_all_usage(
    fake_anthropic: FakeAnthropic, make: Make
) -> None:
    fake_anthropic.script(
        Truncated("submit", GOOD, output_tokens=40), Text("No.", stop_reason="refusal")
    )
    error = await fails(make())
    assert error.kind == "refused"
    first, second = (billed(r) for r in fake_anthropic.requests)
    assert error.usage == first + second
    assert error.cost_usd == pytest.approx(DEFAULT_PRICES[SONNET].cost(first + second))


# --------------------------------------------------------------------------- non-transient


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        (Error(401, "authentication_error", "invalid x-api-key"), "auth"),
        (Error(403, "permission_error", "not allowed"), "auth"),
        (Error(402, "billing_error", "credit balance too low"), "billing"),
        (Error(400, "invalid_request_error", "bad"), "bad_request"),
        (Error(413, "request_too_large", "too big"), "bad_request"),
    ],
)
async def test_non_transient_errors_raise_at_once(
    fake_anthropic: FakeAnthropic, make: Make, sleeps: list[float], failure: Error, kind: str
) -> None:
    fake_anthropic.script(failure)
    error = await fails(make(models=(SONNET, HAIKU)))
    assert error.kind == kind and not error.transient
    assert str(error) == f"HTTP {failure.status}: {failure.message}"
    assert len(fake_anthropic.requests) == 1 and sleeps == []
    assert error.usage == Usage() and error.cost_usd == 0.0


async def test_wrong_key_is_auth_through_the_production_builder(
    fake_anthropic: FakeAnthropic,
) -> None:
    llm = anthropic_llm(api_key="sk-wrong", base_url=fake_anthropic.base_url)
    try:
        error = await fails(llm)
    finally:
        await llm.client.close()
    assert error.kind == "auth" and "HTTP 401" in str(error)
    (record,) = fake_anthropic.requests
    assert record.status == 401


async def test_not_found_falls_back_to_the_next_model(
    fake_anthropic: FakeAnthropic, make: Make, sleeps: list[float]
) -> None:
    fake_anthropic.script(
        Error(404, "not_found_error", f"model: {SONNET}"), ToolUse("submit", GOOD)
    )
    reply = await make(models=(SONNET, HAIKU)).ask(PROMPT, Answer)
    first, second = fake_anthropic.requests
    assert first.body is not None and first.body["model"] == SONNET
    assert second.body is not None and second.body["model"] == HAIKU
    assert reply.model == HAIKU and reply.attempts == 2
    assert reply.cost_usd == pytest.approx(DEFAULT_PRICES[HAIKU].cost(billed(second)))
    assert sleeps == []


async def test_not_found_everywhere_raises_not_found(
    fake_anthropic: FakeAnthropic, make: Make
) -> None:
    missing = Error(404, "not_found_error", "no such model")
    fake_anthropic.script(missing, missing)
    error = await fails(make(models=(SONNET, HAIKU)))
    assert error.kind == "not_found"
    assert len(fake_anthropic.requests) == 2


# --------------------------------------------------------------------------- prefix hook


async def test_prefix_hook_fires_once_after_the_request_started(
    fake_anthropic: FakeAnthropic, make: Make
) -> None:
    seen: list[tuple[int, bool]] = []

    def hook() -> None:
        last = fake_anthropic.requests[-1]
        seen.append((len(fake_anthropic.requests), last.started_at is not None))

    fake_anthropic.script(
        ToolUse("submit", GOOD), Error(429, "rate_limit_error"), ToolUse("submit", GOOD)
    )
    llm = make()
    await llm.ask(PROMPT, Answer, on_prefix_cached=hook)
    assert seen == [(1, True)]
    await llm.ask(PROMPT, Answer, on_prefix_cached=hook)
    assert seen == [(1, True), (3, True)]  # not for the 429, which never started


async def test_prefix_hook_not_called_when_nothing_started(
    fake_anthropic: FakeAnthropic, make: Make
) -> None:
    calls: list[None] = []
    fake_anthropic.script(Error(401, "authentication_error"))
    with pytest.raises(LLMError):
        await make().ask(PROMPT, Answer, on_prefix_cached=lambda: calls.append(None))
    assert calls == []


# --------------------------------------------------------------------------- builder, units


async def test_production_builder(fake_anthropic: FakeAnthropic) -> None:
    llm = anthropic_llm(
        api_key=FAKE_API_KEY, base_url=fake_anthropic.base_url, model=HAIKU, call_timeout_s=7.0
    )
    try:
        assert llm.models == (HAIKU,)  # the default fallback is the model itself
        assert llm.client.max_retries == 0 and llm.client.timeout == 7.0
        assert llm.call_timeout_s == 7.0
        fake_anthropic.script(Error(529, "overloaded_error", headers={"retry-after": "0"}))
        error = await fails(dataclasses.replace(llm, attempts=1))
    finally:
        await llm.client.close()
    assert error.kind == "overloaded"
    assert len(fake_anthropic.requests) == 1  # the SDK itself did not retry


def test_price_cost() -> None:
    price = Price(input=3.0, output=15.0)
    usage = Usage(
        input_tokens=1_000, cache_write_tokens=2_000, cache_read_tokens=10_000, output_tokens=500
    )
    # (1000 + 2000·1.25 + 10000·0.1)·3 + 500·15 = 13500 + 7500 = 21000 per million
    assert price.cost(usage) == pytest.approx(0.021)
    assert Price(input=1.0, output=5.0, cache_write=2.0, cache_read=0.5).cost(usage) == (
        pytest.approx((1_000 + 4_000 + 5_000 + 2_500) / 1e6)
    )
    assert price.cost(Usage()) == 0.0


def test_usage_add() -> None:
    a = Usage(input_tokens=1, cache_write_tokens=2, cache_read_tokens=3, output_tokens=4)
    b = Usage(input_tokens=10, cache_write_tokens=20, cache_read_tokens=30, output_tokens=40)
    assert a + b == Usage(
        input_tokens=11, cache_write_tokens=22, cache_read_tokens=33, output_tokens=44
    )
    assert a + Usage() == a
    assert (a + b).prompt_tokens == 66


def test_dearest_price() -> None:
    llm = AnthropicLLM(client=anthropic.AsyncAnthropic(api_key="x"), models=(HAIKU, SONNET))
    assert llm.dearest == DEFAULT_PRICES[SONNET]
    assert llm.price("claude-unknown", Usage(output_tokens=1_000_000)) == 15.0


async def test_an_attempt_that_breaks_mid_stream_is_still_billed(
    fake_anthropic: FakeAnthropic, make: Make
) -> None:
    fake_anthropic.script(
        ToolUse("submit", '{"verdict": "x",, "score": 1}'), ToolUse("submit", GOOD)
    )
    reply = await make().ask(PROMPT, Answer)
    first = billed(fake_anthropic.requests[0])
    assert reply.usage.cache_write_tokens == first.cache_write_tokens > 0
    assert reply.attempts == 2


async def test_prefix_hook_fires_once_per_call_even_across_retries(
    fake_anthropic: FakeAnthropic, make: Make
) -> None:
    calls: list[None] = []
    fake_anthropic.script(StreamError("overloaded_error"), ToolUse("submit", GOOD))
    await make().ask(PROMPT, Answer, on_prefix_cached=lambda: calls.append(None))
    assert len(calls) == 1 and len(fake_anthropic.messages_requests) == 2


async def test_a_mid_stream_error_is_named_as_such(
    fake_anthropic: FakeAnthropic, make: Make
) -> None:
    fake_anthropic.script(*[StreamError("overloaded_error")] * 3)
    error = await fails(make(models=(SONNET,)))
    assert error.kind == "overloaded" and str(error).startswith("stream error: ")
