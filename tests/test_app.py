"""The webhook receiver over HTTP: status codes, queueing, commands, health, metrics, fuzzing."""

from __future__ import annotations

import copy
import functools
import hmac
import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from bot.app import create_app
from bot.jobs import ReviewJob, Submitted
from bot.metrics import Metrics
from bot.webhooks import EnqueueCommand

pytestmark = pytest.mark.anyio

SAMPLES = Path(__file__).parent / "data" / "webhooks"
SECRET = "It's a Secret to Everybody"
SLUG = "pr-council"
HEAD = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
MB = 1024 * 1024


class RecordingQueue:
    """A ReviewQueue that records submitted jobs and answers as told."""

    def __init__(self, answer: Submitted = "queued") -> None:
        self.answer: Submitted = answer
        self.jobs: list[ReviewJob] = []
        self.submitted = anyio.Event()
        self.fail: Exception | None = None

    async def submit(self, job: ReviewJob) -> Submitted:
        if self.fail is not None:
            raise self.fail
        self.jobs.append(job)
        self.submitted.set()
        return self.answer

    async def depth(self) -> int:
        if self.fail is not None:
            raise self.fail
        return len(self.jobs)


def build(queue: RecordingQueue, **options: Any) -> FastAPI:
    """Build a receiver with the test secret and slug."""
    return create_app(
        secret=SecretStr(SECRET), queue=queue, metrics=Metrics(), app_slug=SLUG, **options
    )


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and give a client talking to it over ASGI."""
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://receiver") as client,
    ):
        yield client


@functools.cache
def _sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / f"{name}.json").read_bytes())
    return data


def sample(name: str) -> dict[str, Any]:
    """Return a fresh copy of a recorded-style payload."""
    return copy.deepcopy(_sample(name))


def sha256(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, "sha256").hexdigest()


def sha1(body: bytes) -> str:
    return "sha1=" + hmac.new(SECRET.encode(), body, "sha1").hexdigest()


def headers(event: str, body: bytes, **extra: str) -> dict[str, str]:
    """Return the headers GitHub sends with a delivery, signed."""
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "467712836",
        "X-Hub-Signature-256": sha256(body),
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/a1b2c3d",
        **extra,
    }


async def post(client: httpx.AsyncClient, event: str, payload: dict[str, Any]) -> httpx.Response:
    """Deliver a signed payload."""
    body = json.dumps(payload).encode()
    return await client.post("/webhook", content=body, headers=headers(event, body))


# --- 202 / 200 ---


async def test_a_signed_opened_delivery_queues_the_review() -> None:
    queue = RecordingQueue()
    async with running(build(queue)) as client:
        body = json.dumps(sample("pull_request.opened")).encode()
        sent = headers("pull_request", body)
        response = await client.post("/webhook", content=body, headers=sent)
    assert response.status_code == 202
    assert response.json() == {"status": "queued", "job": "Codertocat/Hello-World#2@ec26c3e"}
    assert [job.model_dump() for job in queue.jobs] == [
        {
            "owner": "Codertocat",
            "repo": "Hello-World",
            "number": 2,
            "head_sha": HEAD,
            "installation_id": 2311213,
            "trigger": "opened",
            "delivery_id": sent["X-GitHub-Delivery"],
            "requested_by": None,
        }
    ]


@pytest.mark.parametrize("answer", ["duplicate_delivery", "duplicate_job"])
async def test_a_duplicate_is_a_200(answer: Submitted) -> None:
    async with running(build(RecordingQueue(answer))) as client:
        response = await post(client, "pull_request", sample("pull_request.synchronize"))
    assert response.status_code == 200
    assert response.json()["status"] == "duplicate"
    assert response.json()["reason"] == answer


async def test_ping_is_a_pong() -> None:
    async with running(build(RecordingQueue())) as client:
        response = await post(client, "ping", sample("ping"))
    assert (response.status_code, response.json()) == (
        200,
        {"status": "pong", "zen": "Design for failure."},
    )


@pytest.mark.parametrize(
    ("event", "name", "reason"),
    [
        ("push", "push", "event 'push' is not handled"),
        ("installation", "installation.created", "installation created by Codertocat"),
        (
            "pull_request",
            "pull_request.closed",
            "pull_request action 'closed' does not ask for a review",
        ),
        ("pull_request", "pull_request.opened.no_installation", "no installation in the delivery"),
    ],
)
async def test_deliveries_that_ask_for_nothing_are_a_200_with_the_reason(
    event: str, name: str, reason: str
) -> None:
    queue = RecordingQueue()
    async with running(build(queue)) as client:
        response = await post(client, event, sample(name))
    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    assert response.json()["reason"].startswith(reason)
    assert queue.jobs == []


# --- 401: "Validating webhook deliveries" ---


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param({"X-Hub-Signature-256": sha256(b"{}", secret="guess")}, id="forged"),
        pytest.param({"X-Hub-Signature-256": "sha256=" + "0" * 64}, id="zeros"),
        pytest.param({"X-Hub-Signature-256": "sha256=abc"}, id="malformed"),
        pytest.param({}, id="unsigned"),
    ],
)
async def test_a_badly_signed_delivery_is_a_401(signature: dict[str, str]) -> None:
    queue = RecordingQueue()
    body = json.dumps(sample("pull_request.opened")).encode()
    sent = {k: v for k, v in headers("pull_request", body).items() if k != "X-Hub-Signature-256"}
    async with running(build(queue)) as client:
        response = await client.post("/webhook", content=body, headers=sent | signature)
    assert response.status_code == 401
    assert response.json()["status"] == "rejected"
    assert queue.jobs == []


async def test_a_delivery_signed_with_the_legacy_sha1_header_only_is_a_401() -> None:
    body = json.dumps(sample("pull_request.opened")).encode()
    sent = {k: v for k, v in headers("pull_request", body).items() if k != "X-Hub-Signature-256"}
    async with running(build(RecordingQueue())) as client:
        response = await client.post(
            "/webhook", content=body, headers=sent | {"X-Hub-Signature": sha1(body)}
        )
    assert response.status_code == 401
    assert response.json()["reason"] == "missing X-Hub-Signature-256"


async def test_the_signature_is_checked_before_the_headers() -> None:
    async with running(build(RecordingQueue())) as client:
        response = await client.post("/webhook", content=b"{}")
    assert response.status_code == 401


# --- 400 ---


@pytest.mark.parametrize(
    "body", [b"{not json", b"[]", b"\xff\xfe", b"payload=%7B%7D", b""], ids=repr
)
async def test_a_signed_body_that_is_not_a_json_object_is_a_400(body: bytes) -> None:
    async with running(build(RecordingQueue())) as client:
        response = await client.post("/webhook", content=body, headers=headers("push", body))
    assert response.status_code == 400


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"X-GitHub-Event": ""}, id="empty-event"),
        pytest.param({"X-GitHub-Event": "e" * 101}, id="long-event"),
        pytest.param({"X-GitHub-Delivery": ""}, id="empty-delivery"),
        pytest.param({"X-GitHub-Delivery": "d" * 101}, id="long-delivery"),
        pytest.param({"X-GitHub-Event": None}, id="no-event"),
        pytest.param({"X-GitHub-Delivery": None}, id="no-delivery"),
    ],
)
async def test_missing_or_invalid_github_headers_are_a_400(change: dict[str, str | None]) -> None:
    queue = RecordingQueue()
    body = json.dumps(sample("pull_request.opened")).encode()
    sent = headers("pull_request", body) | change
    async with running(build(queue)) as client:
        response = await client.post(
            "/webhook", content=body, headers={k: v for k, v in sent.items() if v is not None}
        )
    assert response.status_code == 400
    assert "header" in response.json()["reason"]
    assert queue.jobs == []


async def test_an_invalid_content_length_is_a_400() -> None:
    body = b"{}"
    async with running(build(RecordingQueue())) as client:
        response = await client.post(
            "/webhook", content=body, headers=headers("ping", body, **{"Content-Length": "2x"})
        )
    assert response.status_code == 400


async def test_an_unexpected_failure_is_a_400_logged_with_the_delivery_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = RecordingQueue()
    queue.fail = RuntimeError("journal is locked")
    body = json.dumps(sample("pull_request.opened")).encode()
    sent = headers("pull_request", body)
    async with running(build(queue)) as client:
        with caplog.at_level(logging.INFO, logger="pr_council.webhook"):
            response = await client.post("/webhook", content=body, headers=sent)
    assert response.status_code == 400
    assert response.json() == {"status": "rejected", "reason": "could not process the delivery"}
    failure = next(r for r in caplog.records if r.exc_info)
    assert sent["X-GitHub-Delivery"] in failure.getMessage()
    assert "journal is locked" in caplog.text
    # The job's label (owner/repo#number@sha) is logged; the payload's text never is.
    assert "Codertocat/Hello-World#2@" in caplog.text
    assert "yaml.safe_load" not in caplog.text
    assert SECRET not in caplog.text


# --- 413 ---


async def test_a_declared_oversized_body_is_a_413_without_reading_it() -> None:
    chunks = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal chunks
        for _ in range(30):
            chunks += 1
            yield b"x" * MB

    over = str(25 * MB + 1)
    async with running(build(RecordingQueue())) as client:
        response = await client.post(
            "/webhook", content=body(), headers=headers("ping", b"", **{"Content-Length": over})
        )
    assert response.status_code == 413
    assert chunks == 0


async def test_an_oversized_stream_without_content_length_is_a_413_once_over_the_limit() -> None:
    chunks = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal chunks
        for _ in range(40):
            chunks += 1
            yield b"x" * MB

    async with running(build(RecordingQueue())) as client:
        request = client.build_request(
            "POST", "/webhook", content=body(), headers=headers("ping", b"")
        )
        assert "content-length" not in request.headers
        response = await client.send(request)
    assert response.status_code == 413
    assert chunks == 26  # 25 MB is allowed; the 26th megabyte is refused, the rest never read


async def test_a_body_at_the_limit_is_read() -> None:
    payload = json.dumps(sample("ping")).encode()
    async with running(build(RecordingQueue(), max_body_bytes=len(payload))) as client:
        ok = await client.post("/webhook", content=payload, headers=headers("ping", payload))
        over = payload + b" "
        refused = await client.post("/webhook", content=over, headers=headers("ping", over))
    assert (ok.status_code, refused.status_code) == (200, 413)


# --- review commands ---


async def test_a_comment_command_is_resolved_in_the_background_and_queued() -> None:
    queue = RecordingQueue()
    asked: list[EnqueueCommand] = []

    async def resolve(command: EnqueueCommand) -> ReviewJob:
        asked.append(command)
        return command.job(HEAD)

    async with running(build(queue, commands=resolve)) as client:
        response = await post(
            client, "issue_comment", sample("issue_comment.created.command_member")
        )
        assert response.status_code == 202
        assert response.json()["target"] == "Codertocat/Hello-World#2"
        with anyio.fail_after(5):
            await queue.submitted.wait()
    assert [c.requested_by for c in asked] == ["octocat"]
    assert [(j.trigger, j.requested_by, j.head_sha) for j in queue.jobs] == [
        ("command", "octocat", HEAD)
    ]


async def test_without_a_resolver_commands_are_ignored() -> None:
    async with running(build(RecordingQueue())) as client:
        response = await post(
            client, "issue_comment", sample("issue_comment.created.command_member")
        )
    assert response.status_code == 200
    assert response.json()["reason"] == "commands need the GitHub App"


@pytest.mark.parametrize("outcome", ["none", "error"])
async def test_a_command_that_cannot_be_resolved_queues_nothing_and_keeps_serving(
    outcome: str, caplog: pytest.LogCaptureFixture
) -> None:
    queue = RecordingQueue()

    async def resolve(command: EnqueueCommand) -> ReviewJob | None:
        if outcome == "error":
            raise RuntimeError("GitHub said 404")
        return None

    with caplog.at_level(logging.INFO, logger="pr_council.webhook"):
        async with running(build(queue, commands=resolve)) as client:
            first = await post(
                client, "issue_comment", sample("issue_comment.created.command_member")
            )
            second = await post(client, "pull_request", sample("pull_request.opened"))
    # Leaving `running` waited for the background resolution to finish.
    assert (first.status_code, second.status_code) == (202, 202)
    assert [j.trigger for j in queue.jobs] == ["opened"]
    assert ("GitHub said 404" in caplog.text) == (outcome == "error")


async def test_a_command_before_startup_is_ignored_not_crashed() -> None:
    app = build(RecordingQueue(), commands=_never)
    transport = httpx.ASGITransport(app=app)  # no lifespan: the app was never started
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
        response = await post(
            client, "issue_comment", sample("issue_comment.created.command_member")
        )
    assert response.status_code == 200
    assert response.json()["reason"] == "the receiver is not started"


async def _never(command: EnqueueCommand) -> ReviewJob | None:
    raise AssertionError("not called")


# --- lifespan, logs, health, metrics ---


async def test_lifespan_tasks_run_while_the_app_serves() -> None:
    events: list[str] = []

    @asynccontextmanager
    async def workers() -> AsyncIterator[None]:
        events.append("start")
        yield
        events.append("stop")

    async with running(build(RecordingQueue(), lifespan_tasks=workers)) as client:
        assert events == ["start"]
        assert (await client.get("/healthz")).status_code == 200
    assert events == ["start", "stop"]


async def test_each_delivery_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    body = json.dumps(sample("pull_request.opened")).encode()
    sent = headers("pull_request", body)
    async with running(build(RecordingQueue())) as client:
        with caplog.at_level(logging.INFO, logger="pr_council.webhook"):
            await client.post("/webhook", content=body, headers=sent)
    [record] = [r for r in caplog.records if r.name == "pr_council.webhook"]
    message = record.getMessage()
    assert record.levelno == logging.INFO
    for part in (
        sent["X-GitHub-Delivery"],
        "event='pull_request'",
        "action='opened'",
        "outcome=queued",
        " ms",
    ):
        assert part in message


async def test_other_methods_on_the_webhook_path_are_405_and_queue_nothing() -> None:
    queue = RecordingQueue()
    async with running(build(queue)) as client:
        for method in ("GET", "PUT", "DELETE"):
            response = await client.request(method, "/webhook")
            assert response.status_code == 405, method
        assert (await client.post("/webhook/")).status_code in (307, 404)
    assert queue.jobs == []


async def test_healthz_reports_the_queue_depth() -> None:
    async with running(build(RecordingQueue())) as client:
        await post(client, "pull_request", sample("pull_request.opened"))
        response = await client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok", "queue_depth": 1})


async def test_healthz_is_a_503_when_the_queue_does_not_answer() -> None:
    queue = RecordingQueue()
    async with running(build(queue)) as client:
        queue.fail = RuntimeError("database is gone")
        response = await client.get("/healthz")
    assert response.status_code == 503


async def test_metrics_count_deliveries_in_prometheus_text() -> None:
    async with running(build(RecordingQueue())) as client:
        await post(client, "pull_request", sample("pull_request.opened"))
        await post(client, "x-custom-event-" + "z" * 40, {"zen": 1})
        await client.post("/webhook", content=b"{}")
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'pr_council_webhook_deliveries_total{event="pull_request",outcome="queued"} 1.0' in text
    assert 'pr_council_webhook_deliveries_total{event="other",outcome="ignored"} 1.0' in text
    assert (
        'pr_council_webhook_deliveries_total{event="unverified",outcome="unauthorized"} 1.0' in text
    )
    assert "pr_council_queue_depth 1.0" in text
    for name in (
        "pr_council_webhook_seconds_bucket",
        "pr_council_reviews_total",
        "pr_council_specialist_seconds",
        "pr_council_tokens_total",
        "pr_council_cost_usd_total",
        "pr_council_failures_total",
    ):
        assert name in text


def test_metrics_record_a_reviews_specialists() -> None:
    from agents.model import AgentReport, Review

    metrics = Metrics()
    review = Review(
        mode="parallel",
        target="Codertocat/Hello-World#2",
        agents=(
            AgentReport(
                agent="security",
                status="ok",
                start_ms=0,
                end_ms=1500,
                input_tokens=900,
                output_tokens=120,
                cost_usd=0.0042,
            ),
            AgentReport(agent="style", status="timed_out", start_ms=0, end_ms=30_000),
            AgentReport(agent="performance", status="skipped"),
        ),
    )
    metrics.observe_review("posted", review)
    metrics.observe_review("failed", None)
    text = metrics.render()[0].decode()
    assert 'pr_council_reviews_total{outcome="posted"} 1.0' in text
    assert 'pr_council_reviews_total{outcome="failed"} 1.0' in text
    assert 'pr_council_tokens_total{agent="security",kind="input"} 900.0' in text
    assert 'pr_council_tokens_total{agent="security",kind="output"} 120.0' in text
    assert 'pr_council_cost_usd_total{agent="security"} 0.0042' in text
    assert 'pr_council_failures_total{agent="style"} 1.0' in text
    assert 'pr_council_specialist_seconds_count{agent="security"} 1.0' in text
    assert 'pr_council_specialist_seconds_count{agent="performance"}' not in text


async def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="secret is empty"):
        create_app(secret=b"", queue=RecordingQueue(), metrics=Metrics())


# --- fuzz: never a 5xx ---

HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=120).filter(
    lambda s: s == s.strip()
)
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
NAMES = sorted(p.stem for p in SAMPLES.glob("*.json"))
REVIEWABLE = [
    "pull_request.opened",
    "pull_request.synchronize",
    "pull_request.reopened",
    "pull_request.ready_for_review",
    "issue_comment.created.command_member",
]


@st.composite
def mutated_sample(draw: st.DrawFn) -> tuple[str, bytes]:
    """Return a sample's event and the sample with a few values deleted or replaced."""
    name = draw(st.sampled_from(NAMES) | st.sampled_from(REVIEWABLE))
    data = sample(name)
    for _ in range(draw(st.integers(0, 2))):
        node = data
        while draw(st.booleans()):
            child = node[draw(st.sampled_from(sorted(node)))]
            if not isinstance(child, dict) or not child:
                break
            node = child
        key = draw(st.sampled_from(sorted(node)))
        if draw(st.booleans()):
            del node[key]
        else:
            node[key] = draw(JSON_VALUES)
    return name.split(".")[0], json.dumps(data).encode()


HANDLED = st.sampled_from(["pull_request", "issue_comment", "ping", "installation", "push"])
OTHER_BODIES = st.one_of(
    st.binary(max_size=300),
    st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=5).map(
        lambda d: json.dumps(d).encode()
    ),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
)
# Mostly well-formed, validly signed deliveries, so that the fuzzing reaches the parser.
DELIVERIES = st.one_of(
    mutated_sample(),
    mutated_sample(),
    mutated_sample(),
    st.tuples(HANDLED | HEADER_TEXT, OTHER_BODIES),
    st.tuples(HEADER_TEXT, mutated_sample().map(lambda pair: pair[1])),
)
DELIVERY_IDS = st.one_of(st.uuids().map(str), st.uuids().map(str), HEADER_TEXT)
SIGNING = st.sampled_from(["valid"] * 6 + ["none", "sha1-only", "other-body", "garbage"])


def _is_json_object(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body), dict)
    except (ValueError, RecursionError):
        return False


def _signature(signing: str, garbage: str, body: bytes) -> dict[str, bytes]:
    """Return the signature headers for a fuzzed delivery."""
    match signing:
        case "valid":
            return {"X-Hub-Signature-256": sha256(body).encode()}
        case "none":
            return {}
        case "sha1-only":
            return {"X-Hub-Signature": sha1(body).encode()}
        case "other-body":
            return {"X-Hub-Signature-256": sha256(body + b" ").encode()}
    return {"X-Hub-Signature-256": garbage.encode("latin-1")}


def _expected(signing: str, event_name: str, delivery: str, body: bytes) -> set[int]:
    """Return the statuses DESIGN.md §8 allows for this delivery."""
    if signing != "valid":
        return {401}
    if not 0 < len(event_name) <= 100 or not 0 < len(delivery) <= 100:
        return {400}
    return {200, 202} if _is_json_object(body) else {400}


@pytest.fixture
async def fuzz_client() -> AsyncIterator[httpx.AsyncClient]:
    async def resolve(command: EnqueueCommand) -> ReviewJob | None:
        return None

    async with running(build(RecordingQueue(), commands=resolve)) as client:
        yield client


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(delivery=DELIVERIES, delivery_id=DELIVERY_IDS, signing=SIGNING, garbage=HEADER_TEXT)
async def test_no_delivery_gets_a_5xx(
    fuzz_client: httpx.AsyncClient,
    delivery: tuple[str, bytes],
    delivery_id: str,
    signing: str,
    garbage: str,
) -> None:
    event_name, body = delivery
    sent: dict[str, bytes] = {
        "X-GitHub-Event": event_name.encode("latin-1"),
        "X-GitHub-Delivery": delivery_id.encode("latin-1"),
        "Content-Type": b"application/json",
        **_signature(signing, garbage, body),
    }
    response = await fuzz_client.post("/webhook", content=body, headers=sent)
    answer = response.json()
    event(f"{response.status_code} {answer['status']}")
    assert response.status_code in _expected(signing, event_name, delivery_id, body)
    assert answer["status"] in {"queued", "duplicate", "pong", "ignored", "rejected"}
