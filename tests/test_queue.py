"""The embedded review queue: de-duplication, supersession, workers, retries and restarts."""

from __future__ import annotations

import itertools
import logging
import sqlite3
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.jobs import JobRecord, PermanentFailure, RetryLater, ReviewJob, Superseded
from bot.journal import Claim, Journal
from bot.queue import EmbeddedQueue, QueueOptions

pytestmark = pytest.mark.anyio

GUARD_S = 10


def job(number: int = 1, sha: int = 1, delivery: str | None = None) -> ReviewJob:
    """Build a job for PR `number` at a head SHA derived from `sha`."""
    return ReviewJob(
        owner="Acme", repo="app", number=number, head_sha=f"{sha:040x}", delivery_id=delivery
    )


class FakeClock:
    """A clock that only moves when the queue sleeps: retries happen without waiting."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.now += delay
        await anyio.lowlevel.checkpoint()


class Recorder:
    """A handler that succeeds and remembers what it reviewed."""

    def __init__(self) -> None:
        self.calls: list[ReviewJob] = []

    async def __call__(self, job: ReviewJob) -> None:
        self.calls.append(job)
        await anyio.lowlevel.checkpoint()


class Gate:
    """A handler that blocks each job until released, and tells when a job has started."""

    def __init__(self) -> None:
        self.started: dict[str, anyio.Event] = {}
        self.release: dict[str, anyio.Event] = {}
        self.cancelled: set[str] = set()
        self.posted: list[str] = []

    def _event(self, table: dict[str, anyio.Event], job: ReviewJob) -> anyio.Event:
        return table.setdefault(job.head_sha, anyio.Event())

    async def wait_started(self, job: ReviewJob) -> None:
        await self._event(self.started, job).wait()

    def open(self, job: ReviewJob) -> None:
        self._event(self.release, job).set()

    async def __call__(self, job: ReviewJob) -> None:
        self._event(self.started, job).set()
        try:
            await self._event(self.release, job).wait()
        except anyio.get_cancelled_exc_class():
            self.cancelled.add(job.head_sha)
            raise
        self.posted.append(job.head_sha)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "queue.sqlite3"


@pytest.fixture
async def queue(path: Path) -> AsyncIterator[EmbeddedQueue]:
    async with EmbeddedQueue.open(path) as opened:
        yield opened


async def only(queue: EmbeddedQueue) -> JobRecord:
    """Return the queue's single job."""
    (record,) = await queue.jobs()
    return record


async def states(queue: EmbeddedQueue) -> dict[str, str]:
    """Map each job's head SHA to its state."""
    return {r.job.head_sha: r.state for r in await queue.jobs()}


async def test_submit_deduplicates_deliveries_and_jobs(queue: EmbeddedQueue) -> None:
    assert await queue.submit(job(delivery="d1")) == "queued"
    assert await queue.submit(job(delivery="d1")) == "duplicate_delivery"
    assert await queue.submit(job(delivery="d2")) == "duplicate_job"
    # The duplicate job's delivery was recorded too.
    assert await queue.submit(job(sha=2, delivery="d2")) == "duplicate_delivery"
    assert await queue.submit(job()) == "duplicate_job"
    assert await queue.submit(job(number=2)) == "queued"
    assert await queue.depth() == 2


async def test_pr_key_ignores_case(queue: EmbeddedQueue) -> None:
    assert await queue.submit(job()) == "queued"
    lower = job().model_copy(update={"owner": "acme", "repo": "APP"})
    assert await queue.submit(lower) == "duplicate_job"


async def test_a_job_runs_and_is_posted(queue: EmbeddedQueue) -> None:
    handler = Recorder()
    await queue.submit(job(delivery="d1"))
    with anyio.fail_after(GUARD_S):
        async with queue.running(handler):
            await queue.wait_idle()
    record = await only(queue)
    assert (record.state, record.attempts, record.error) == ("posted", 0, None)
    assert await queue.get(record.id) == record
    assert await queue.get(record.id + 1) is None
    assert handler.calls == [job(delivery="d1")]
    assert await queue.depth() == 0


async def test_jobs_run_in_fifo_order(queue: EmbeddedQueue) -> None:
    handler = Recorder()
    for number in (3, 1, 2):
        await queue.submit(job(number=number))
    with anyio.fail_after(GUARD_S):
        async with queue.running(handler, workers=1):
            await queue.wait_idle()
    assert [j.number for j in handler.calls] == [3, 1, 2]
    assert [r.state for r in await queue.jobs("posted")] == ["posted"] * 3


async def test_a_submitted_job_starts_while_workers_wait(queue: EmbeddedQueue) -> None:
    gate = Gate()
    with anyio.fail_after(GUARD_S):
        async with queue.running(gate):
            await queue.submit(job())
            await gate.wait_started(job())
            gate.open(job())
            await queue.wait_idle()
    assert gate.posted == [job().head_sha]


async def test_two_prs_run_concurrently(queue: EmbeddedQueue) -> None:
    gate = Gate()
    first, second = job(number=1, sha=1), job(number=2, sha=2)
    with anyio.fail_after(GUARD_S):
        async with queue.running(gate, workers=2):
            await queue.submit(first)
            await queue.submit(second)
            # Both started while neither was released: they run at the same time.
            await gate.wait_started(first)
            await gate.wait_started(second)
            assert await queue.depth() == 2
            assert len(await queue.jobs("running")) == 2
            gate.open(first)
            gate.open(second)
            await queue.wait_idle()
    assert sorted(gate.posted) == sorted([first.head_sha, second.head_sha])


async def test_one_pr_never_runs_two_reviews_at_once(queue: EmbeddedQueue) -> None:
    old, new, other = job(sha=1), job(sha=2), job(number=2, sha=3)
    started, unwinding, release, other_done = (anyio.Event() for _ in range(4))
    handled: list[ReviewJob] = []

    async def handler(job: ReviewJob) -> None:
        if job == old:
            started.set()
            try:
                await anyio.Event().wait()
            finally:
                # A slow cleanup after the cancellation: the PR is still busy meanwhile.
                with anyio.CancelScope(shield=True):
                    unwinding.set()
                    await release.wait()
        handled.append(job)
        if job == other:
            other_done.set()

    with anyio.fail_after(GUARD_S):
        async with queue.running(handler, workers=2):
            await queue.submit(old)
            await started.wait()
            await queue.submit(new)
            await unwinding.wait()
            # The free worker takes jobs in FIFO order: it would take `new` before `other`
            # unless the PR were busy.
            await queue.submit(other)
            await other_done.wait()
            assert handled == [other]
            release.set()
            await queue.wait_idle()
    assert handled == [other, new]
    assert await states(queue) == {
        old.head_sha: "superseded",
        new.head_sha: "posted",
        other.head_sha: "posted",
    }


async def test_a_newer_head_sha_supersedes_a_queued_job(queue: EmbeddedQueue) -> None:
    handler = Recorder()
    assert await queue.submit(job(sha=1)) == "queued"
    assert await queue.submit(job(sha=2)) == "queued"
    assert await queue.depth() == 1
    with anyio.fail_after(GUARD_S):
        async with queue.running(handler):
            await queue.wait_idle()
    assert handler.calls == [job(sha=2)]
    assert await states(queue) == {job(sha=1).head_sha: "superseded", job(sha=2).head_sha: "posted"}


async def test_a_newer_head_sha_cancels_a_running_job(queue: EmbeddedQueue) -> None:
    gate = Gate()
    old, new = job(sha=1), job(sha=2)
    gate.open(new)
    with anyio.fail_after(GUARD_S):
        async with queue.running(gate):
            await queue.submit(old)
            await gate.wait_started(old)
            assert await queue.submit(new) == "queued"
            await queue.wait_idle()
    assert gate.cancelled == {old.head_sha}
    assert gate.posted == [new.head_sha]
    assert await states(queue) == {old.head_sha: "superseded", new.head_sha: "posted"}


async def test_superseded_raised_by_the_handler(queue: EmbeddedQueue) -> None:
    async def handler(job: ReviewJob) -> None:
        raise Superseded("the PR moved on")

    await queue.submit(job())
    with anyio.fail_after(GUARD_S):
        async with queue.running(handler):
            await queue.wait_idle()
    assert (await only(queue)).state == "superseded"


async def test_retry_later_then_success(path: Path) -> None:
    clock = FakeClock()
    seen: list[tuple[float, JobRecord | None]] = []

    async with EmbeddedQueue.open(path, QueueOptions(clock=clock, sleep=clock.sleep)) as queue:

        async def handler(job: ReviewJob) -> None:
            seen.append((clock.now, await queue.get(1)))
            if len(seen) == 1:
                raise RetryLater("secondary rate limit", 30)

        await queue.submit(job())
        with anyio.fail_after(GUARD_S):
            async with queue.running(handler):
                await queue.wait_idle()
        record = await only(queue)

    (first, _), (second, during_retry) = seen
    assert second - first >= 30
    assert during_retry is not None
    assert (during_retry.state, during_retry.attempts) == ("running", 1)
    assert during_retry.error == "secondary rate limit"
    assert (record.state, record.attempts, record.error) == ("posted", 1, None)


async def test_retry_later_gives_up_after_max_attempts(path: Path) -> None:
    clock = FakeClock()
    options = QueueOptions(max_attempts=2, clock=clock, sleep=clock.sleep)
    calls = Counter[str]()

    async def handler(job: ReviewJob) -> None:
        calls[job.head_sha] += 1
        raise RetryLater("still limited", 0)

    async with EmbeddedQueue.open(path, options) as queue:
        await queue.submit(job())
        with anyio.fail_after(GUARD_S):
            async with queue.running(handler):
                await queue.wait_idle()
        record = await only(queue)
    assert (record.state, record.attempts, record.error) == ("failed", 2, "still limited")
    assert calls[job().head_sha] == 2


async def test_permanent_failure_is_kept(queue: EmbeddedQueue) -> None:
    calls: list[ReviewJob] = []

    async def handler(job: ReviewJob) -> None:
        calls.append(job)
        raise PermanentFailure("no access to acme/app")

    await queue.submit(job())
    with anyio.fail_after(GUARD_S):
        async with queue.running(handler):
            await queue.wait_idle()
    record = await only(queue)
    assert (record.state, record.error) == ("failed", "no access to acme/app")
    assert len(calls) == 1
    # A failed job does not block a new attempt at the same head SHA.
    assert await queue.submit(job()) == "queued"


async def test_unexpected_errors_are_retried_then_fail(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    # One worker: the fake clock moves by every sleeper's delay, so two idle workers waiting
    # for the same retry would move it twice.
    options = QueueOptions(workers=1, max_attempts=3, clock=clock, sleep=clock.sleep)
    times: list[float] = []

    async def handler(job: ReviewJob) -> None:
        times.append(clock.now)
        raise ValueError("boom")

    caplog.set_level(logging.WARNING, logger="pr_council.queue")
    async with EmbeddedQueue.open(path, options) as queue:
        await queue.submit(job())
        with anyio.fail_after(GUARD_S):
            async with queue.running(handler):
                await queue.wait_idle()
        record = await only(queue)
    assert (record.state, record.attempts, record.error) == ("failed", 3, "ValueError: boom")
    # Exponential backoff with jitter: 1-2 s, then 2-4 s.
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert 1 <= gaps[0] <= 2 and 2 <= gaps[1] <= 4
    assert any("Acme/app#1@0000000" in r.getMessage() for r in caplog.records)


async def test_shutdown_leaves_jobs_queued_and_a_restart_resumes_them(path: Path) -> None:
    gate = Gate()
    jobs = [job(number=n, sha=n, delivery=f"d{n}") for n in (1, 2, 3)]
    async with EmbeddedQueue.open(path) as queue:
        for item in jobs:
            await queue.submit(item)
        with anyio.fail_after(GUARD_S):
            async with queue.running(gate, workers=1):
                await gate.wait_started(jobs[0])
        assert gate.cancelled == {jobs[0].head_sha}
        assert [r.state for r in await queue.jobs()] == ["queued"] * 3
        assert (await queue.jobs())[0].attempts == 0

    handler = Recorder()
    async with EmbeddedQueue.open(path) as queue:
        assert await queue.depth() == 3
        with anyio.fail_after(GUARD_S):
            async with queue.running(handler):
                await queue.wait_idle()
        assert [r.state for r in await queue.jobs()] == ["posted"] * 3
        assert await queue.submit(jobs[0]) == "duplicate_delivery"
    assert sorted(j.number for j in handler.calls) == [1, 2, 3]


async def test_a_job_left_running_by_a_crash_runs_again(path: Path) -> None:
    async with EmbeddedQueue.open(path) as queue:
        await queue.submit(job())
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE jobs SET state = 'running', busy = 1, attempts = 2")

    handler = Recorder()
    async with EmbeddedQueue.open(path) as queue:
        record = await only(queue)
        assert (record.state, record.attempts) == ("queued", 2)
        with anyio.fail_after(GUARD_S):
            async with queue.running(handler):
                await queue.wait_idle()
        record = await only(queue)
    assert (record.state, record.attempts) == ("posted", 2)
    assert handler.calls == [job()]


async def test_depth_counts_queued_and_running(queue: EmbeddedQueue) -> None:
    gate = Gate()
    assert await queue.depth() == 0
    await queue.submit(job(number=1))
    await queue.submit(job(number=2, sha=2))
    assert await queue.depth() == 2
    with anyio.fail_after(GUARD_S):
        async with queue.running(gate, workers=1):
            await gate.wait_started(job(number=1))
            assert await queue.depth() == 2
            gate.open(job(number=1))
            gate.open(job(number=2, sha=2))
            await queue.wait_idle()
            assert await queue.depth() == 0


async def test_wait_idle_waits_for_the_running_job(queue: EmbeddedQueue) -> None:
    gate = Gate()
    with anyio.fail_after(GUARD_S):
        await queue.wait_idle()  # nothing to wait for
        async with queue.running(gate):
            await queue.submit(job())
            await gate.wait_started(job())
            async with anyio.create_task_group() as group:
                group.start_soon(queue.wait_idle)
                gate.open(job())
            assert (await only(queue)).state == "posted"


async def test_a_closed_queue_refuses_work(path: Path) -> None:
    async with EmbeddedQueue.open(path) as queue:
        await queue.close()  # closing twice is harmless
    with pytest.raises(RuntimeError, match="closed"):
        await queue.submit(job())
    with pytest.raises(RuntimeError, match="closed"):
        await queue.depth()


async def test_a_burst_of_concurrent_submits_each_gets_its_answer(queue: EmbeddedQueue) -> None:
    results: list[str] = []

    async def submit(number: int) -> None:
        results.append(await queue.submit(job(number=number % 10 + 1, sha=number)))

    with anyio.fail_after(GUARD_S):
        async with anyio.create_task_group() as group:
            for number in range(200):
                group.start_soon(submit, number)
    assert results == ["queued"] * 200
    assert await queue.depth() == 10
    assert len(await queue.jobs("superseded")) == 190


Op = tuple[int, int, str | None]
OPS = st.lists(
    st.tuples(
        st.integers(1, 3), st.integers(1, 4), st.none() | st.integers(1, 6).map(lambda n: f"d{n}")
    ),
    min_size=1,
    max_size=15,
)


def expected_outcomes(ops: list[Op]) -> tuple[list[str], dict[int, int]]:
    """Model the queue: each submit's answer, and each PR's last newly queued head SHA."""
    deliveries: set[str] = set()
    live: set[tuple[int, int]] = set()
    outcomes: list[str] = []
    last: dict[int, int] = {}
    for number, sha, delivery in ops:
        if delivery is not None and delivery in deliveries:
            outcomes.append("duplicate_delivery")
            continue
        if delivery is not None:
            deliveries.add(delivery)
        if (number, sha) in live:
            outcomes.append("duplicate_job")
            continue
        live.add((number, sha))
        last[number] = sha
        outcomes.append("queued")
    return outcomes, last


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS, concurrent=st.booleans())
async def test_random_submits_keep_the_invariants(
    tmp_path: Path, ops: list[Op], concurrent: bool
) -> None:
    outcomes, last = expected_outcomes(ops)
    busy: Counter[int] = Counter()
    overlaps: list[int] = []

    async def handler(job: ReviewJob) -> None:
        busy[job.number] += 1
        if busy[job.number] > 1:
            overlaps.append(job.number)
        try:
            await anyio.lowlevel.checkpoint()
        finally:  # a newer head SHA may cancel it here
            busy[job.number] -= 1

    async def submit_all(queue: EmbeddedQueue) -> list[str]:
        return [await queue.submit(job(number, sha, delivery)) for number, sha, delivery in ops]

    path = Path(tempfile.mkdtemp(dir=tmp_path)) / "queue.sqlite3"
    with anyio.fail_after(GUARD_S):
        async with EmbeddedQueue.open(path) as queue:
            if concurrent:
                async with queue.running(handler, workers=2):
                    answers = await submit_all(queue)
                    await queue.wait_idle()
            else:
                answers = await submit_all(queue)
                async with queue.running(handler, workers=2):
                    await queue.wait_idle()
            records = await queue.jobs()

    assert answers == outcomes
    assert not overlaps
    pairs = Counter((r.job.number, r.job.head_sha) for r in records if r.state != "failed")
    assert max(pairs.values()) == 1
    posted = {(r.job.number, int(r.job.head_sha, 16)) for r in records if r.state == "posted"}
    assert set(last.items()) <= posted
    others = [r for r in records if (r.job.number, int(r.job.head_sha, 16)) not in last.items()]
    # Without workers during the submits, nothing but the last head SHA of each PR is reviewed.
    assert all(
        r.state in ({"superseded", "posted"} if concurrent else {"superseded"}) for r in others
    )


async def test_a_job_superseded_just_after_its_claim_is_not_run(
    queue: EmbeddedQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = job(sha=1), job(sha=2)
    claim = Journal.claim

    def claim_then_supersede(journal: Journal) -> Claim:
        # The newer head SHA lands after the claim but before the worker sees the result.
        claimed = claim(journal)
        if claimed.record is not None and claimed.record.job == old:
            assert journal.submit([new])[0].cancel == (claimed.record.id,)
        return claimed

    monkeypatch.setattr(Journal, "claim", claim_then_supersede)
    handler = Recorder()
    await queue.submit(old)
    with anyio.fail_after(GUARD_S):
        async with queue.running(handler):
            await queue.wait_idle()
    assert handler.calls == [new]
    assert await states(queue) == {old.head_sha: "superseded", new.head_sha: "posted"}


async def test_delivery_ids_are_forgotten_after_a_week(path: Path) -> None:
    clock = FakeClock()
    async with EmbeddedQueue.open(path, QueueOptions(clock=clock)) as queue:
        assert await queue.submit(job(sha=1, delivery="d1")) == "queued"
        clock.now += 6 * 24 * 3600
        assert await queue.submit(job(sha=2, delivery="d2")) == "queued"
        assert await queue.submit(job(sha=1, delivery="d1")) == "duplicate_delivery"
        clock.now += 2 * 24 * 3600
        assert await queue.submit(job(number=2, delivery="d3")) == "queued"
        # d1 was pruned; d2 is younger than a week. The job itself is still known.
        assert await queue.submit(job(sha=1, delivery="d1")) == "duplicate_job"
        assert await queue.submit(job(sha=2, delivery="d2")) == "duplicate_delivery"


async def test_a_review_command_reviews_a_head_that_was_already_posted(path: Path) -> None:
    async def handler(_job: ReviewJob) -> None:
        return None

    async with EmbeddedQueue.open(path) as queue, queue.running(handler):
        assert await queue.submit(job(sha=1)) == "queued"
        await queue.wait_idle()
        assert await queue.submit(job(sha=1)) == "duplicate_job"
        command = job(sha=1).model_copy(update={"trigger": "command"})
        assert await queue.submit(command) == "queued"
        await queue.wait_idle()
        assert [r.state for r in await queue.jobs()] == ["posted", "posted"]


# --- checkpoints: off the commits, in the journal's own thread ---


def _wal_frames(path: Path) -> int:
    """Count the frames in the WAL (checkpointing them, from a connection of the test's own)."""
    db = sqlite3.connect(path)
    try:
        busy, frames, _ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        db.close()
    assert busy == 0
    return int(frames)


def test_commits_never_run_a_checkpoint(path: Path) -> None:
    journal = Journal(path, FakeClock())
    journal.checkpointer.close()  # nothing but the commits themselves could checkpoint now
    try:
        for number in range(1, 301):
            journal.submit([job(number=number, sha=number)])
        # SQLite's automatic checkpoint would have reset the WAL at 1,000 frames.
        assert _wal_frames(path) > 1000
    finally:
        journal.close()


def test_the_checkpointer_runs_every_hundred_commits_and_close_leaves_no_wal(path: Path) -> None:
    journal = Journal(path, FakeClock())
    try:
        for number in range(1, 100):
            journal.submit([job(number=number, sha=number)])
        assert journal.checkpointer.checkpoints == 0
        journal.submit([job(number=100, sha=100)])
        assert journal.checkpointer.wait_for(1, timeout_s=GUARD_S)
        for number in range(101, 201):
            journal.submit([job(number=number, sha=number)])
        assert journal.checkpointer.wait_for(2, timeout_s=GUARD_S)
    finally:
        journal.close()
    assert not path.with_name(path.name + "-wal").exists()
    reopened = Journal(path, FakeClock())
    try:
        assert len(reopened.jobs("queued")) == 200
    finally:
        reopened.close()
