"""A fake Anthropic Messages API server, for tests that drive the real `anthropic` SDK.

`FakeAnthropic` is a stateful FastAPI app serving `POST /v1/messages` (JSON and SSE),
scripted per request, recording every request, and simulating prompt caching.
`run_fake_anthropic` serves it over loopback; the `fake_anthropic` fixture gives each
test a reset fake on a session-wide server and fails the test on unexpected requests.

Wire format notes (checked against anthropic 2.12):

- SDK 2.x sends `api_key` as `Authorization: Bearer <key>`, not `x-api-key`; the fake
  accepts either and answers 401 authentication_error otherwise.
- A `ToolUse` whose `input` is a str is streamed verbatim through `input_json_delta`; the
  SDK parses the growing buffer with `jiter` in partial mode after every delta, so
  malformed JSON makes `get_final_message()` raise a plain `ValueError` ("Unable to parse
  tool parameter JSON ..."), not an `anthropic.APIError`. Non-streaming, the str is sent
  as the block's `input` value and the SDK (non-strict) hands it through unchanged, so
  `block.input` is a `str`, not a dict.
- `Truncated` streams a prefix of the tool JSON and stops with "max_tokens"; the SDK's
  partial parse turns it into a dict missing the unfinished parts (an unterminated string
  value is dropped). Non-streaming returns that same partial dict as `input`.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anthropic
import anyio
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from jiter import from_json

FAKE_API_KEY = "sk-ant-fake-test-key"
MAX_BREAKPOINTS = 4
LOOKBACK_BLOCKS = 20
TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}
CHUNK_CHARS = 24


# --------------------------------------------------------------------------- replies


@dataclass(frozen=True)
class ToolUse:
    """Answer with one tool_use block (str `input` is sent verbatim, even if malformed)."""

    name: str
    input: Mapping[str, Any] | str
    output_tokens: int | None = None
    stop_reason: str = "tool_use"
    ttft_s: float | None = None
    duration_s: float | None = None


@dataclass(frozen=True)
class Text:
    """Answer with one text block (stop_reason "refusal" adds refusal stop_details)."""

    text: str
    stop_reason: str = "end_turn"
    output_tokens: int | None = None
    ttft_s: float | None = None
    duration_s: float | None = None


@dataclass(frozen=True)
class Truncated:
    """A tool call cut off by max_tokens: only the first `keep_chars` of its JSON are sent."""

    name: str
    input: Mapping[str, Any] | str
    keep_chars: int | None = None
    output_tokens: int | None = None
    ttft_s: float | None = None
    duration_s: float | None = None


@dataclass(frozen=True)
class Error:
    """An HTTP error answer with Anthropic's error body."""

    status: int
    error_type: str
    message: str = "fake error"
    headers: Mapping[str, str] = field(default_factory=dict)
    ttft_s: float | None = None


@dataclass(frozen=True)
class StreamError:
    """Streaming: message_start, then an SSE `error` event; non-streaming: HTTP `status`."""

    error_type: str = "overloaded_error"
    message: str = "Overloaded"
    status: int = 529
    ttft_s: float | None = None
    duration_s: float | None = None


@dataclass(frozen=True)
class Hang:
    """Never answer (or, streaming with `after_start`, stall after message_start)."""

    after_start: bool = False


Reply = ToolUse | Text | Truncated | Error | StreamError | Hang


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class CacheResult:
    """What the prompt cache did for one request (token counts as billed in `usage`)."""

    total_tokens: int
    prefix_tokens: int
    read_tokens: int
    creation_tokens: int
    creation_1h_tokens: int
    input_tokens: int
    writes: tuple[tuple[str, float], ...] = ()

    @property
    def hit(self) -> bool:
        """Whether any prefix was read from the cache."""
        return self.read_tokens > 0


@dataclass
class RecordedRequest:
    """One request as the fake saw it, completed as it is answered."""

    index: int
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    arrived_at: float
    cache: CacheResult | None = None
    reply: Reply | None = None
    status: int | None = None
    usage: dict[str, Any] | None = None
    started_at: float | None = None
    finished_at: float | None = None
    cache_written: bool = False
    unexpected: str | None = None

    @property
    def stream(self) -> bool:
        """Whether the request asked for SSE."""
        return bool(self.body and self.body.get("stream"))

    @property
    def tool_names(self) -> list[str]:
        """Names of the tools offered."""
        return [str(t.get("name")) for t in (self.body or {}).get("tools") or []]

    @property
    def forced_tool(self) -> str | None:
        """The tool named by tool_choice {"type": "tool"}, if any."""
        choice = (self.body or {}).get("tool_choice") or {}
        return choice.get("name") if choice.get("type") == "tool" else None

    @property
    def system_text(self) -> str:
        """All system text, joined by newlines."""
        return "\n".join(_texts(_system_blocks(self.body or {})))

    @property
    def messages_text(self) -> str:
        """All text blocks of all messages, joined by newlines."""
        blocks = [b for _, _, b in _message_blocks(self.body or {})]
        return "\n".join(_texts(blocks))


Handler = Callable[[RecordedRequest], Reply]


# --------------------------------------------------------------------------- latency


@dataclass(frozen=True)
class LatencyModel:
    """ttft = base + per_token·(uncached + written) + per_cached·read; total = ttft + out/tps."""

    ttft_base_s: float = 0.6
    ttft_per_input_token_s: float = 4e-5
    ttft_per_cached_token_s: float = 4e-6
    tokens_per_second: float = 80.0

    def ttft(self, cache: CacheResult) -> float:
        """Time to first token for a request with this cache outcome."""
        fresh = cache.input_tokens + cache.creation_tokens
        return (
            self.ttft_base_s
            + self.ttft_per_input_token_s * fresh
            + self.ttft_per_cached_token_s * cache.read_tokens
        )

    def total(self, cache: CacheResult, output_tokens: int) -> float:
        """Total time for the whole answer."""
        return self.ttft(cache) + output_tokens / self.tokens_per_second


# --------------------------------------------------------------------------- tokens & cache


def estimate_tokens(text: str) -> int:
    """Deterministic token estimate: ceil(chars / 4)."""
    return math.ceil(len(text) / 4)


def canonical_json(value: object) -> str:
    """Key-sorted compact JSON, the fake's canonical form."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def block_tokens(block: Mapping[str, Any]) -> int:
    """Tokens of one block or tool: its text if a text block, else its JSON."""
    bare = {k: v for k, v in block.items() if k != "cache_control"}
    if bare.get("type") == "text" and isinstance(bare.get("text"), str):
        return estimate_tokens(bare["text"])
    return estimate_tokens(canonical_json(bare))


def prompt_tokens(body: Mapping[str, Any]) -> int:
    """Total input tokens the fake bills for a request body."""
    return sum(unit.tokens for unit in _units(body))


@dataclass(frozen=True)
class _Unit:
    """One cacheable position: a tool, a system block or a message block."""

    payload: str
    tokens: int
    cache_control: Mapping[str, Any] | None


def _system_blocks(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """System prompt as a list of blocks."""
    system = body.get("system")
    if isinstance(system, str):
        return [{"type": "text", "text": system}]
    return list(system or [])


def _message_blocks(body: Mapping[str, Any]) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """(message index, role, block) for every content block of every message."""
    for i, message in enumerate(body.get("messages") or []):
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        for block in blocks or []:
            yield i, str(message.get("role")), block


def _texts(blocks: list[dict[str, Any]]) -> list[str]:
    """The text of the text blocks."""
    return [str(b.get("text", "")) for b in blocks if b.get("type") == "text"]


def _bare(block: Mapping[str, Any]) -> dict[str, Any]:
    """A block without its cache_control marker."""
    return {k: v for k, v in block.items() if k != "cache_control"}


def _units(body: Mapping[str, Any]) -> list[_Unit]:
    """Cacheable positions in order tools → system → messages."""
    units = [
        _Unit(canonical_json(["tool", _bare(t)]), block_tokens(t), t.get("cache_control"))
        for t in body.get("tools") or []
    ]
    units += [
        _Unit(canonical_json(["system", _bare(b)]), block_tokens(b), b.get("cache_control"))
        for b in _system_blocks(body)
    ]
    context = canonical_json([body.get("tool_choice"), body.get("thinking")])
    units += [
        _Unit(
            canonical_json(["msg", i, role, context, _bare(b)]),
            block_tokens(b),
            b.get("cache_control"),
        )
        for i, role, b in _message_blocks(body)
    ]
    return units


def _breakpoints(body: Mapping[str, Any], units: list[_Unit]) -> list[tuple[int, str]]:
    """(unit index, ttl) of every cache breakpoint, top-level cache_control included."""
    points = {
        i: str(u.cache_control.get("ttl", "5m")) for i, u in enumerate(units) if u.cache_control
    }
    top = body.get("cache_control")
    if isinstance(top, Mapping) and units:
        points.setdefault(len(units) - 1, str(top.get("ttl", "5m")))
    return sorted(points.items())


def _prefix_keys(model: str, units: list[_Unit]) -> list[str]:
    """Chained hash of the prefix ending at each unit (model included)."""
    keys, digest = [], hashlib.sha256(model.encode()).digest()
    for unit in units:
        digest = hashlib.sha256(digest + unit.payload.encode()).digest()
        keys.append(digest.hex())
    return keys


class PromptCache:
    """Anthropic-style prompt cache: entries keyed by prefix hash, READY once written."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, float]] = {}

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _ready(self, key: str, now: float) -> bool:
        """Whether `key` is written and not expired."""
        return key in self._entries and self._entries[key][0] > now

    def lookup(self, body: Mapping[str, Any], min_tokens: int, now: float) -> CacheResult:
        """Bill a request against the cache as it is at `now` (a read refreshes the TTL)."""
        units = _units(body)
        cumulative = list(itertools.accumulate(u.tokens for u in units))
        points = [(i, ttl) for i, ttl in _breakpoints(body, units) if cumulative[i] >= min_tokens]
        keys = _prefix_keys(str(body.get("model")), units)
        read_at = self._longest_hit(points, keys, now)
        if read_at >= 0:
            ttl_s = self._entries[keys[read_at]][1]
            self._entries[keys[read_at]] = (now + ttl_s, ttl_s)
        read = cumulative[read_at] if read_at >= 0 else 0
        writes = [(i, ttl) for i, ttl in points if i > read_at]
        creation, creation_1h, done = 0, 0, read
        for i, ttl in writes:
            creation += cumulative[i] - done
            creation_1h += cumulative[i] - done if ttl == "1h" else 0
            done = cumulative[i]
        total = cumulative[-1] if cumulative else 0
        return CacheResult(
            total_tokens=total,
            prefix_tokens=cumulative[points[-1][0]] if points else 0,
            read_tokens=read,
            creation_tokens=creation,
            creation_1h_tokens=creation_1h,
            input_tokens=total - read - creation,
            writes=tuple((keys[i], TTL_SECONDS.get(ttl, 300.0)) for i, ttl in writes),
        )

    def _longest_hit(self, points: list[tuple[int, str]], keys: list[str], now: float) -> int:
        """Index of the longest READY prefix within the lookback of any breakpoint, or -1."""
        best = -1
        for point, _ in points:
            for i in range(point, max(-1, point - LOOKBACK_BLOCKS), -1):
                if self._ready(keys[i], now):
                    best = max(best, i)
                    break
        return best

    def commit(self, result: CacheResult, now: float) -> None:
        """Make a request's written prefixes READY."""
        for key, ttl_s in result.writes:
            self._entries[key] = (now + ttl_s, ttl_s)


# --------------------------------------------------------------------------- the app


def _error_body(error_type: str, message: str, request_id: str) -> dict[str, Any]:
    """Anthropic's error JSON."""
    return {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": request_id,
    }


def _sse(event: Mapping[str, Any]) -> bytes:
    """One SSE frame named after the event's type."""
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


def _chunks(text: str) -> list[str]:
    """Split text into delta-sized pieces."""
    return [text[i : i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)] or [""]


def _tool_json(value: Mapping[str, Any] | str) -> str:
    """The JSON text a tool input is streamed as."""
    return value if isinstance(value, str) else json.dumps(value)


def _partial_input(text: str) -> Any:
    """What the SDK's partial parser makes of truncated tool JSON ({} if unparseable)."""
    try:
        return from_json(text.encode(), partial_mode=True) if text else {}
    except ValueError:
        return {}


class FakeAnthropic:
    """A stateful fake of `POST /v1/messages`: scripted replies, recording, prompt cache."""

    def __init__(
        self,
        *,
        api_key: str = FAKE_API_KEY,
        min_cacheable_tokens: int = 1024,
        latency: LatencyModel | None = None,
        time_scale: float = 1.0,
    ) -> None:
        self._defaults = (api_key, min_cacheable_tokens, latency, time_scale)
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self.base_url: str | None = None
        self.cache = PromptCache()
        self.app = self._build_app()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: asyncio.Event | None = None
        self.reset()

    # ---- configuration and scripting (called from the test thread)

    def reset(self) -> None:
        """Restore constructor settings and forget script, records and cache."""
        with self._lock:
            self.api_key, self.min_cacheable_tokens, self.latency, self.time_scale = self._defaults
            self.handler: Handler | None = None
            self.default: Reply | None = None
            self._script: deque[Reply] = deque()
            self.requests: list[RecordedRequest] = []
            self.cache.clear()

    def script(self, *replies: Reply) -> None:
        """Queue replies, served first in, first out."""
        with self._lock:
            self._script.extend(replies)

    @property
    def pending(self) -> int:
        """How many scripted replies are not served yet."""
        return len(self._script)

    @property
    def messages_requests(self) -> list[RecordedRequest]:
        """Recorded requests to POST /v1/messages."""
        return [r for r in self.requests if r.path == "/v1/messages"]

    @property
    def unexpected(self) -> list[RecordedRequest]:
        """Requests the script did not foresee (unknown path, no reply, invalid body...)."""
        return [r for r in self.requests if r.unexpected is not None]

    def assert_no_unexpected(self) -> None:
        """Fail the current test if any request was unexpected."""
        if bad := self.unexpected:
            lines = [f"{r.method} {r.path}: {r.unexpected}" for r in bad]
            pytest.fail("unexpected requests to the fake Anthropic API:\n" + "\n".join(lines))

    async def wait_until(self, predicate: Callable[[FakeAnthropic], bool]) -> None:
        """Poll until `predicate(self)` holds, for at most 5 s (the server thread changes it)."""
        for _ in range(500):
            if predicate(self):
                return
            await anyio.sleep(0.01)
        raise AssertionError("fake Anthropic: condition not met within 5 s")

    def client(self, *, max_retries: int = 0, timeout: float = 10.0) -> anthropic.AsyncAnthropic:
        """A real AsyncAnthropic client pointed at this fake (close it after use)."""
        if self.base_url is None:
            raise RuntimeError("the fake is not running; use run_fake_anthropic()")
        return anthropic.AsyncAnthropic(
            api_key=self.api_key, base_url=self.base_url, max_retries=max_retries, timeout=timeout
        )

    # ---- app

    def _build_app(self) -> FastAPI:
        """The FastAPI app: /v1/messages plus a catch-all that records strays."""
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
        app.add_api_route("/v1/messages", self._messages, methods=["POST"])
        app.add_api_route(
            "/{path:path}",
            self._stray,
            methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
        )
        return app

    def _bind_loop(self) -> None:
        """Attach to the server's event loop (first request after a (re)start)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._closing = loop, asyncio.Event()

    def close_hangs(self) -> None:
        """Release every hanging or sleeping request (called before shutdown)."""
        if self._loop is not None and self._closing is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._closing.set)

    async def _record(self, request: Request) -> RecordedRequest:
        """Record a request's headers, JSON body and arrival."""
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        record = RecordedRequest(
            index=len(self.requests),
            method=request.method,
            path=request.url.path,
            headers=dict(request.headers),
            body=body if isinstance(body, dict) else None,
            arrived_at=time.monotonic(),
        )
        self.requests.append(record)
        return record

    async def _stray(self, request: Request) -> Response:
        """Any other path: unexpected, answered 500."""
        self._bind_loop()
        record = await self._record(request)
        return self._fail(record, f"unknown path {request.url.path}", 500, "api_error")

    def _fail(self, record: RecordedRequest, reason: str, status: int, error_type: str) -> Response:
        """Record an unexpected request and answer it with an error."""
        record.unexpected = reason
        return self._error_response(record, status, error_type, f"fake: {reason}")

    def _error_response(
        self,
        record: RecordedRequest,
        status: int,
        error_type: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """An Anthropic error response, recorded."""
        record.status, record.finished_at = status, time.monotonic()
        request_id = f"req_fake_{record.index:06d}"
        return JSONResponse(
            _error_body(error_type, message, request_id),
            status_code=status,
            headers={"request-id": request_id, **(headers or {})},
        )

    async def _messages(self, request: Request) -> Response:
        """POST /v1/messages."""
        self._bind_loop()
        record = await self._record(request)
        if not self._authorized(record):
            return self._error_response(record, 401, "authentication_error", "invalid x-api-key")
        if problem := self._invalid(record):
            return self._fail(record, problem, 400, "invalid_request_error")
        assert record.body is not None
        record.cache = self.cache.lookup(record.body, self.min_cacheable_tokens, record.arrived_at)
        reply, problem = self._next_reply(record)
        if problem or reply is None:
            return self._fail(record, problem or "no reply scripted", 500, "api_error")
        record.reply = reply
        if isinstance(reply, Hang) and not (reply.after_start and record.stream):
            return await self._hang(record, request)
        if isinstance(reply, Error):
            await self._sleep(self._timing(reply, record)[0])
            return self._error_response(
                record, reply.status, reply.error_type, reply.message, reply.headers
            )
        if record.stream:
            return await self._stream_response(record, reply)
        return await self._json_response(record, reply)

    def _authorized(self, record: RecordedRequest) -> bool:
        """Whether the request carries the key, as x-api-key or (SDK 2.x) a bearer token."""
        bearer = record.headers.get("authorization", "").removeprefix("Bearer ")
        return self.api_key in (record.headers.get("x-api-key"), bearer)

    def _invalid(self, record: RecordedRequest) -> str | None:
        """Why the API would reject this request with 400, if it would."""
        body = record.body
        if "anthropic-version" not in record.headers:
            return "missing anthropic-version header"
        if body is None:
            return "body is not a JSON object"
        for name, kind in (("model", str), ("max_tokens", int), ("messages", list)):
            if not isinstance(body.get(name), kind):
                return f"{name}: missing or not a {kind.__name__}"
        units = _units(body)
        if len([u for u in units if u.cache_control]) > MAX_BREAKPOINTS:
            return f"more than {MAX_BREAKPOINTS} blocks with cache_control"
        forced = record.forced_tool
        if forced is not None and forced not in record.tool_names:
            return f"tool_choice names {forced!r}, not among the tools"
        return None

    def _next_reply(self, record: RecordedRequest) -> tuple[Reply | None, str | None]:
        """The reply for a request (handler, script, default) or why there is none."""
        try:
            with self._lock:
                if self.handler is not None:
                    reply: Reply | None = self.handler(record)
                elif self._script:
                    reply = self._script.popleft()
                else:
                    reply = self.default
        except Exception as exc:
            return None, f"handler raised {exc!r}"
        if reply is None:
            return None, "script exhausted and no default reply"
        if isinstance(reply, ToolUse | Truncated):
            if reply.name not in record.tool_names:
                return None, f"scripted tool {reply.name!r} not among the request's tools"
            if record.forced_tool not in (None, reply.name):
                return None, f"scripted tool {reply.name!r} but tool_choice forces another"
        return reply, None

    # ---- timing

    async def _sleep(self, seconds: float) -> bool:
        """Sleep `seconds` (scaled); False if the server started closing meanwhile."""
        assert self._closing is not None
        if self._closing.is_set():
            return False
        with anyio.move_on_after(max(0.0, seconds * self.time_scale)):
            await self._closing.wait()
            return False
        return True

    def _timing(self, reply: Reply, record: RecordedRequest) -> tuple[float, float]:
        """(ttft, total) in seconds, from the reply or the latency model."""
        assert record.cache is not None
        out = _output_tokens(reply, record)
        model = self.latency
        ttft = getattr(reply, "ttft_s", None)
        if ttft is None:
            ttft = model.ttft(record.cache) if model else 0.0
        total = getattr(reply, "duration_s", None)
        if total is None:
            total = ttft + (out / model.tokens_per_second if model else 0.0)
        return ttft, max(ttft, total)

    def _start(self, record: RecordedRequest) -> None:
        """The moment message_start goes out: the cache writes become READY."""
        assert record.cache is not None
        record.started_at = time.monotonic()
        self.cache.commit(record.cache, record.started_at)
        record.cache_written = bool(record.cache.writes)

    # ---- answers

    async def _hang(self, record: RecordedRequest, request: Request) -> Response:
        """Wait until the client disconnects or the server closes; answer nothing useful."""
        assert self._closing is not None
        closing = self._closing
        async with anyio.create_task_group() as group:

            async def watch_disconnect() -> None:
                while (await request.receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            async def watch_closing() -> None:
                await closing.wait()
                group.cancel_scope.cancel()

            group.start_soon(watch_disconnect)
            group.start_soon(watch_closing)
        record.finished_at = time.monotonic()
        return Response(status_code=503)

    async def _json_response(self, record: RecordedRequest, reply: Reply) -> Response:
        """A non-streaming answer, after the reply's ttft and duration."""
        ttft, total = self._timing(reply, record)
        if not await self._sleep(ttft):
            return Response(status_code=503)
        self._start(record)
        if not await self._sleep(total - ttft):
            return Response(status_code=503)
        if isinstance(reply, StreamError):
            return self._error_response(record, reply.status, reply.error_type, reply.message)
        message = self._message(record, reply, final=True)
        record.status, record.usage = 200, message["usage"]
        record.finished_at = time.monotonic()
        return JSONResponse(message, headers={"request-id": f"req_fake_{record.index:06d}"})

    async def _stream_response(self, record: RecordedRequest, reply: Reply) -> Response:
        """An SSE answer: headers and message_start after ttft, deltas paced to the total."""
        ttft, total = self._timing(reply, record)
        if not await self._sleep(ttft):
            return Response(status_code=503)
        self._start(record)
        record.status = 200
        return StreamingResponse(
            self._events(record, reply, total - ttft),
            media_type="text/event-stream",
            headers={"request-id": f"req_fake_{record.index:06d}", "cache-control": "no-cache"},
        )

    async def _events(
        self, record: RecordedRequest, reply: Reply, span: float
    ) -> AsyncIterator[bytes]:
        """The SSE event sequence the SDK accumulates into a Message."""
        start = self._message(record, reply, final=False)
        yield _sse({"type": "message_start", "message": start})
        yield _sse({"type": "ping"})
        if isinstance(reply, Hang | StreamError):
            if isinstance(reply, Hang):
                assert self._closing is not None
                await self._closing.wait()
            elif await self._sleep(span):
                error = _error_body(reply.error_type, reply.message, f"req_fake_{record.index:06d}")
                yield _sse(error)
            record.finished_at = time.monotonic()
            return
        block, deltas = _stream_block(reply, self._next_id("toolu"))
        yield _sse({"type": "content_block_start", "index": 0, "content_block": block})
        for delta in deltas:
            if not await self._sleep(span / len(deltas)):
                return
            yield _sse({"type": "content_block_delta", "index": 0, "delta": delta})
        yield _sse({"type": "content_block_stop", "index": 0})
        usage = self._usage(record, _output_tokens(reply, record))
        record.usage = usage
        delta_usage = {k: usage[k] for k in _DELTA_USAGE_KEYS}
        yield _sse(
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": _stop_reason(reply),
                    "stop_sequence": None,
                    "stop_details": _stop_details(reply),
                },
                "usage": delta_usage,
            }
        )
        yield _sse({"type": "message_stop"})
        record.finished_at = time.monotonic()

    def _next_id(self, prefix: str) -> str:
        """A fresh id like msg_fake_000001."""
        return f"{prefix}_fake_{next(self._ids):06d}"

    def _usage(self, record: RecordedRequest, output_tokens: int) -> dict[str, Any]:
        """The `usage` object, in the SDK's field names."""
        cache = record.cache
        assert cache is not None
        return {
            "input_tokens": cache.input_tokens,
            "cache_creation_input_tokens": cache.creation_tokens,
            "cache_read_input_tokens": cache.read_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": cache.creation_tokens - cache.creation_1h_tokens,
                "ephemeral_1h_input_tokens": cache.creation_1h_tokens,
            },
            "output_tokens": output_tokens,
            "service_tier": "standard",
        }

    def _message(self, record: RecordedRequest, reply: Reply, *, final: bool) -> dict[str, Any]:
        """The Message object: complete (JSON answer) or as in message_start."""
        assert record.body is not None
        content = [_final_block(reply, self._next_id("toolu"))] if final else []
        return {
            "id": self._next_id("msg"),
            "type": "message",
            "role": "assistant",
            "model": record.body["model"],
            "content": content,
            "stop_reason": _stop_reason(reply) if final else None,
            "stop_sequence": None,
            "stop_details": _stop_details(reply) if final else None,
            "usage": self._usage(record, _output_tokens(reply, record) if final else 1),
        }


_DELTA_USAGE_KEYS = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
)


def _stop_reason(reply: Reply) -> str | None:
    """The stop_reason a reply ends with."""
    if isinstance(reply, ToolUse | Text):
        return reply.stop_reason
    return "max_tokens" if isinstance(reply, Truncated) else None


def _stop_details(reply: Reply) -> dict[str, Any] | None:
    """Refusal details for stop_reason "refusal", else None."""
    if _stop_reason(reply) != "refusal":
        return None
    return {"type": "refusal", "category": None, "explanation": None}


def _truncated_json(reply: Truncated) -> str:
    """The prefix of the tool JSON a Truncated reply gets out."""
    text = _tool_json(reply.input)
    keep = len(text) // 2 if reply.keep_chars is None else reply.keep_chars
    return text[:keep]


def _output_tokens(reply: Reply, record: RecordedRequest) -> int:
    """Output tokens billed for a reply (explicit, max_tokens if truncated, else estimated)."""
    explicit = getattr(reply, "output_tokens", None)
    if explicit is not None:
        return int(explicit)
    if isinstance(reply, Truncated):
        return int((record.body or {}).get("max_tokens", 1))
    if isinstance(reply, ToolUse):
        return max(1, estimate_tokens(_tool_json(reply.input)))
    if isinstance(reply, Text):
        return max(1, estimate_tokens(reply.text))
    return 1


def _final_block(reply: Reply, block_id: str) -> dict[str, Any]:
    """The content block of a non-streaming answer."""
    if isinstance(reply, Text):
        return {"type": "text", "text": reply.text}
    if isinstance(reply, Truncated):
        tool_input: Any = _partial_input(_truncated_json(reply))
        return {"type": "tool_use", "id": block_id, "name": reply.name, "input": tool_input}
    assert isinstance(reply, ToolUse)
    tool_input = reply.input if isinstance(reply.input, str) else dict(reply.input)
    return {"type": "tool_use", "id": block_id, "name": reply.name, "input": tool_input}


def _stream_block(reply: Reply, block_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """content_block_start payload and the deltas that fill it."""
    if isinstance(reply, Text):
        deltas = [{"type": "text_delta", "text": c} for c in _chunks(reply.text)]
        return {"type": "text", "text": ""}, deltas
    assert isinstance(reply, ToolUse | Truncated)
    text = _truncated_json(reply) if isinstance(reply, Truncated) else _tool_json(reply.input)
    deltas = [{"type": "input_json_delta", "partial_json": c} for c in ["", *_chunks(text)]]
    return {"type": "tool_use", "id": block_id, "name": reply.name, "input": {}}, deltas


# --------------------------------------------------------------------------- serving


@contextmanager
def run_fake_anthropic(fake: FakeAnthropic) -> Iterator[str]:
    """Serve `fake` with uvicorn on 127.0.0.1 (a free port) in a thread; yield its base URL."""
    config = uvicorn.Config(
        fake.app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        access_log=False,
        lifespan="off",
        loop="asyncio",
        http="h11",
        ws="none",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="fake-anthropic", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the fake Anthropic server did not start")
        time.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    fake.base_url = f"http://127.0.0.1:{port}"
    try:
        yield fake.base_url
    finally:
        fake.close_hangs()
        server.should_exit = True
        thread.join(timeout=10)
        fake.base_url = None


@pytest.fixture(scope="session")
def fake_anthropic_server() -> Iterator[FakeAnthropic]:
    """One FakeAnthropic served for the whole session (use `fake_anthropic` in tests)."""
    fake = FakeAnthropic()
    with run_fake_anthropic(fake):
        yield fake


@pytest.fixture
def fake_anthropic(fake_anthropic_server: FakeAnthropic) -> Iterator[FakeAnthropic]:
    """A reset fake for one test; the test fails at teardown on any unexpected request."""
    fake = fake_anthropic_server
    fake.reset()
    yield fake
    fake.assert_no_unexpected()


__all__ = [
    "FAKE_API_KEY",
    "CacheResult",
    "Error",
    "FakeAnthropic",
    "Hang",
    "LatencyModel",
    "RecordedRequest",
    "Reply",
    "StreamError",
    "Text",
    "ToolUse",
    "Truncated",
    "block_tokens",
    "estimate_tokens",
    "fake_anthropic",
    "fake_anthropic_server",
    "prompt_tokens",
    "run_fake_anthropic",
]
