"""The fake Messages API, exercised through the real anthropic SDK."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import anthropic
import anyio
import httpx2
import pytest

from tests.fakes.anthropic_api import (
    FAKE_API_KEY,
    Error,
    FakeAnthropic,
    Hang,
    LatencyModel,
    RecordedRequest,
    Reply,
    StreamError,
    Text,
    ToolUse,
    Truncated,
    block_tokens,
    estimate_tokens,
    run_fake_anthropic,
)

pytestmark = pytest.mark.anyio

MODEL = "claude-sonnet-4-6"
TOOL: dict[str, Any] = {
    "name": "report_findings",
    "description": "Report review findings.",
    "input_schema": {
        "type": "object",
        "properties": {"findings": {"type": "array", "items": {"type": "object"}}},
        "required": ["findings"],
    },
}
FINDINGS = {"findings": [{"path": "app.py", "line": 3, "severity": "major", "title": "Bug"}]}
RULES = "You are a careful code reviewer. " * 150
DIFF = "+    total = price * quantity  # changed line\n" * 60
EPHEMERAL = {"type": "ephemeral"}


def review_request(specialist: str = "security", **overrides: Any) -> dict[str, Any]:
    """A forced-tool request with a cached prefix (rules + diff) and a per-specialist tail."""
    request: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 2048,
        "tools": [TOOL],
        "tool_choice": {"type": "tool", "name": TOOL["name"]},
        "system": [{"type": "text", "text": RULES, "cache_control": EPHEMERAL}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": DIFF, "cache_control": EPHEMERAL},
                    {"type": "text", "text": f"You are the {specialist} specialist."},
                ],
            }
        ],
    }
    return request | overrides


def prefix_tokens() -> int:
    """Tokens of the cached prefix of `review_request`: tool, rules, diff."""
    return block_tokens(TOOL) + estimate_tokens(RULES) + estimate_tokens(DIFF)


async def test_forced_tool_call_create(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script(ToolUse(TOOL["name"], FINDINGS))
    async with fake_anthropic.client() as client:
        message = await client.messages.create(**review_request())
    block = message.content[0]
    assert block.type == "tool_use"
    assert (block.name, block.input) == (TOOL["name"], FINDINGS)
    assert message.stop_reason == "tool_use"
    (recorded,) = fake_anthropic.requests
    assert recorded.forced_tool == TOOL["name"]
    assert recorded.headers["authorization"] == f"Bearer {FAKE_API_KEY}"
    assert "anthropic-version" in recorded.headers
    assert recorded.body is not None and recorded.body["max_tokens"] == 2048
    assert not recorded.stream


async def test_forced_tool_call_stream(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script(ToolUse(TOOL["name"], FINDINGS, output_tokens=42))
    async with (
        fake_anthropic.client() as client,
        client.messages.stream(**review_request()) as stream,
    ):
        events = [event.type async for event in stream]
        message = await stream.get_final_message()
    assert message.content[0].type == "tool_use"
    assert message.content[0].input == FINDINGS
    assert message.stop_reason == "tool_use"
    assert message.usage.output_tokens == 42
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert {"content_block_start", "input_json", "content_block_stop", "message_delta"} <= set(
        events
    )
    assert fake_anthropic.requests[0].stream


async def test_cache_cold_then_warm(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.default = ToolUse(TOOL["name"], FINDINGS)
    tail = estimate_tokens("You are the security specialist.")
    async with fake_anthropic.client() as client:
        cold = await client.messages.create(**review_request())
        async with client.messages.stream(**review_request()) as stream:
            warm = await stream.get_final_message()
    assert prefix_tokens() >= 1024
    assert cold.usage.cache_creation_input_tokens == prefix_tokens()
    assert cold.usage.cache_read_input_tokens == 0
    assert cold.usage.input_tokens == tail
    assert cold.usage.cache_creation is not None
    assert cold.usage.cache_creation.ephemeral_5m_input_tokens == prefix_tokens()
    assert warm.usage.cache_read_input_tokens == prefix_tokens()
    assert warm.usage.cache_creation_input_tokens == 0
    assert warm.usage.input_tokens == tail
    first, second = fake_anthropic.requests
    assert first.cache_written and not second.cache_written
    assert second.cache is not None and second.cache.hit


async def test_different_tail_reads_the_shared_prefix(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.default = ToolUse(TOOL["name"], FINDINGS)
    async with fake_anthropic.client() as client:
        await client.messages.create(**review_request("security"))
        other = await client.messages.create(**review_request("performance"))
        changed = await client.messages.create(**review_request(system=RULES + "!"))
    assert other.usage.cache_read_input_tokens == prefix_tokens()
    assert changed.usage.cache_read_input_tokens == 0
    changed_prefix = block_tokens(TOOL) + estimate_tokens(RULES + "!") + estimate_tokens(DIFF)
    assert changed.usage.cache_creation_input_tokens == changed_prefix


async def test_concurrent_cold_requests_both_write(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.default = ToolUse(TOOL["name"], FINDINGS, ttft_s=0.2)
    usages: list[anthropic.types.Usage] = []
    async with fake_anthropic.client() as client:

        async def call(specialist: str) -> None:
            message = await client.messages.create(**review_request(specialist))
            usages.append(message.usage)

        async with anyio.create_task_group() as group:
            group.start_soon(call, "security")
            group.start_soon(call, "correctness")
        await call("tests")
    assert [u.cache_creation_input_tokens for u in usages] == [prefix_tokens()] * 2 + [0]
    assert [u.cache_read_input_tokens for u in usages] == [0, 0, prefix_tokens()]


async def test_short_prefix_is_not_cached(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.default = Text("ok")
    request = review_request(system=[{"type": "text", "text": "short", "cache_control": EPHEMERAL}])
    request["messages"][0]["content"][0]["text"] = "tiny diff"
    async with fake_anthropic.client() as client:
        for _ in range(2):
            message = await client.messages.create(**request)
            assert message.usage.cache_creation_input_tokens == 0
            assert message.usage.cache_read_input_tokens == 0
            assert message.usage.input_tokens == fake_anthropic.requests[-1].cache.total_tokens  # type: ignore[union-attr]


async def test_rate_limit_is_retried(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script(
        Error(429, "rate_limit_error", "slow down", headers={"retry-after": "0"}),
        ToolUse(TOOL["name"], FINDINGS),
    )
    async with fake_anthropic.client(max_retries=1) as client:
        message = await client.messages.create(**review_request())
    assert message.content[0].type == "tool_use"
    first, second = fake_anthropic.requests
    assert (first.status, second.status) == (429, 200)
    assert second.headers["x-stainless-retry-count"] == "1"


async def test_rate_limit_without_retries_raises(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script(Error(429, "rate_limit_error", "slow down", {"retry-after": "30"}))
    async with fake_anthropic.client(max_retries=0) as client:
        with pytest.raises(anthropic.RateLimitError) as caught:
            await client.messages.create(**review_request())
    assert caught.value.status_code == 429
    assert caught.value.type == "rate_limit_error"
    assert caught.value.response.headers["retry-after"] == "30"
    assert len(fake_anthropic.requests) == 1


@pytest.mark.parametrize(
    ("reply", "error_class"),
    [
        (Error(529, "overloaded_error", "Overloaded"), anthropic.OverloadedError),
        (Error(500, "api_error", "Internal"), anthropic.InternalServerError),
        (Error(400, "invalid_request_error", "bad"), anthropic.BadRequestError),
    ],
)
async def test_error_statuses(
    fake_anthropic: FakeAnthropic, reply: Error, error_class: type[anthropic.APIStatusError]
) -> None:
    fake_anthropic.script(reply)
    async with fake_anthropic.client() as client:
        with pytest.raises(anthropic.APIStatusError) as caught:
            await client.messages.create(**review_request())
    assert type(caught.value) is error_class
    assert caught.value.status_code == reply.status
    assert caught.value.request_id == "req_fake_000000"


async def test_hang_times_out(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script(Hang())
    started = time.monotonic()
    async with fake_anthropic.client(timeout=0.3) as client:
        with pytest.raises(anthropic.APITimeoutError):
            await client.messages.create(**review_request())
    assert time.monotonic() - started < 2
    await fake_anthropic.wait_until(lambda f: f.requests[0].finished_at is not None)


async def test_shutdown_releases_hanging_requests() -> None:
    fake = FakeAnthropic()
    fake.default = Hang()
    outcomes: list[BaseException] = []
    with contextlib.ExitStack() as server:
        server.enter_context(run_fake_anthropic(fake))
        async with fake.client() as client, anyio.create_task_group() as group:

            async def call(stream: bool) -> None:
                try:
                    await client.messages.create(**review_request(), stream=stream)
                except anthropic.APIError as exc:
                    outcomes.append(exc)

            group.start_soon(call, False)
            group.start_soon(call, True)
            await fake.wait_until(lambda f: len(f.requests) == 2)
            started = time.monotonic()
            server.close()
            assert time.monotonic() - started < 1.5
    assert len(outcomes) == 2


async def test_stall_after_message_start_times_out(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script(Hang(after_start=True))
    async with (
        fake_anthropic.client(timeout=0.3) as client,
        client.messages.stream(**review_request()) as stream,
    ):
        with pytest.raises(Exception) as caught:
            await stream.get_final_message()
    # anthropic <2.17 let the stalled read escape as httpx2.ReadTimeout; 2.17 wraps it as
    # APITimeoutError. Either way the stall ends at the client timeout, as a timeout.
    assert isinstance(caught.value, httpx2.ReadTimeout | anthropic.APITimeoutError)


async def test_wrong_key_is_an_authentication_error(fake_anthropic: FakeAnthropic) -> None:
    async with anthropic.AsyncAnthropic(
        api_key="sk-wrong", base_url=fake_anthropic.base_url, max_retries=0
    ) as client:
        with pytest.raises(anthropic.AuthenticationError):
            await client.messages.create(**review_request())
    assert fake_anthropic.requests[0].status == 401
    assert fake_anthropic.unexpected == []


async def test_unknown_path_fails_the_fixture(fake_anthropic: FakeAnthropic) -> None:
    async with fake_anthropic.client() as client:
        with pytest.raises(anthropic.InternalServerError):
            await client.models.list()
    (stray,) = fake_anthropic.unexpected
    assert (stray.method, stray.path) == ("GET", "/v1/models")
    with pytest.raises(pytest.fail.Exception, match="unknown path /v1/models"):
        fake_anthropic.assert_no_unexpected()
    fake_anthropic.reset()


async def test_exhausted_script_is_unexpected(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script(Text("one"))
    async with fake_anthropic.client() as client:
        await client.messages.create(**review_request())
        with pytest.raises(anthropic.InternalServerError):
            await client.messages.create(**review_request())
    assert [r.unexpected for r in fake_anthropic.requests] == [
        None,
        "script exhausted and no default reply",
    ]
    fake_anthropic.reset()


async def test_tool_not_offered_is_unexpected(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script(ToolUse("other_tool", {}))
    async with fake_anthropic.client() as client:
        with pytest.raises(anthropic.InternalServerError):
            await client.messages.create(**review_request())
    assert "not among the request's tools" in (fake_anthropic.unexpected[0].unexpected or "")
    fake_anthropic.reset()


async def test_unexpected_requests_fail_a_fresh_server() -> None:
    fake = FakeAnthropic()
    with run_fake_anthropic(fake):
        async with fake.client() as client:
            with pytest.raises(anthropic.InternalServerError):
                await client.messages.create(**review_request())
    with pytest.raises(pytest.fail.Exception, match="script exhausted"):
        fake.assert_no_unexpected()


async def test_malformed_tool_json(fake_anthropic: FakeAnthropic) -> None:
    bad = '{"findings": [{"path": "a.py",, }'
    fake_anthropic.script(ToolUse(TOOL["name"], bad), ToolUse(TOOL["name"], bad))
    async with fake_anthropic.client() as client:
        async with client.messages.stream(**review_request()) as stream:
            with pytest.raises(ValueError, match="Unable to parse tool parameter JSON"):
                await stream.get_final_message()
        message = await client.messages.create(**review_request())
    assert message.content[0].type == "tool_use"
    assert message.content[0].input == bad  # a str where the SDK types a dict


async def test_truncated_tool_call(fake_anthropic: FakeAnthropic) -> None:
    reply = Truncated(TOOL["name"], FINDINGS, keep_chars=50)
    fake_anthropic.script(reply, reply)
    async with fake_anthropic.client() as client:
        async with client.messages.stream(**review_request()) as stream:
            streamed = await stream.get_final_message()
        created = await client.messages.create(**review_request())
    for message in (streamed, created):
        assert message.stop_reason == "max_tokens"
        assert message.usage.output_tokens == 2048
        assert message.content[0].type == "tool_use"
        assert message.content[0].input == {"findings": [{"path": "app.py", "line": 3}]}


async def test_refusal_text(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script(Text("I can't help with that.", stop_reason="refusal"))
    async with (
        fake_anthropic.client() as client,
        client.messages.stream(**review_request()) as stream,
    ):
        message = await stream.get_final_message()
    assert message.stop_reason == "refusal"
    assert message.stop_details is not None and message.stop_details.type == "refusal"
    assert message.content[0].type == "text"
    assert message.content[0].text == "I can't help with that."


async def test_error_event_mid_stream(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script(StreamError("overloaded_error", "Overloaded"))
    async with (
        fake_anthropic.client(max_retries=2) as client,
        client.messages.stream(**review_request()) as stream,
    ):
        with pytest.raises(anthropic.APIStatusError) as caught:
            await stream.get_final_message()
    assert type(caught.value) is anthropic.APIStatusError
    assert caught.value.status_code == 200
    assert caught.value.type == "overloaded_error"
    assert len(fake_anthropic.requests) == 1


async def test_handler_and_latency(fake_anthropic: FakeAnthropic) -> None:
    def handler(request: RecordedRequest) -> Reply:
        """Answer with the specialist's name."""
        specialist = request.messages_text.split("the ")[-1].split(" ")[0]
        return Text(specialist, ttft_s=0.1, duration_s=0.15)

    fake_anthropic.handler = handler
    async with fake_anthropic.client() as client:
        message = await client.messages.create(**review_request("style"))
    assert message.content[0].type == "text" and message.content[0].text == "style"
    (recorded,) = fake_anthropic.requests
    assert recorded.started_at is not None and recorded.finished_at is not None
    assert recorded.started_at - recorded.arrived_at >= 0.09
    assert recorded.finished_at - recorded.arrived_at >= 0.14


def test_latency_model() -> None:
    fake = FakeAnthropic(latency=LatencyModel(1.0, 1e-3, 1e-4, 50.0))
    cache = fake.cache.lookup(review_request(), 1024, now=0.0)
    model = fake.latency
    assert model is not None
    fresh = cache.input_tokens + cache.creation_tokens
    assert model.ttft(cache) == pytest.approx(1.0 + 1e-3 * fresh)
    assert model.total(cache, 100) == pytest.approx(model.ttft(cache) + 2.0)


async def test_latency_model_paces_replies(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.latency = LatencyModel(ttft_base_s=2.0, tokens_per_second=100.0)
    fake_anthropic.time_scale = 0.05
    fake_anthropic.script(Text("x" * 400, output_tokens=100))
    async with fake_anthropic.client() as client:
        await client.messages.create(**review_request())
    (recorded,) = fake_anthropic.requests
    assert recorded.cache is not None and fake_anthropic.latency is not None
    ttft = fake_anthropic.latency.ttft(recorded.cache) * 0.05
    total = fake_anthropic.latency.total(recorded.cache, 100) * 0.05
    assert recorded.started_at is not None and recorded.finished_at is not None
    assert ttft - 0.01 <= recorded.started_at - recorded.arrived_at < ttft + 0.1
    assert total - 0.01 <= recorded.finished_at - recorded.arrived_at < total + 0.1
