"""The PostgreSQL (procrastinate) ReviewQueue and shared state, against a real PostgreSQL.

Each test run creates its own database (pr_council_<random>) from
PR_COUNCIL_TEST_DATABASE_URL, migrates it once and drops it at the end; every test starts
from empty tables. Without the variable the database tests skip with the reason.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import psycopg
import pytest
from githubkit.cache import MemCacheStrategy
from githubkit.exception import CacheUnsupportedError
from procrastinate.exceptions import JobAborted
from procrastinate.jobs import Job
from psycopg import sql
from pydantic import SecretStr

from agents.render import SUMMARY_MARKER
from bot.config import ConfigError, Settings
from bot.github.client import Pacer
from bot.jobs import JobState, PermanentFailure, RetryLater, ReviewJob, Superseded
from bot.pgqueue import QUEUE, TASK, ProcrastinateQueue, ReviewRetry, WorkerOptions
from bot.pgstate import Database, PgCacheStrategy, PgPacer, migrate
from bot.serve import ServeOptions, build_worker
from tests.e2e.conftest import CLI, assert_one_line_error, run_cli
from tests.fakes.github_api import FAKE_APP_ID, FakeGitHub
from tests.test_publish import BASE, HEAD

pytestmark = pytest.mark.anyio

TEST_URL = os.environ.get("PR_COUNCIL_TEST_DATABASE_URL")
SKIP_REASON = (
    "needs PostgreSQL: set PR_COUNCIL_TEST_DATABASE_URL=postgresql://USER@HOST:PORT/DB "
    "(.ci/run sets it when pg_isready answers on 127.0.0.1:5432)"
)
OWNER, REPO, NUMBER, INSTALLATION = "acme", "shop", 2, 4242
SHA1, SHA2, SHA3 = "1" * 40, "2" * 40, "3" * 40
FAST = WorkerOptions(concurrency=2, poll_s=0.2, grace_s=5.0, heartbeat_s=0.5, stalled_s=2.0)
_TABLES = (
    "procrastinate_jobs, procrastinate_events, procrastinate_workers, "
    "procrastinate_periodic_defers, pr_council_deliveries, pr_council_cache, pr_council_pacing"
)

# --------------------------------------------------------------------------- fixtures


@contextmanager
def fresh_database() -> Iterator[str]:
    """Create an empty database next to the test one; drop it afterwards."""
    if not TEST_URL:
        pytest.skip(SKIP_REASON)
    name = f"pr_council_{secrets.token_hex(6)}"
    with psycopg.connect(TEST_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlsplit(TEST_URL)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(TEST_URL, autocommit=True) as admin:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            admin.execute(drop.format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    """This run's database, migrated once."""
    with fresh_database() as url:
        anyio.run(migrate, url)
        yield url


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """The run's database with empty tables."""
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {_TABLES} RESTART IDENTITY CASCADE")
    return pg_database


def query(url: str, statement: str, *params: object) -> list[tuple[object, ...]]:
    """Run one statement on its own connection; return its rows."""
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(statement, params or None)
        return cursor.fetchall() if cursor.description else []


def states(url: str) -> list[tuple[str, str]]:
    """Return (status, head SHA) of every review job, oldest first."""
    rows = query(
        url, "SELECT status::text, args->'job'->>'head_sha' FROM procrastinate_jobs ORDER BY id"
    )
    return [(str(status), str(sha)) for status, sha in rows]


async def eventually(check: Callable[[], bool], timeout_s: float = 30.0, what: str = "") -> None:
    """Poll a cross-process condition until it holds, failing after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        await anyio.sleep(0.05)
    raise AssertionError(f"not met within {timeout_s:.0f} s: {what}")


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[ProcrastinateQueue]:
    """Open a queue on its own pool (as another process would)."""
    async with ProcrastinateQueue(Database(url)).opened() as queue:
        yield queue


def job(sha: str = SHA1, delivery: str | None = None, **extra: object) -> ReviewJob:
    """A review job of the test PR."""
    return ReviewJob.model_validate(
        {"owner": OWNER, "repo": REPO, "number": NUMBER, "head_sha": sha,
         "installation_id": INSTALLATION, "delivery_id": delivery, **extra}
    )  # fmt: skip


# --------------------------------------------------------------------------- retry strategy


def proc_job(attempts: int = 0) -> Job:
    """A procrastinate job as the retry strategy sees it."""
    return Job(id=1, queue=QUEUE, lock=None, queueing_lock=None, task_name=TASK, attempts=attempts)


def retry_in(exc: BaseException, attempts: int = 0) -> float | None:
    """Return the strategy's delay in seconds, or None for no retry."""
    decision = ReviewRetry().get_retry_decision(exception=exc, job=proc_job(attempts))
    if decision is None or decision.retry_at is None:
        return None
    return (decision.retry_at - datetime.now(UTC)).total_seconds()


def test_retry_later_waits_its_delay_and_errors_back_off_within_bounds() -> None:
    assert 41 < (retry_in(RetryLater("rate limited", 42.0)) or 0) <= 42
    assert 0.9 < (retry_in(ValueError("boom")) or 0) <= 2.0  # base 2 s: half fixed, half jitter
    assert 3.9 < (retry_in(OSError("reset"), attempts=2) or 0) <= 8.0


def test_final_outcomes_and_the_last_attempt_are_not_retried() -> None:
    for exc in (PermanentFailure("no access"), Superseded("moved"), JobAborted("newer head")):
        assert retry_in(exc) is None
    assert retry_in(RetryLater("again", 1.0), attempts=4) is None  # the 5th failed run
    assert retry_in(KeyboardInterrupt()) is None  # not an Exception: never retried


def test_a_shutdown_cancellation_is_put_back_at_once_whatever_the_attempts() -> None:
    assert abs(retry_in(asyncio.CancelledError(), attempts=9) or 0) < 1


# --------------------------------------------------------------------------- commands


def test_worker_and_db_migrate_need_a_postgresql_url() -> None:
    assert_one_line_error(run_cli("worker"), "PR_COUNCIL_DATABASE_URL=postgresql://")
    sqlite = {"PR_COUNCIL_DATABASE_URL": "sqlite:///tmp/x"}
    assert_one_line_error(run_cli("worker", env=sqlite), "PR_COUNCIL_DATABASE_URL")
    assert_one_line_error(run_cli("db", "migrate"), "PR_COUNCIL_DATABASE_URL=postgresql://")
    usage = run_cli("worker", "--concurrency", "0")  # argparse's usage error, as elsewhere
    assert usage.returncode == 2 and "--concurrency: must be positive, got 0" in usage.stderr


def test_db_migrate_applies_the_schema_once_and_is_safe_to_run_again() -> None:
    with fresh_database() as url:
        env = {"PR_COUNCIL_DATABASE_URL": url}
        first, again = run_cli("db", "migrate", env=env), run_cli("db", "migrate", env=env)
        assert (first.returncode, first.stdout) == (0, "pr-council: schema applied\n")
        assert (again.returncode, again.stdout) == (
            0,
            "pr-council: schema already applied; up to date\n",
        )
        tables = query(url, "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'pr_council_%'")
        assert tables == [(3,)]


def test_concurrent_migrations_apply_the_schema_exactly_once() -> None:
    with fresh_database() as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PR_COUNCIL_")}
        env["PR_COUNCIL_DATABASE_URL"] = url
        procs = [
            subprocess.Popen(
                [str(CLI), "db", "migrate"], env=env, stdout=subprocess.PIPE, text=True
            )
            for _ in range(3)
        ]
        outputs = sorted(p.communicate(timeout=60)[0] for p in procs)
        assert [p.returncode for p in procs] == [0, 0, 0]
        assert outputs.count("pr-council: schema applied\n") == 1


def test_a_worker_refuses_an_unmigrated_database() -> None:
    with fresh_database() as url:
        result = run_cli("worker", env={"PR_COUNCIL_DATABASE_URL": url})
        assert_one_line_error(result, "run `pr-council db migrate`")

        async def open_it() -> None:
            async with opened(url):
                pass

        with pytest.raises(ConfigError, match="pr-council db migrate"):
            anyio.run(open_it)


# --------------------------------------------------------------------------- submit


async def test_a_delivery_or_a_head_is_queued_once(pg_url: str) -> None:
    async with opened(pg_url) as queue:
        assert await queue.submit(job(delivery="d1")) == "queued"
        assert await queue.submit(job(delivery="d1")) == "duplicate_delivery"
        assert await queue.submit(job(delivery="d2", trigger="reopened")) == "duplicate_job"
        assert await queue.submit(job(delivery="d3", trigger="command")) == "duplicate_job"
        assert await queue.depth() == 1
        [record] = await queue.jobs()
    assert (record.state, record.job.delivery_id, record.attempts) == ("queued", "d1", 0)
    [(lock, qlock)] = query(pg_url, "SELECT lock, queueing_lock FROM procrastinate_jobs")
    assert (lock, qlock) == ("acme/shop#2", f"acme/shop#2@{SHA1}")


async def test_a_newer_head_supersedes_the_waiting_job(pg_url: str) -> None:
    async with opened(pg_url) as queue:
        assert await queue.submit(job(SHA1, "d1")) == "queued"
        assert await queue.submit(job(SHA2, "d2")) == "queued"
        assert await queue.depth() == 1
        assert [(r.state, r.job.head_sha) for r in await queue.jobs()] == [
            ("superseded", SHA1),
            ("queued", SHA2),
        ]
        # A superseded head stays passed over, as in the embedded queue.
        assert await queue.submit(job(SHA1, "d3")) == "duplicate_job"
    assert states(pg_url) == [("cancelled", SHA1), ("todo", SHA2)]


async def test_a_posted_head_is_reviewed_again_only_on_a_command(pg_url: str) -> None:
    async with opened(pg_url) as queue:
        await queue.submit(job(SHA1, "d1"))
        query(pg_url, "UPDATE procrastinate_jobs SET status = 'succeeded'")
        assert await queue.submit(job(SHA1, "d2", trigger="synchronize")) == "duplicate_job"
        assert await queue.submit(job(SHA1, "d3", trigger="command")) == "queued"
        query(pg_url, "UPDATE procrastinate_jobs SET status = 'failed' WHERE id = 2")
        assert await queue.submit(job(SHA1, "d4")) == "duplicate_job"  # job 1 was posted
    async with opened(pg_url) as queue:
        query(pg_url, "UPDATE procrastinate_jobs SET status = 'failed'")
        assert await queue.submit(job(SHA1, "d5")) == "queued"  # a failed head may be retried
        states_seen: list[JobState] = [r.state for r in await queue.jobs()]
    assert states_seen == ["failed", "failed", "queued"]


async def test_a_newer_head_aborts_the_running_job(pg_url: str) -> None:
    async with opened(pg_url) as queue:
        await queue.submit(job(SHA1, "d1"))
        manager = queue.app.job_manager
        running = await manager.fetch_job(queues=[QUEUE], worker_id=await manager.register_worker())
        assert running is not None and running.status == "doing"
        await queue.submit(job(SHA2, "d2"))
        assert await queue.depth() == 2  # the running one ends when its worker has stopped it
    assert query(
        pg_url, "SELECT status::text, abort_requested FROM procrastinate_jobs ORDER BY id"
    ) == [
        ("doing", True),
        ("todo", False),
    ]


async def test_concurrent_pushes_from_two_receivers_leave_one_live_job(pg_url: str) -> None:
    shas = [f"{i:040x}" for i in range(1, 13)]
    async with opened(pg_url) as first, opened(pg_url) as second:
        async with anyio.create_task_group() as group:
            for i, sha in enumerate(shas):
                group.start_soon((first if i % 2 else second).submit, job(sha, f"d{i}"))
        assert await first.depth() == 1
    statuses = [status for status, _ in states(pg_url)]
    assert sorted(statuses) == ["cancelled"] * 11 + ["todo"]


# --------------------------------------------------------------------------- shared state


async def test_two_processes_share_installation_tokens(
    pg_url: str, fake_github: FakeGitHub
) -> None:
    fake_github.add_repo(OWNER, REPO, installation_id=INSTALLATION)
    fake_github.add_pull(OWNER, REPO, NUMBER, base_files=BASE, head_files=HEAD, head_sha=SHA1)
    async with opened(pg_url) as one, opened(pg_url) as two:
        for queue in (one, two):
            cache = PgCacheStrategy(queue.database)
            async with fake_github.installation_client(INSTALLATION, cache_strategy=cache) as gh:
                await gh.rest.pulls.async_get(OWNER, REPO, NUMBER)
        with pytest.raises(CacheUnsupportedError):
            PgCacheStrategy(one.database).get_cache_storage()
    assert len(fake_github.requests_to("POST", r"/access_tokens$")) == 1
    [(count,)] = query(pg_url, "SELECT count(*) FROM pr_council_cache")
    assert count == 2  # the installation token and the App's JWT


async def test_an_expired_shared_token_is_not_served(pg_url: str) -> None:
    async with opened(pg_url) as one, opened(pg_url) as two:
        writer = PgCacheStrategy(one.database).get_async_cache_storage()
        reader = PgCacheStrategy(two.database).get_async_cache_storage()
        await writer.aset("live", "t1", timedelta(minutes=5))
        await writer.aset("gone", "t2", timedelta(seconds=-1))
        assert (await reader.aget("live"), await reader.aget("gone")) == ("t1", None)


async def test_paced_writes_are_spaced_across_processes(pg_url: str) -> None:
    spans: list[tuple[float, float]] = []

    async def request() -> None:
        start = time.monotonic()
        await anyio.sleep(0.05)
        spans.append((start, time.monotonic()))

    async with opened(pg_url) as one, opened(pg_url) as two:
        pacers = [PgPacer(interval_s=0.3, database=q.database) for q in (one, two)]
        async with anyio.create_task_group() as group:
            for i in range(6):
                group.start_soon(pacers[i % 2].write, "4242", request)
        start = time.monotonic()
        await pacers[0].write("other installation", request)  # not held up by key 4242
        assert time.monotonic() - start < 0.25
    spans = sorted(spans)[:6]
    gaps = [nxt[0] - prev[1] for prev, nxt in itertools.pairwise(spans)]
    assert min(gaps) >= 0.29, gaps


# --------------------------------------------------------------------------- recovery


async def test_jobs_of_a_dead_worker_are_put_back_and_aborted_ones_ended(pg_url: str) -> None:
    async with opened(pg_url) as queue:
        manager = queue.app.job_manager
        await queue.submit(job(SHA1, "d1"))
        await queue.submit(job(SHA3, "d3", number=3))
        dead = await manager.register_worker()
        live = await manager.register_worker()
        for worker_id in (dead, live):
            assert await manager.fetch_job(queues=[QUEUE], worker_id=worker_id) is not None
        query(
            pg_url,
            "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 hour' WHERE id = %s",
            dead,
        )
        assert await queue.recover_stalled(30) == 1
        assert await queue.recover_stalled(30) == 0
        assert [(r.state, r.attempts) for r in await queue.jobs()] == [
            ("queued", 1),
            ("running", 0),
        ]
        await queue.submit(job(SHA2, "d2"))  # job 1 is todo: cancelled
        query(pg_url, "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 hour'")
        await queue.submit(job("4" * 40, "d4", number=3))  # job 2 is doing: abort requested
        assert await queue.recover_stalled(30) == 1
    assert states(pg_url) == [
        ("cancelled", SHA1),
        ("aborted", SHA3),
        ("todo", SHA2),
        ("todo", "4" * 40),
    ]


# --------------------------------------------------------------------------- a worker in-process


@pytest.fixture
def settings(pg_url: str, fake_github: FakeGitHub, tmp_path: Path) -> Settings:
    fake_github.add_repo(OWNER, REPO, installation_id=INSTALLATION)
    fake_github.add_pull(OWNER, REPO, NUMBER, base_files=BASE, head_files=HEAD, head_sha=SHA1)
    return Settings(
        app_id=str(FAKE_APP_ID),
        private_key=SecretStr(fake_github.private_key_pem),
        github_api_url=fake_github.base_url or "",
        database_url=pg_url,
        state_dir=tmp_path / "state",
    )


@asynccontextmanager
async def worker(settings: Settings) -> AsyncIterator[ProcrastinateQueue]:
    """Run a worker in this process with an in-memory cache and no write pacing."""
    options = ServeOptions(cache=MemCacheStrategy(), pacer=Pacer(interval_s=0.0))
    queue, handler = build_worker(settings, FAST, options)
    async with queue.opened(), queue.running(handler, FAST):
        yield queue


async def settled(queue: ProcrastinateQueue, count: int) -> list[tuple[JobState, str]]:
    """Wait until `count` jobs are final; return their states and heads."""

    async def done() -> bool:
        records = await queue.jobs()
        return len(records) == count and all(r.state not in ("queued", "running") for r in records)

    await until(done)
    return [(r.state, r.job.head_sha) for r in await queue.jobs()]


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float = 30.0) -> None:
    """Poll an async condition until it holds, failing after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return
        await anyio.sleep(0.05)
    raise AssertionError(f"not met within {timeout_s:.0f} s")


async def test_a_worker_reviews_and_publishes_a_job(
    settings: Settings, fake_github: FakeGitHub
) -> None:
    async with worker(settings) as queue:
        assert await queue.submit(job(SHA1, "d1")) == "queued"
        assert await settled(queue, 1) == [("posted", SHA1)]
    [summary] = fake_github.issue_comments(OWNER, REPO, NUMBER)
    assert SUMMARY_MARKER in summary.body and summary.author.login == "pr-council[bot]"
    assert [run.head_sha for run in fake_github.check_runs(OWNER, REPO)] == [SHA1]
    assert len(fake_github.reviews(OWNER, REPO, NUMBER)) == 1


async def test_a_rate_limited_publish_goes_back_to_the_queue_for_its_delay(
    settings: Settings, fake_github: FakeGitHub
) -> None:
    # Over githubkit's in-place wait (10 s): the job is retried through the queue.
    limit = fake_github.secondary_rate_limit("POST", r"/pulls/2/reviews$", retry_after=120)
    url = settings.database_url or ""
    wait = "SELECT extract(epoch FROM scheduled_at - now()) FROM procrastinate_jobs"
    async with worker(settings) as queue:
        await queue.submit(job(SHA1, "d1"))
        await eventually(lambda: states(url) == [("todo", SHA1)] and limit.hits == 1)
        [(delay,)] = query(url, wait)
        assert 110 < float(str(delay)) <= 120
        query(url, "UPDATE procrastinate_jobs SET scheduled_at = now()")  # skip the wait
        assert await settled(queue, 1) == [("posted", SHA1)]
        [record] = await queue.jobs()
    assert record.attempts == 1  # one failed run, then the one that posted
    assert len(fake_github.reviews(OWNER, REPO, NUMBER)) == 1
    assert len(fake_github.issue_comments(OWNER, REPO, NUMBER)) == 1


async def test_a_newer_head_cancels_the_review_in_flight(
    settings: Settings, fake_github: FakeGitHub
) -> None:
    stall = fake_github.fail("GET", rf"/git/trees/{SHA1}", None, delay_s=60)
    async with worker(settings) as queue:
        await queue.submit(job(SHA1, "d1"))
        await fake_github.wait_until(lambda _: stall.hits == 1)
        fake_github.push(OWNER, REPO, NUMBER, SHA2, HEAD)
        await queue.submit(job(SHA2, "d2", trigger="synchronize"))
        assert await settled(queue, 2) == [("superseded", SHA1), ("posted", SHA2)]
    assert states(settings.database_url or "") == [("aborted", SHA1), ("succeeded", SHA2)]
    assert [run.head_sha for run in fake_github.check_runs(OWNER, REPO)] == [SHA2]


async def test_a_job_whose_head_moved_reviews_the_current_head(
    settings: Settings, fake_github: FakeGitHub
) -> None:
    # Deliveries can arrive out of order: the job reviews what the pull request is now.
    fake_github.push(OWNER, REPO, NUMBER, SHA2, HEAD)
    async with worker(settings) as queue:
        await queue.submit(job(SHA1, "d1"))
        assert await settled(queue, 1) == [("posted", SHA1)]
    assert [r.head_sha for r in fake_github.check_runs(OWNER, REPO)] == [SHA2]
