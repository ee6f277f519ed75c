"""Scale-out end to end: `pr-council worker` processes on a real PostgreSQL, the fake GitHub.

The fake GitHub serves from this process on loopback; workers are the installed console
script, started as subprocesses. Cross-process conditions are awaited by polling the
database or the fake with a deadline, never by sleeping a fixed time.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from githubkit.cache import MemCacheStrategy
from pydantic import SecretStr

from agents.render import SUMMARY_MARKER
from bot.config import Settings
from bot.jobs import ReviewJob
from bot.serve import ServeOptions, build_app
from tests.e2e.conftest import CLI
from tests.e2e.test_app import INSTALLATION, NUMBER, OWNER, REPO, SECRET, sample, signed
from tests.fakes.github_api import FAKE_APP_ID, FakeGitHub
from tests.test_pgqueue import eventually, opened, pg_database, pg_url, query, states
from tests.test_publish import BASE, HEAD

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
__all__ = ["pg_database", "pg_url"]  # fixtures, shared with tests/test_pgqueue.py

SHA1, SHA2 = "1" * 40, "2" * 40
# Fast polls and heartbeats for tests; no write pacing against the fake.
FAST = ("--poll", "0.2", "--heartbeat", "0.5", "--write-interval", "0")
Spawn = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def env(pg_url: str, fake_github: FakeGitHub, tmp_path: Path) -> dict[str, str]:
    """The environment of a worker process: the test database and the fake GitHub App."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ANTHROPIC_", "GITHUB_", "PR_COUNCIL_"))
    }
    return {
        **base,
        "PR_COUNCIL_DATABASE_URL": pg_url,
        "GITHUB_API_URL": fake_github.base_url or "",
        "PR_COUNCIL_APP_ID": str(FAKE_APP_ID),
        "PR_COUNCIL_PRIVATE_KEY": fake_github.private_key_pem,
        "PR_COUNCIL_STATE_DIR": str(tmp_path / "state"),
    }


@pytest.fixture
def spawn(env: dict[str, str], tmp_path: Path) -> Iterator[Spawn]:
    """Start `pr-council worker` processes; none outlives the test."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        with (tmp_path / f"worker-{len(procs)}.log").open("wb") as log:
            command = [str(CLI), "worker", *FAST, *args]
            proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)


def logs(tmp_path: Path) -> str:
    """Return the workers' logs, for failure messages."""
    return "\n".join(
        f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(tmp_path.glob("worker-*.log"))
    )


def registered(url: str) -> int:
    """Count the workers procrastinate knows."""
    [(count,)] = query(url, "SELECT count(*) FROM procrastinate_workers")
    return int(str(count))


def final(url: str, count: int) -> bool:
    """Tell whether `count` jobs exist and none is waiting or running."""
    found = states(url)
    return len(found) == count and all(s not in ("todo", "doing") for s, _ in found)


def review_job(owner: str, repo: str, number: int, sha: str, installation: int) -> ReviewJob:
    """A job as the receiver queues it for `pull_request.opened`."""
    return ReviewJob(
        owner=owner, repo=repo, number=number, head_sha=sha, installation_id=installation,
        delivery_id=f"{owner}/{repo}#{number}@{sha}",
    )  # fmt: skip


@pytest.fixture
def pull(fake_github: FakeGitHub) -> ReviewJob:
    """The pull request of tests/data/webhooks, at SHA1."""
    fake_github.add_repo(OWNER, REPO, installation_id=INSTALLATION)
    fake_github.add_pull(OWNER, REPO, NUMBER, base_files=BASE, head_files=HEAD, head_sha=SHA1)
    return review_job(OWNER, REPO, NUMBER, SHA1, INSTALLATION)


async def submit(url: str, *jobs: ReviewJob) -> None:
    """Queue jobs as a receiver process would."""
    async with opened(url) as queue:
        for job in jobs:
            assert await queue.submit(job) == "queued"


def assert_posted_once(fake: FakeGitHub, sha: str) -> None:
    """One summary comment, one review and one check run, for `sha`."""
    [summary] = fake.issue_comments(OWNER, REPO, NUMBER)
    assert SUMMARY_MARKER in summary.body and f"Reviewed at commit {sha[:7]}" in summary.body
    assert len(fake.reviews(OWNER, REPO, NUMBER)) == 1
    assert [run.head_sha for run in fake.check_runs(OWNER, REPO)] == [sha]


async def test_two_workers_share_50_reviews_and_do_none_twice(
    spawn: Spawn, pg_url: str, fake_github: FakeGitHub, tmp_path: Path
) -> None:
    jobs = []
    for i in range(50):
        repo, number, installation = f"repo{i % 10}", i // 10 + 1, 5000 + i % 10
        if number == 1:
            fake_github.add_repo("acme", repo, installation_id=installation)
        sha = f"{i + 1:040x}"
        fake_github.add_pull("acme", repo, number, base_files=BASE, head_files=HEAD, head_sha=sha)
        jobs.append(review_job("acme", repo, number, sha, installation))
    workers = [spawn("--concurrency", "2", "--stalled-after", "60") for _ in range(2)]
    await eventually(
        lambda: registered(pg_url) == 2, 60, "two workers registered\n" + logs(tmp_path)
    )
    await submit(pg_url, *jobs)
    await eventually(lambda: final(pg_url, 50), 240, "50 reviews done\n" + logs(tmp_path))
    by_worker = query(
        pg_url, "SELECT worker_id, count(*) FROM procrastinate_jobs GROUP BY worker_id"
    )
    assert len(by_worker) == 2, by_worker  # both processes reviewed some
    assert all(proc.poll() is None for proc in workers)
    assert {s for s, _ in states(pg_url)} == {"succeeded"}
    # procrastinate counts finished runs: one each, so no review ran twice.
    assert query(pg_url, "SELECT min(attempts), max(attempts) FROM procrastinate_jobs") == [(1, 1)]
    for job in jobs:
        comments = fake_github.issue_comments("acme", job.repo, job.number)
        assert len(comments) == 1, job.label
        assert len(fake_github.reviews("acme", job.repo, job.number)) == 1, job.label
    runs = [r.head_sha for i in range(10) for r in fake_github.check_runs("acme", f"repo{i}")]
    assert sorted(runs) == sorted(job.head_sha for job in jobs)


async def test_a_newer_head_aborts_the_review_running_in_another_process(
    spawn: Spawn, pg_url: str, fake_github: FakeGitHub, pull: ReviewJob, tmp_path: Path
) -> None:
    stall = fake_github.fail("GET", rf"/git/trees/{SHA1}", None, delay_s=60)
    workers = [spawn("--concurrency", "1") for _ in range(2)]
    await eventually(lambda: registered(pg_url) == 2, 60, "workers registered\n" + logs(tmp_path))
    await submit(pg_url, pull)
    await eventually(lambda: stall.hits == 1, 30, "the review in flight\n" + logs(tmp_path))
    fake_github.push(OWNER, REPO, NUMBER, SHA2, HEAD)
    await submit(pg_url, pull.model_copy(update={"head_sha": SHA2, "delivery_id": "push"}))
    await eventually(lambda: final(pg_url, 2), 60, "both jobs ended\n" + logs(tmp_path))
    assert states(pg_url) == [("aborted", SHA1), ("succeeded", SHA2)]
    assert_posted_once(fake_github, SHA2)
    assert all(proc.poll() is None for proc in workers)  # an abort ends the job, not the worker


async def test_a_killed_workers_review_is_recovered_and_posted_once(
    spawn: Spawn, pg_url: str, fake_github: FakeGitHub, pull: ReviewJob, tmp_path: Path
) -> None:
    stall = fake_github.fail("GET", rf"/git/trees/{SHA1}", None, delay_s=60)
    first = spawn("--stalled-after", "2")
    await eventually(lambda: registered(pg_url) == 1, 60, "worker registered\n" + logs(tmp_path))
    await submit(pg_url, pull)
    await eventually(lambda: stall.hits == 1, 30, "the review in flight\n" + logs(tmp_path))
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert states(pg_url) == [("doing", SHA1)]  # nobody finished it
    spawn("--stalled-after", "2")
    await eventually(lambda: final(pg_url, 1), 60, "recovered\n" + logs(tmp_path))
    assert states(pg_url) == [("succeeded", SHA1)]
    # Two runs: the one lost with the killed worker, then the one that posted.
    assert query(pg_url, "SELECT attempts FROM procrastinate_jobs") == [(2,)]
    assert_posted_once(fake_github, SHA1)


async def review_in_flight(
    spawn: Spawn, pg_url: str, fake_github: FakeGitHub, pull: ReviewJob, tmp_path: Path,
    stall_s: float, *, grace_s: float,
) -> subprocess.Popen[bytes]:  # fmt: skip
    """Start a worker with a grace period and return once it is reviewing `pull`, stalled."""
    stall = fake_github.fail("GET", rf"/git/trees/{SHA1}", None, delay_s=stall_s)
    worker = spawn("--grace-period", str(grace_s))
    await eventually(lambda: registered(pg_url) == 1, 60, "worker registered\n" + logs(tmp_path))
    await submit(pg_url, pull)
    await eventually(lambda: stall.hits == 1, 30, "the review in flight\n" + logs(tmp_path))
    return worker


async def test_sigterm_puts_a_review_past_its_grace_period_back_for_another_worker(
    spawn: Spawn, pg_url: str, fake_github: FakeGitHub, pull: ReviewJob, tmp_path: Path
) -> None:
    first = await review_in_flight(spawn, pg_url, fake_github, pull, tmp_path, 60, grace_s=1)
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0, logs(tmp_path)
    assert states(pg_url) == [("todo", SHA1)]
    assert query(pg_url, "SELECT attempts FROM procrastinate_jobs") == [(1,)]  # interrupted
    assert registered(pg_url) == 0  # it unregistered itself
    spawn()
    await eventually(lambda: final(pg_url, 1), 60, "reviewed again\n" + logs(tmp_path))
    assert states(pg_url) == [("succeeded", SHA1)]
    assert_posted_once(fake_github, SHA1)


async def test_sigterm_lets_a_running_review_finish_within_the_grace_period(
    spawn: Spawn, pg_url: str, fake_github: FakeGitHub, pull: ReviewJob, tmp_path: Path
) -> None:
    worker = await review_in_flight(spawn, pg_url, fake_github, pull, tmp_path, 2, grace_s=60)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0, logs(tmp_path)
    assert states(pg_url) == [("succeeded", SHA1)]
    assert_posted_once(fake_github, SHA1)


@asynccontextmanager
async def receiver(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Run one `serve` app (enqueue only: PostgreSQL is configured) and talk to it."""
    app: FastAPI = build_app(settings, "pr-council", ServeOptions(cache=MemCacheStrategy()))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://app") as client,
    ):
        yield client


async def test_a_redelivery_to_a_second_receiver_is_a_duplicate_and_reviewed_once(
    spawn: Spawn, env: dict[str, str], pg_url: str, fake_github: FakeGitHub, pull: ReviewJob
) -> None:
    settings = Settings(
        webhook_secret=SecretStr(SECRET),
        app_id=str(FAKE_APP_ID),
        private_key=SecretStr(fake_github.private_key_pem),
        github_api_url=fake_github.base_url or "",
        database_url=pg_url,
    )
    opened_event = sample("pull_request.opened", sha=SHA1)
    async with receiver(settings) as first, receiver(settings) as second:
        queued = await first.post("/webhook", **signed(opened_event, "pull_request", "delivery-1"))
        again = await second.post("/webhook", **signed(opened_event, "pull_request", "delivery-1"))
        reopened = sample("pull_request.reopened", sha=SHA1)
        other = await second.post("/webhook", **signed(reopened, "pull_request", "delivery-2"))
        health = (await second.get("/healthz")).json()
    assert queued.status_code == 202, queued.text
    assert (again.status_code, again.json()["reason"]) == (200, "duplicate_delivery")
    assert (other.status_code, other.json()["reason"]) == (200, "duplicate_job")
    assert health == {"status": "ok", "queue_depth": 1}
    assert fake_github.writes() == []  # the receivers only enqueue
    spawn()
    await eventually(lambda: final(pg_url, 1), 60, "reviewed")
    assert_posted_once(fake_github, SHA1)
