"""The LLM seam: one call that returns a validated pydantic model, and its Anthropic backend."""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar

import anthropic
import anyio
import httpx2
from pydantic import BaseModel, ConfigDict, ValidationError

T = TypeVar("T", bound=BaseModel)

DEFAULT_MODEL = "claude-sonnet-5-5"
DEFAULT_FALLBACKS: tuple[str, ...] = ("claude-haiku-5-5",)
ErrorKind = Literal[
    "rate_limited",
    "overloaded",
    "server_error",
    "timeout",
    "connection",
    "invalid_output",
    "truncated",
    "refused",
    "auth",
    "not_found",
    "bad_request",
    "billing",
    "budget",
]
_TRANSIENT: frozenset[ErrorKind] = frozenset(
    {
        "rate_limited",
        "overloaded",
        "server_error",
        "timeout",
        "connection",
        "invalid_output",
        "truncated",
    }
)
# Failures that no retry, fallback or later call in the same review can fix.
FATAL: frozenset[ErrorKind] = frozenset({"auth", "billing", "not_found"})
_EPHEMERAL = {"type": "ephemeral"}
_TOOL = "submit"


class Usage(BaseModel):
    """Tokens one or more calls used, split the way the API bills them."""

    model_config = ConfigDict(frozen=True)

    input_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        """Sum two usages."""
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
        )

    @property
    def prompt_tokens(self) -> int:
        """Return every input token, cached or not."""
        return self.input_tokens + self.cache_write_tokens + self.cache_read_tokens


class Price(BaseModel):
    """USD per million tokens; cache writes and reads as multiples of the input price."""

    model_config = ConfigDict(frozen=True)

    input: float
    output: float
    cache_write: float = 1.25
    cache_read: float = 0.1

    def cost(self, usage: Usage) -> float:
        """Return what `usage` costs."""
        billed_input = (
            usage.input_tokens
            + usage.cache_write_tokens * self.cache_write
            + usage.cache_read_tokens * self.cache_read
        )
        return (billed_input * self.input + usage.output_tokens * self.output) / 1_000_000


# Configuration, not truth: override with the real list prices of the models you use.
DEFAULT_PRICES: Mapping[str, Price] = {
    "claude-opus-5-5": Price(input=5.0, output=25.0),
    "claude-sonnet-5-5": Price(input=3.0, output=15.0),
    "claude-haiku-5-5": Price(input=1.0, output=5.0),
}
_UNKNOWN_PRICE = Price(input=3.0, output=15.0)


@dataclass(frozen=True)
class Prompt:
    """A request in three parts: rules and shared context are cached, the task is not."""

    rules: str
    shared: str
    task: str
    max_tokens: int = 4096
    purpose: str = "review"


@dataclass(frozen=True)
class Reply(Generic[T]):
    """A validated answer and what it cost."""

    value: T
    model: str
    usage: Usage
    cost_usd: float
    attempts: int = 1


class LLMError(Exception):
    """A model call failed; `kind` says how, `usage` what the failed attempts still cost."""

    def __init__(self, kind: ErrorKind, message: str, usage: Usage | None = None) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.usage = usage or Usage()
        self.cost_usd = 0.0
        self.retry_after: float | None = None

    @property
    def transient(self) -> bool:
        """Tell whether trying again may succeed."""
        return self.kind in _TRANSIENT


PrefixHook = Callable[[], None]


class LLM(Protocol):
    """The one seam between the council and a model."""

    async def ask(
        self, prompt: Prompt, output: type[T], *, on_prefix_cached: PrefixHook | None = None
    ) -> Reply[T]:
        """Return the model's answer to `prompt` as a validated `output`."""
        ...


Sleep = Callable[[float], Awaitable[None]]


@dataclass
class AnthropicLLM:
    """Claude through the official SDK: a forced tool for structured output, cached prefix."""

    client: anthropic.AsyncAnthropic
    models: Sequence[str] = (DEFAULT_MODEL, *DEFAULT_FALLBACKS)
    prices: Mapping[str, Price] = field(default_factory=lambda: dict(DEFAULT_PRICES))
    call_timeout_s: float = 90.0
    attempts: int = 3
    max_backoff_s: float = 20.0
    sleep: Sleep = anyio.sleep
    # Off only to measure what caching saves (benchmarks/llm.py).
    prompt_cache: bool = True

    async def ask(
        self, prompt: Prompt, output: type[T], *, on_prefix_cached: PrefixHook | None = None
    ) -> Reply[T]:
        """Try each model in turn, retrying transient failures with capped backoff.

        A model that keeps failing is followed by the next one (a fallback may have
        capacity where the first is overloaded or unknown).
        """
        spent, cost, last = Usage(), 0.0, LLMError("bad_request", "no model configured")
        tries = 0
        hook = _once_only(on_prefix_cached)
        for model in self.models:
            for attempt in range(1, self.attempts + 1):
                tries += 1
                try:
                    reply = await self._once(model, prompt, output, hook)
                except LLMError as exc:
                    spent, cost, last = spent + exc.usage, cost + self.price(model, exc.usage), exc
                    if exc.kind == "not_found":
                        break  # this model is unknown here: the next one may not be
                    if not exc.transient:
                        raise _spent(exc, spent, cost) from exc
                    if attempt < self.attempts:
                        await self.sleep(self._backoff(attempt, exc.retry_after))
                    continue
                usage = reply.usage + spent
                total = cost + self.price(model, reply.usage)
                return Reply(reply.value, reply.model, usage, total, tries)
        raise _spent(last, spent, cost)

    @property
    def dearest(self) -> Price:
        """Return the highest price of the configured models, for budget reservations."""
        known = [self.prices.get(m, _UNKNOWN_PRICE) for m in self.models] or [_UNKNOWN_PRICE]
        return max(known, key=lambda p: (p.input, p.output))

    def price(self, model: str, usage: Usage) -> float:
        """Return what `usage` on `model` costs, by the configured price table."""
        return self.prices.get(model, _UNKNOWN_PRICE).cost(usage)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Wait as the server asks, but never longer than our cap (the SDK has none)."""
        wanted = retry_after if retry_after is not None else 0.5 * 2 ** (attempt - 1)
        return min(self.max_backoff_s, wanted * (1 + random.random() * 0.1))

    async def _once(
        self, model: str, prompt: Prompt, output: type[T], hook: PrefixHook
    ) -> Reply[T]:
        """Make one streamed call under an outer deadline and validate its tool input."""
        request = _request(model, prompt, output, cache=self.prompt_cache)
        started: list[Usage] = []
        try:
            with anyio.fail_after(self.call_timeout_s):
                message = await self._stream(request, hook, started)
        except (TimeoutError, anthropic.APIError, httpx2.TransportError, ValueError) as exc:
            # An answer that broke after message_start was still billed for its prompt.
            error = _failure(exc, self.call_timeout_s, bool(started))
            raise _spent(error, sum(started, Usage()), 0.0) from exc
        usage = _usage(message.usage)
        value = _parse(message, output, usage)
        return Reply(value, model, usage, 0.0)

    async def _stream(
        self, request: dict[str, Any], hook: PrefixHook, started: list[Usage]
    ) -> anthropic.types.Message:
        """Stream the call so `hook` fires as soon as the prompt (and its cache) is processed."""
        async with self.client.messages.stream(**request) as stream:
            async for event in stream:
                if event.type == "message_start":
                    started.append(_usage(event.message.usage))
                    hook()
            return await stream.get_final_message()


def _once_only(hook: PrefixHook | None) -> PrefixHook:
    """Wrap `hook` so retries of the same call fire it at most once."""
    fired = False

    def fire() -> None:
        nonlocal fired
        if hook is not None and not fired:
            fired = True
            hook()

    return fire


def _failure(exc: Exception, timeout_s: float, started: bool) -> LLMError:
    """Map what a streamed call can raise onto our error kinds."""
    if isinstance(exc, TimeoutError):
        return LLMError("timeout", f"no answer within {timeout_s:g} s")
    # anthropic <2.17 let a stalled stream's read timeout escape unwrapped; 2.17 wraps it.
    stalled = isinstance(exc, httpx2.TimeoutException | anthropic.APITimeoutError)
    if stalled and started:
        return LLMError("timeout", "the answer stalled mid-stream")
    if isinstance(exc, anthropic.APIError):
        return _classify(exc)
    if isinstance(exc, httpx2.TimeoutException):
        return LLMError("timeout", "the API did not answer in time")
    if isinstance(exc, httpx2.TransportError):
        return LLMError("connection", "the connection broke mid-answer")
    # The SDK's partial JSON parser raises a plain ValueError on a malformed tool input.
    return LLMError("invalid_output", "the answer was not valid JSON")


def _request(
    model: str, prompt: Prompt, output: type[BaseModel], *, cache: bool = True
) -> dict[str, Any]:
    """Build the Messages request: tools, system and shared context form the cached prefix."""
    mark = {"cache_control": _EPHEMERAL} if cache else {}
    tool = {
        "name": _TOOL,
        "description": "Submit your answer. Call this exactly once.",
        "input_schema": output.model_json_schema(),
    }
    return {
        "model": model,
        "max_tokens": prompt.max_tokens,
        "tools": [tool],
        "tool_choice": {"type": "tool", "name": _TOOL},
        "system": [{"type": "text", "text": prompt.rules, **mark}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": prompt.shared, **mark},
                    {"type": "text", "text": prompt.task},
                ],
            }
        ],
    }


def _usage(raw: anthropic.types.Usage) -> Usage:
    """Read the four billed token counts (docs: "Tracking cache performance")."""
    return Usage(
        input_tokens=raw.input_tokens,
        cache_write_tokens=raw.cache_creation_input_tokens or 0,
        cache_read_tokens=raw.cache_read_input_tokens or 0,
        output_tokens=raw.output_tokens,
    )


def _parse(message: anthropic.types.Message, output: type[T], usage: Usage) -> T:
    """Validate the forced tool call's input; anything else is a handled error."""
    if message.stop_reason == "max_tokens":
        raise LLMError("truncated", "the answer was cut off at max_tokens", usage)
    if message.stop_reason == "refusal":
        raise LLMError("refused", "the model declined to answer", usage)
    block = next((b for b in message.content if b.type == "tool_use" and b.name == _TOOL), None)
    if block is None:
        raise LLMError("invalid_output", "the model did not call the answer tool", usage)
    try:
        return output.model_validate(block.input)
    except ValidationError as exc:
        raise LLMError("invalid_output", _first_error(exc), usage) from exc


def _first_error(exc: ValidationError) -> str:
    """Summarise a validation failure in one line."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "answer"
    return f"invalid answer: {where}: {err['msg']}"


def _spent(exc: LLMError, usage: Usage, cost: float) -> LLMError:
    """Return `exc` carrying the usage and cost of every attempt."""
    exc.usage, exc.cost_usd = usage, cost
    return exc


# Error `type`s of the API's error body (docs: "Errors"); a streamed `error` event
# arrives on an HTTP 200, so the type, not the status, is what names it.
_ERROR_TYPES: Mapping[str, ErrorKind] = {
    "rate_limit_error": "rate_limited",
    "overloaded_error": "overloaded",
    "api_error": "server_error",
    "timeout_error": "timeout",
    "authentication_error": "auth",
    "permission_error": "auth",
    "billing_error": "billing",
    "not_found_error": "not_found",
}


def _classify(exc: anthropic.APIError) -> LLMError:
    """Map an SDK error onto our kinds, keeping `retry-after` (Anthropic errors docs)."""
    if isinstance(exc, anthropic.APITimeoutError):
        return LLMError("timeout", "the API did not answer in time")
    if isinstance(exc, anthropic.APIConnectionError):
        return LLMError("connection", "could not reach the API")
    if not isinstance(exc, anthropic.APIStatusError):
        return LLMError("invalid_output", f"unreadable answer: {type(exc).__name__}")
    kind = _ERROR_TYPES.get(_error_type(exc)) or _status_kind(exc.status_code)
    # A streamed `error` event arrives inside an HTTP 200 answer.
    where = "stream error" if exc.status_code == 200 else f"HTTP {exc.status_code}"
    error = LLMError(kind, f"{where}: {_brief(exc)}")
    error.retry_after = _retry_after(exc.response.headers)
    return error


def _error_type(exc: anthropic.APIStatusError) -> str:
    """Return the `error.type` of an API error body, or ''."""
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error")
    return str(error.get("type", "")) if isinstance(error, dict) else ""


def _status_kind(status: int) -> ErrorKind:
    """Name an HTTP status."""
    kinds: Mapping[int, ErrorKind] = {
        429: "rate_limited",
        529: "overloaded",
        401: "auth",
        403: "auth",
        402: "billing",
        404: "not_found",
        408: "timeout",
    }
    return kinds.get(status) or ("server_error" if status >= 500 else "bad_request")


def _brief(exc: anthropic.APIStatusError) -> str:
    """Return the API's error message, one line, bounded."""
    body = exc.body if isinstance(exc.body, dict) else {}
    detail = body.get("error", {}) if isinstance(body.get("error"), dict) else {}
    return " ".join(str(detail.get("message") or exc.message).split())[:200]


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Read `retry-after-ms` or `retry-after` in seconds (the SDK prefers the former)."""
    millis = _seconds(headers.get("retry-after-ms"))
    return millis / 1000 if millis is not None else _seconds(headers.get("retry-after"))


def _seconds(value: str | None) -> float | None:
    """Parse a non-negative number, or None."""
    try:
        number = float(value) if value is not None else math.nan
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def anthropic_llm(
    *,
    api_key: str,
    model: str | None = None,
    fallbacks: Sequence[str] = DEFAULT_FALLBACKS,
    base_url: str | None = None,
    prices: Mapping[str, Price] = DEFAULT_PRICES,
    call_timeout_s: float = 90.0,
) -> AnthropicLLM:
    """Build the production LLM; the SDK's own retries are off because ours are bounded."""
    client = anthropic.AsyncAnthropic(
        api_key=api_key, base_url=base_url, max_retries=0, timeout=call_timeout_s
    )
    models = tuple(dict.fromkeys((model or DEFAULT_MODEL, *fallbacks)))
    return AnthropicLLM(
        client=client, models=models, prices=dict(prices), call_timeout_s=call_timeout_s
    )
