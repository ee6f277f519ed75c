"""App mode end to end: signed deliveries into the real app, reviews on the fake GitHub."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from githubkit.cache import MemCacheStrategy
from pydantic import SecretStr

from agents.render import SUMMARY_MARKER
from bot.config import Settings
from bot.github.client import Pacer
from bot.queue import EmbeddedQueue, QueueOptions
from bot.serve import ServeOptions, build_app
from tests.e2e.conftest import run_cli
from tests.fakes.github_api import FAKE_APP_ID, FakeGitHub
from tests.test_publish import BASE, HEAD, SLEEPY
from tests.test_queue import FakeClock

pytestmark = pytest.mark.anyio

SECRET = "webhook-secret-for-tests"
DATA = Path(__file__).parent.parent / "data" / "webhooks"
OWNER, REPO, NUMBER, INSTALLATION = "Codertocat", "Hello-World", 2, 2311213
SHA1, SHA2 = "1" * 40, "2" * 40
FIXED = {
    **HEAD,
    "app/sleepy.py": SLEEPY.replace("import time", "import asyncio").replace(
        "time.sleep(1)", "await asyncio.sleep(1)"
    ),
}


def sample(name: str, **pull: Any) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text())
    if "pull_request" in payload:
        payload["pull_request"]["head"].update(pull)
    return payload


def signed(
    payload: dict[str, Any] | bytes, event: str, delivery: str | None = None
) -> dict[str, Any]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": f"sha256={digest}",
        "Content-Type": "application/json",
    }
    return {"content": body, "headers": headers}


@pytest.fixture
def github(fake_github: FakeGitHub) -> FakeGitHub:
    fake_github.add_repo(OWNER, REPO, installation_id=INSTALLATION)
    fake_github.add_pull(
        OWNER, REPO, NUMBER, base_files=BASE, head_files=HEAD, head_sha=SHA1, title="Queries"
    )
    return fake_github


@pytest.fixture
def settings(github: FakeGitHub, tmp_path: Path) -> Settings:
    return Settings(
        webhook_secret=SecretStr(SECRET),
        app_id=str(FAKE_APP_ID),
        private_key=SecretStr(github.private_key_pem),
        github_api_url=github.base_url or "",
        state_dir=tmp_path / "state",
    )


@asynccontextmanager
async def running(
    settings: Settings, queue_options: QueueOptions | None = None
) -> AsyncIterator[tuple[httpx.AsyncClient, EmbeddedQueue]]:
    """Start the real app (lifespan: workers) and talk to it over ASGI."""
    options = ServeOptions(
        cache=MemCacheStrategy(),
        pacer=Pacer(interval_s=0.0),
        queue=queue_options or QueueOptions(),
    )
    app: FastAPI = build_app(settings, "pr-council", options)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://app") as client,
    ):
        yield client, app.state.queue


async def test_an_opened_pull_request_gets_one_summary_one_review_and_one_check(
    github: FakeGitHub, settings: Settings
) -> None:
    async with running(settings) as (client, queue):
        answer = await client.post(
            "/webhook", **signed(sample("pull_request.opened", sha=SHA1), "pull_request")
        )
        assert answer.status_code == 202, answer.text
        await queue.wait_idle()
    [summary] = github.issue_comments(OWNER, REPO, NUMBER)
    assert summary.author.login == "pr-council[bot]" and SUMMARY_MARKER in summary.body
    assert len(github.reviews(OWNER, REPO, NUMBER)) == 1
    assert github.review_comments(OWNER, REPO, NUMBER)
    [run] = github.check_runs(OWNER, REPO)
    assert run.head_sha == SHA1 and run.name == "pr-council"
    assert {r.auth.kind for r in github.requests if "/repos/" in r.path} == {"installation"}
    [job] = await_jobs(settings)
    assert job == ("posted", SHA1)


async def test_metrics_count_the_delivery_and_the_posted_review(
    github: FakeGitHub, settings: Settings
) -> None:
    async with running(settings) as (client, queue):
        await client.post(
            "/webhook", **signed(sample("pull_request.opened", sha=SHA1), "pull_request")
        )
        await queue.wait_idle()
        metrics = (await client.get("/metrics")).text
        health = (await client.get("/healthz")).json()
    assert 'pr_council_reviews_total{outcome="posted"} 1.0' in metrics
    assert (
        'pr_council_webhook_deliveries_total{event="pull_request",outcome="queued"} 1.0' in metrics
    )
    assert 'pr_council_specialist_seconds_count{agent="security"} 1.0' in metrics
    assert health == {"status": "ok", "queue_depth": 0}


async def test_a_rate_limited_publish_goes_back_to_the_queue_and_posts_once_later(
    github: FakeGitHub, settings: Settings
) -> None:
    limit = github.secondary_rate_limit("POST", r"/pulls/2/reviews$", retry_after=120)
    clock = FakeClock()
    async with running(settings, QueueOptions(clock=clock, sleep=clock.sleep)) as (client, queue):
        start = clock.now
        await client.post(
            "/webhook", **signed(sample("pull_request.opened", sha=SHA1), "pull_request")
        )
        await queue.wait_idle()
        [record] = await queue.jobs()
    assert limit.hits == 1 and clock.now - start >= 120  # waited in the queue, not in place
    assert (record.state, record.attempts) == ("posted", 1)
    assert len(github.reviews(OWNER, REPO, NUMBER)) == 1
    assert len(github.issue_comments(OWNER, REPO, NUMBER)) == 1
    assert len(github.check_runs(OWNER, REPO)) == 1


def await_jobs(settings: Settings) -> list[tuple[str, str]]:
    """Read the journal after the app stopped."""
    import sqlite3

    with sqlite3.connect(settings.state_dir / "queue.sqlite3") as db:
        rows = db.execute("SELECT state, head_sha FROM jobs ORDER BY id").fetchall()
    db.close()
    return [(state, sha) for state, sha in rows]


async def test_a_push_that_fixes_a_finding_edits_the_summary_and_posts_no_duplicates(
    github: FakeGitHub, settings: Settings
) -> None:
    async with running(settings) as (client, queue):
        await client.post(
            "/webhook", **signed(sample("pull_request.opened", sha=SHA1), "pull_request")
        )
        await queue.wait_idle()
        first = github.issue_comments(OWNER, REPO, NUMBER)
        inline = github.review_comments(OWNER, REPO, NUMBER)
        github.push(OWNER, REPO, NUMBER, SHA2, FIXED)
        payload = sample("pull_request.synchronize", sha=SHA2)
        assert (await client.post("/webhook", **signed(payload, "pull_request"))).status_code == 202
        await queue.wait_idle()
    [summary] = github.issue_comments(OWNER, REPO, NUMBER)
    assert summary.id == first[0].id and summary.body != first[0].body
    assert "Resolved since the last review (1)" in summary.body and "app/sleepy.py" in summary.body
    assert "🔁" in summary.body  # the rest is still open
    assert len(github.review_comments(OWNER, REPO, NUMBER)) == len(inline)
    assert [r.head_sha for r in github.check_runs(OWNER, REPO)] == [SHA1, SHA2]


async def test_a_redelivery_or_a_second_event_for_the_same_head_reviews_once(
    github: FakeGitHub, settings: Settings
) -> None:
    delivery = str(uuid.uuid4())
    async with running(settings) as (client, queue):
        opened = sample("pull_request.opened", sha=SHA1)
        assert (
            await client.post("/webhook", **signed(opened, "pull_request", delivery))
        ).status_code == 202
        again = await client.post("/webhook", **signed(opened, "pull_request", delivery))
        reopened = await client.post(
            "/webhook", **signed(sample("pull_request.reopened", sha=SHA1), "pull_request")
        )
        await queue.wait_idle()
        late = await client.post("/webhook", **signed(opened, "pull_request"))
    assert again.status_code == reopened.status_code == late.status_code == 200
    assert {again.json()["status"], reopened.json()["status"], late.json()["status"]} == {
        "duplicate"
    }
    assert len(github.reviews(OWNER, REPO, NUMBER)) == 1
    assert len(github.issue_comments(OWNER, REPO, NUMBER)) == 1


async def test_a_newer_push_cancels_the_running_review_and_only_the_newer_is_posted(
    github: FakeGitHub, settings: Settings
) -> None:
    stall = github.fail("GET", rf"/git/trees/{SHA1}", None, delay_s=60)
    async with running(settings) as (client, queue):
        await client.post(
            "/webhook", **signed(sample("pull_request.opened", sha=SHA1), "pull_request")
        )
        await github.wait_until(lambda _: stall.hits == 1)  # the first review is in flight
        github.push(OWNER, REPO, NUMBER, SHA2, FIXED)
        await client.post(
            "/webhook", **signed(sample("pull_request.synchronize", sha=SHA2), "pull_request")
        )
        with anyio.fail_after(30):
            await queue.wait_idle()
    assert await_jobs(settings) == [("superseded", SHA1), ("posted", SHA2)]
    assert [r.head_sha for r in github.check_runs(OWNER, REPO)] == [SHA2]
    assert len(github.reviews(OWNER, REPO, NUMBER)) == 1
    [summary] = github.issue_comments(OWNER, REPO, NUMBER)
    assert f"Reviewed at commit {SHA2[:7]}" in summary.body


async def test_a_job_interrupted_by_a_restart_completes_after_it(
    github: FakeGitHub, settings: Settings
) -> None:
    stall = github.fail("GET", rf"/git/trees/{SHA1}", None, delay_s=60)
    async with running(settings) as (client, _):
        await client.post(
            "/webhook", **signed(sample("pull_request.opened", sha=SHA1), "pull_request")
        )
        await github.wait_until(lambda _: stall.hits == 1)
    assert await_jobs(settings) == [("queued", SHA1)]
    assert github.issue_comments(OWNER, REPO, NUMBER) == []
    async with running(settings) as (_, queue):
        await queue.wait_idle()
    assert await_jobs(settings) == [("posted", SHA1)]
    assert len(github.issue_comments(OWNER, REPO, NUMBER)) == 1


async def test_a_review_command_from_a_member_reviews_the_current_head_again(
    github: FakeGitHub, settings: Settings
) -> None:
    async with running(settings) as (client, queue):
        await client.post(
            "/webhook", **signed(sample("pull_request.opened", sha=SHA1), "pull_request")
        )
        await queue.wait_idle()
        command = await client.post(
            "/webhook", **signed(sample("issue_comment.created.command_member"), "issue_comment")
        )
        assert command.status_code == 202
        await github.wait_until(lambda _: len(github.check_runs(OWNER, REPO)) == 2)
        await queue.wait_idle()
    assert [state for state, _ in await_jobs(settings)] == ["posted", "posted"]
    assert len(github.issue_comments(OWNER, REPO, NUMBER)) == 1


@pytest.mark.parametrize(
    ("mutate", "status"),
    [
        (lambda r: r["headers"].pop("X-Hub-Signature-256"), 401),
        (lambda r: r["headers"].update({"X-Hub-Signature-256": "sha256=" + "0" * 64}), 401),
        (
            lambda r: r["headers"].update(
                {
                    "X-Hub-Signature": r["headers"]
                    .pop("X-Hub-Signature-256")
                    .replace("sha256", "sha1")
                }
            ),
            401,
        ),
        (lambda r: r["headers"].pop("X-GitHub-Event"), 400),
        (lambda r: r["headers"].update({"X-GitHub-Event": "star"}), 200),
    ],
)
async def test_bad_deliveries_are_refused_without_a_5xx_or_a_review(
    github: FakeGitHub, settings: Settings, mutate: Any, status: int
) -> None:
    request = signed(sample("pull_request.opened", sha=SHA1), "pull_request")
    request = copy.deepcopy(request)
    mutate(request)
    async with running(settings) as (client, queue):
        answer = await client.post("/webhook", **request)
        assert await queue.depth() == 0
    assert answer.status_code == status
    assert github.writes() == []


async def test_malformed_and_oversized_bodies_are_400_and_413(settings: Settings) -> None:
    async with running(settings) as (client, _):
        malformed = await client.post("/webhook", **signed(b"{not json", "pull_request"))
        huge = await client.post(
            "/webhook", **signed(b"x" * (25 * 1024 * 1024 + 1), "pull_request")
        )
    assert (malformed.status_code, huge.status_code) == (400, 413)


def test_serve_refuses_to_start_without_its_secret_or_a_working_app_key(
    github: FakeGitHub,
) -> None:
    base = {"GITHUB_API_URL": github.base_url or ""}
    no_secret = run_cli("serve", env=base)
    assert no_secret.returncode == 2
    assert (
        no_secret.stderr == "pr-council: error: pr-council serve needs PR_COUNCIL_WEBHOOK_SECRET\n"
    )
    no_app = run_cli("serve", env={**base, "PR_COUNCIL_WEBHOOK_SECRET": SECRET})
    assert no_app.returncode == 2 and "PR_COUNCIL_APP_ID" in no_app.stderr
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()

    def serve_with_key(key: str) -> subprocess.CompletedProcess[str]:
        app = {"PR_COUNCIL_APP_ID": str(FAKE_APP_ID), "PR_COUNCIL_PRIVATE_KEY": key}
        return run_cli("serve", env={**base, "PR_COUNCIL_WEBHOOK_SECRET": SECRET, **app})

    wrong = serve_with_key(pem)
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1
    assert "cannot authenticate as the GitHub App: GitHub answered 401" in wrong.stderr
    assert "PRIVATE KEY" not in wrong.stderr
    garbled = pem.replace("\n", "", 3)[:200]
    bad = serve_with_key(garbled)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "is not an unencrypted PEM private key" in bad.stderr
    assert garbled[40:80] not in bad.stderr


async def test_an_older_push_delivered_late_still_ends_with_the_current_head_reviewed(
    github: FakeGitHub, settings: Settings
) -> None:
    github.push(OWNER, REPO, NUMBER, SHA2, FIXED)
    stall = github.fail("GET", rf"/git/trees/{SHA2}", None, delay_s=60)
    newer = sample("pull_request.synchronize", sha=SHA2)
    older = sample("pull_request.opened", sha=SHA1)
    async with running(settings) as (client, queue):
        await client.post("/webhook", **signed(newer, "pull_request"))
        await github.wait_until(lambda _: stall.hits == 1)
        await client.post("/webhook", **signed(older, "pull_request"))  # supersedes the newer
        with anyio.fail_after(30):
            await queue.wait_idle()
    assert await_jobs(settings) == [("superseded", SHA2), ("posted", SHA1)]
    assert [r.head_sha for r in github.check_runs(OWNER, REPO)] == [SHA2]
    [summary] = github.issue_comments(OWNER, REPO, NUMBER)
    assert f"Reviewed at commit {SHA2[:7]}" in summary.body
