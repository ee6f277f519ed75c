"""FastAPI app factory of the GitHub App: POST /webhook, GET /healthz, GET /metrics (DESIGN.md §6, §8).

`POST /webhook` does only: size limit -> X-Hub-Signature-256 -> required headers -> route ->
enqueue -> answer, in milliseconds: it never calls GitHub or a model ("Best practices for
using webhooks": respond within 10 seconds, do the work asynchronously). Answers: 202 queued;
200 duplicate, pong or ignored; 400 malformed; 401 bad signature; 413 too large; never a 5xx.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
from anyio.abc import TaskGroup
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from pydantic import SecretStr
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from bot import webhooks
from bot.jobs import ReviewJob, ReviewQueue
from bot.metrics import Metrics
from bot.webhooks import EnqueueCommand, WebhookError

# Resolves a comment command's pull request to a job at its head commit (a GitHub call), or None.
CommandResolver = Callable[[EnqueueCommand], Awaitable[ReviewJob | None]]
LifespanTasks = Callable[[], AbstractAsyncContextManager[None]]

# "Webhook events and payloads": GitHub caps payloads at 25 MB and does not deliver bigger ones.
MAX_BODY_BYTES: Final = 25 * 1024 * 1024
MAX_HEADER_CHARS: Final = 100
# How long a shutdown waits for command resolutions in flight before cancelling them.
COMMAND_GRACE_S: Final = 10.0
COMMAND_CONCURRENCY: Final = 4

log = logging.getLogger("pr_council.webhook")


@dataclass
class _Reply:
    """An answer to a delivery, with the outcome label it is counted under."""

    status_code: int
    body: dict[str, Any]
    outcome: str


@dataclass
class _Seen:
    """What is known of a delivery so far, for its log line and metrics."""

    delivery: str = "-"
    event: str = "unverified"
    action: str | None = None
    job: str | None = None
    started: float = field(default_factory=time.perf_counter)


def create_app(
    *,
    secret: SecretStr | bytes,
    queue: ReviewQueue,
    metrics: Metrics,
    app_slug: str | None = None,
    lifespan_tasks: LifespanTasks | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    commands: CommandResolver | None = None,
    review_drafts: bool = False,
) -> FastAPI:
    """Build the webhook receiver around a queue; `lifespan_tasks` runs while it serves."""
    key = secret.get_secret_value().encode() if isinstance(secret, SecretStr) else secret
    if not key:
        raise ValueError("the webhook secret is empty: set PR_COUNCIL_WEBHOOK_SECRET")
    receiver = _Receiver(key, queue, metrics, app_slug, commands, max_body_bytes, review_drafts)
    app = _ReceiverApp(
        receiver,
        title="pr-council",
        lifespan=lambda _app: receiver.lifespan(lifespan_tasks),
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    # Routed too, for other methods' 405; an object, so Starlette calls it as a raw ASGI app.
    app.router.routes.append(Route("/webhook", receiver, methods=["POST"]))
    app.add_api_route("/healthz", receiver.healthz, methods=["GET"], response_model=None)
    app.add_api_route("/metrics", receiver.scrape, methods=["GET"], response_model=None)
    return app


class _ReceiverApp(FastAPI):
    """The FastAPI app, with POST /webhook answered before FastAPI's middleware and router.

    Under a burst the receiver is CPU-bound on one event loop, so every layer a delivery goes
    through delays the ones queued behind it (benchmarks/README.md, webhook.py). The webhook
    handler turns every failure into a 4xx itself, so it needs no error middleware.
    """

    def __init__(self, webhook: _Receiver, **options: Any) -> None:
        super().__init__(**options)
        self._webhook = webhook

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send POST /webhook straight to the receiver; everything else through FastAPI."""
        if scope["type"] == "http" and scope["path"] == "/webhook" and scope["method"] == "POST":
            await self._webhook(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


class _Receiver:
    """The state behind the routes: the key, the queue, metrics and background commands."""

    def __init__(
        self,
        key: bytes,
        queue: ReviewQueue,
        metrics: Metrics,
        app_slug: str | None,
        commands: CommandResolver | None,
        max_body_bytes: int,
        review_drafts: bool,
    ) -> None:
        self._key, self._queue, self._metrics = key, queue, metrics
        self._app_slug, self._commands = app_slug, commands
        self._max_body, self._review_drafts = max_body_bytes, review_drafts
        self._group: TaskGroup | None = None
        self._limiter = anyio.CapacityLimiter(COMMAND_CONCURRENCY)

    @asynccontextmanager
    async def lifespan(self, tasks: LifespanTasks | None) -> AsyncIterator[None]:
        """Run `tasks` (the queue's workers) and own background commands."""
        async with tasks() if tasks else nullcontext(), anyio.create_task_group() as group:
            self._group = group
            try:
                yield
            finally:
                self._group = None
                group.cancel_scope.deadline = anyio.current_time() + COMMAND_GRACE_S

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one delivery to POST /webhook (raw ASGI); any failure becomes a 4xx, never a 5xx."""
        headers = _headers(scope)
        seen = _Seen(delivery=_clip(headers.get("x-github-delivery")))
        try:
            reply = await self._handle(headers, receive, seen)
        except WebhookError as exc:
            reply = _rejected(exc.status, exc.message, _REJECTED[exc.status])
        except Exception:
            # No body and no headers in the log: they may hold secrets.
            log.exception("delivery %r: unexpected error while handling it", seen.delivery)
            reply = _rejected(400, "could not process the delivery", "error")
        self._record(seen, reply)
        await _send_json(send, reply)

    async def _handle(self, headers: dict[str, str], receive: Receive, seen: _Seen) -> _Reply:
        """Check size, signature and headers, route the delivery and act on it."""
        body = await _read_body(receive, headers.get("content-length"), self._max_body)
        webhooks.verify_signature(self._key, body, headers.get(_SIGNATURE))
        event = _required(headers, "X-GitHub-Event")
        # "Best practices for using webhooks": X-GitHub-Delivery is unique per delivery and a
        # redelivery reuses it; the queue de-duplicates on it.
        delivery = _required(headers, "X-GitHub-Delivery")
        seen.event = event
        routed = webhooks.route(
            event, delivery, body, app_slug=self._app_slug, review_drafts=self._review_drafts
        )
        seen.action = routed.action
        return await self._act(routed, seen)

    async def _act(self, routed: webhooks.Routed, seen: _Seen) -> _Reply:
        """Turn a routing decision into an answer, queueing the job if there is one."""
        match routed:
            case webhooks.Enqueue(job=job):
                seen.job = job.label
                return await self._submit(job)
            case webhooks.EnqueueCommand():
                seen.job = routed.target
                return self._schedule(routed)
            case webhooks.Pong(zen=zen):
                return _Reply(200, {"status": "pong", "zen": zen}, "pong")
            case webhooks.Logged(reason=reason):
                return _ignored(reason, "logged")
            case webhooks.Ignored(reason=reason):
                return _ignored(reason)

    async def _submit(self, job: ReviewJob) -> _Reply:
        """Queue the job: 202 when queued, 200 when the delivery or the job was already seen."""
        submitted = await self._queue.submit(job)
        if submitted == "queued":
            return _Reply(202, {"status": "queued", "job": job.label}, "queued")
        body = {"status": "duplicate", "reason": submitted, "job": job.label}
        return _Reply(200, body, "duplicate")

    def _schedule(self, command: EnqueueCommand) -> _Reply:
        """Resolve the command's head commit in the background and answer 202 now."""
        if self._commands is None:
            return _ignored("commands need the GitHub App")
        if self._group is None:
            log.error("delivery %r: review command received before startup", command.delivery_id)
            return _ignored("the receiver is not started")
        self._group.start_soon(self._resolve, self._commands, command)
        pending = "resolving the head commit"
        return _Reply(
            202, {"status": "queued", "target": command.target, "pending": pending}, "queued"
        )

    async def _resolve(self, resolver: CommandResolver, command: EnqueueCommand) -> None:
        """Resolve a command to a job and queue it; log failures, never raise (it would stop the app)."""
        target = command.target
        try:
            async with self._limiter:
                job = await resolver(command)
                submitted = await self._queue.submit(job) if job else "not resolved"
        except Exception:
            log.exception("delivery %r: review command on %s failed", command.delivery_id, target)
            return
        log.info("delivery %r: review command on %s: %s", command.delivery_id, target, submitted)

    def _record(self, seen: _Seen, reply: _Reply) -> None:
        """Log and count one answered delivery."""
        seconds = time.perf_counter() - seen.started
        label = webhooks.event_label(seen.event) if seen.event != "unverified" else seen.event
        self._metrics.observe_delivery(label, reply.outcome, seconds)
        log.info(
            "delivery %r event=%r action=%r outcome=%s status=%d job=%s %.1f ms",
            seen.delivery,
            seen.event,
            seen.action,
            reply.outcome,
            reply.status_code,
            seen.job or "-",
            seconds * 1000,
        )

    async def healthz(self) -> JSONResponse:
        """Report liveness and the queue depth (503 when the queue does not answer)."""
        try:
            depth = await self._queue.depth()
        except Exception:
            log.exception("health check: the queue did not answer")
            return JSONResponse({"status": "error", "reason": "queue unavailable"}, status_code=503)
        return JSONResponse({"status": "ok", "queue_depth": depth})

    async def scrape(self) -> Response:
        """Serve the metrics in Prometheus text format, with the queue depth as of now."""
        try:
            self._metrics.set_queue_depth(await self._queue.depth())
        except Exception:
            log.exception("metrics: the queue did not answer; queue depth is stale")
        body, content_type = self._metrics.render()
        return Response(body, media_type=content_type)


_REJECTED: Final = {400: "bad_request", 401: "unauthorized", 413: "too_large"}
_SIGNATURE: Final = webhooks.SIGNATURE_HEADER.lower()
_READ_HEADERS: Final = frozenset(
    {"content-length", "x-github-delivery", "x-github-event", _SIGNATURE}
)


def _ignored(reason: str, outcome: str = "ignored") -> _Reply:
    """Acknowledge a delivery that asks for nothing (200)."""
    return _Reply(200, {"status": "ignored", "reason": reason}, outcome)


def _rejected(status_code: int, reason: str, outcome: str) -> _Reply:
    """Refuse a delivery with a 4xx and the reason."""
    return _Reply(status_code, {"status": "rejected", "reason": reason}, outcome)


async def _read_body(receive: Receive, declared: str | None, limit: int) -> bytes:
    """Read the body, refusing one over `limit` bytes (413) without reading the rest."""
    _check_declared_length(declared, limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":  # nobody reads the answer; no traceback
            raise WebhookError(400, "the client disconnected")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise WebhookError(413, f"the body is over {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _headers(scope: Scope) -> dict[str, str]:
    """Return the request's headers we read, by lower-case name (the first of repeats wins)."""
    found: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        if name in _READ_HEADERS and name not in found:
            found[name] = raw_value.decode("latin-1")
    return found


async def _send_json(send: Send, reply: _Reply) -> None:
    """Send `reply` as an application/json response."""
    body = json.dumps(reply.body, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": reply.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _check_declared_length(declared: str | None, limit: int) -> None:
    """Refuse a Content-Length that is not a number (400) or over `limit` (413)."""
    if declared is None:
        return
    if not (declared.isascii() and declared.isdigit()):
        raise WebhookError(400, "invalid Content-Length header")
    digits = declared.lstrip("0") or "0"
    if len(digits) > len(str(limit)) or int(digits) > limit:
        raise WebhookError(413, f"the body is over {limit} bytes")


def _required(headers: dict[str, str], name: str) -> str:
    """Return a required header's value, or raise WebhookError(400)."""
    value = headers.get(name.lower(), "")
    if not value or len(value) > MAX_HEADER_CHARS:
        raise WebhookError(400, f"missing or invalid {name} header")
    return value


def _clip(value: str | None) -> str:
    """Return a header value short enough for a log line."""
    return value[:MAX_HEADER_CHARS] if value else "-"
