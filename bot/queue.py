"""The embedded ReviewQueue: in-process anyio workers over a SQLite journal (DESIGN.md §6).

Use it as an async context manager; workers run inside `running()`:

    async with EmbeddedQueue.open(state_dir / "queue.sqlite3") as queue:
        async with queue.running(handler):
            ...  # serve webhooks: `await queue.submit(job)`

States: queued -> running -> posted | superseded | failed; running -> queued on a retry, on
shutdown and (at open) after a crash; queued -> superseded. A newer head SHA supersedes the
PR's queued and running jobs; a running one has its handler cancelled. `attempts` counts failed
runs (retries), not interruptions. One process owns a journal file: opening it requeues every
job left running.

Journal calls run on the event loop: each is one short transaction that never waits for the
disk (WAL with synchronous=NORMAL; the journal checkpoints from a thread of its own). Handing
them to a worker thread cost more than the work: under a burst with reviews running, the hops
to and from the thread waited 100-500 ms for the GIL and the loop (benchmarks/README.md,
webhook.py).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.lowlevel

from bot.jobs import (
    Handler,
    JobRecord,
    JobState,
    PermanentFailure,
    RetryLater,
    ReviewJob,
    Submitted,
    Superseded,
)
from bot.journal import Accepted, Claim, Journal, Outcome

__all__ = ["EmbeddedQueue", "QueueOptions"]

logger = logging.getLogger("pr_council.queue")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class QueueOptions:
    """Tuning of the embedded queue; `clock` and `sleep` are seams for tests."""

    workers: int = 2
    max_attempts: int = 5
    backoff_base_s: float = 2.0
    backoff_cap_s: float = 300.0
    clock: Clock = time.time
    sleep: Sleep = anyio.sleep


@dataclass
class _Batch:
    """Submits that share one journal transaction (a group commit under a burst)."""

    jobs: list[ReviewJob] = field(default_factory=list)
    done: anyio.Event = field(default_factory=anyio.Event)
    results: list[Accepted] = field(default_factory=list)
    error: Exception | None = None

    def result(self, index: int) -> Accepted:
        """Return the journal's answer to one submit, or raise why the batch failed."""
        if self.error is not None:
            raise self.error
        return self.results[index]


class EmbeddedQueue:
    """A ReviewQueue backed by SQLite, with in-process workers (see the module docstring)."""

    def __init__(self, journal: Journal, options: QueueOptions) -> None:
        self._journal: Journal | None = journal
        self._options = options
        self._changed = anyio.Event()
        self._batch = _Batch()
        self._active: dict[int, anyio.CancelScope] = {}

    @classmethod
    @asynccontextmanager
    async def open(
        cls, path: Path, options: QueueOptions | None = None
    ) -> AsyncIterator[EmbeddedQueue]:
        """Open the journal at `path` (resetting jobs a stopped process left running); close it."""
        options = options or QueueOptions()
        journal = await anyio.to_thread.run_sync(Journal, path, options.clock)
        queue = cls(journal, options)
        try:
            yield queue
        finally:
            await queue.close()

    async def close(self) -> None:
        """Close the journal; call it after the workers have stopped."""
        journal, self._journal = self._journal, None
        if journal is not None:  # its last checkpoint may write for a while: not on the loop
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(journal.close)

    def _notify(self) -> None:
        """Wake the workers and wait_idle(): something changed."""
        self._changed.set()
        self._changed = anyio.Event()

    @property
    def _db(self) -> Journal:
        """Return the open journal."""
        if self._journal is None:
            raise RuntimeError("the review queue is closed")
        return self._journal

    async def submit(self, job: ReviewJob) -> Submitted:
        """Queue a job unless its delivery or its (PR, head SHA) was seen; supersede older ones."""
        batch = self._batch
        index = len(batch.jobs)
        batch.jobs.append(job)
        if index == 0:
            await self._lead(batch)
        else:
            await batch.done.wait()
        accepted = batch.result(index)
        if accepted.outcome == "queued":
            logger.debug("queued review %s (job %s)", job.label, accepted.job_id)
        return accepted.outcome

    async def _lead(self, batch: _Batch) -> None:
        """Commit the batch this submit opened once the tasks already scheduled have joined it.

        A commit is most of a submit's cost (~140 us of WAL writes): under a burst the
        deliveries handled in one turn of the event loop share it.
        """
        with anyio.CancelScope(shield=True):  # the submits riding on it must get their answers
            await anyio.lowlevel.checkpoint()
        self._batch = _Batch()
        try:
            batch.results = self._db.submit(batch.jobs)
        except Exception as exc:
            batch.error = exc
        else:
            self._apply(batch.results)
        finally:
            batch.done.set()

    def _apply(self, results: list[Accepted]) -> None:
        """Cancel the handlers of superseded running jobs; wake the workers for new jobs."""
        for accepted in results:
            for job_id in accepted.cancel:
                scope = self._active.get(job_id)
                if scope is not None:
                    scope.cancel()
        if any(accepted.outcome == "queued" for accepted in results):
            self._notify()

    async def depth(self) -> int:
        """Return how many jobs are queued or running."""
        return self._db.depth()

    async def get(self, job_id: int) -> JobRecord | None:
        """Return one job by id."""
        return self._db.get(job_id)

    async def jobs(self, state: JobState | None = None) -> list[JobRecord]:
        """Return all jobs, or those in one state, oldest first."""
        return self._db.jobs(state)

    async def wait_idle(self) -> None:
        """Return once nothing is queued or running (it waits forever without workers)."""
        while True:
            changed = self._changed
            if not self._active and await self.depth() == 0:
                return
            await changed.wait()

    @asynccontextmanager
    async def running(self, handler: Handler, workers: int | None = None) -> AsyncIterator[None]:
        """Run `workers` workers while inside; on exit cancel running jobs and leave them queued."""
        count = self._options.workers if workers is None else workers
        async with anyio.create_task_group() as group:
            for _ in range(count):
                group.start_soon(self._work, handler)
            try:
                yield
            finally:
                group.cancel_scope.cancel()

    async def _work(self, handler: Handler) -> None:
        """Take jobs one after another until cancelled."""
        while True:
            changed = self._changed
            claim: Claim = self._db.claim()
            if claim.record is None:
                await self._idle(changed, claim.next_due)
            else:
                await self._run(claim.record, handler)

    async def _idle(self, changed: anyio.Event, next_due: float | None) -> None:
        """Wait for a submit or a finished job, or until the next delayed retry is due."""
        if next_due is None:
            await changed.wait()
            return
        delay = max(0.0, next_due - self._options.clock())
        async with anyio.create_task_group() as group:

            async def timer() -> None:
                await self._options.sleep(delay)
                group.cancel_scope.cancel()

            group.start_soon(timer)
            await changed.wait()
            group.cancel_scope.cancel()

    async def _run(self, record: JobRecord, handler: Handler) -> None:
        """Run one job and record its outcome; a shutdown leaves it queued."""
        scope = anyio.CancelScope()
        self._active[record.id] = scope
        # What a shutdown leaves: the job was interrupted, not failed; a restart runs it again.
        outcome = Outcome("queued", record.error)
        try:
            outcome = await self._attempt(record, handler, scope)
        finally:
            await self._finish(record, outcome)
        logger.info("review %s: %s", record.job.label, outcome.state)

    async def _finish(self, record: JobRecord, outcome: Outcome) -> None:
        """Record the outcome even while shutting down, then free the PR for the next job."""
        try:
            self._db.finish(record.id, outcome)
        finally:
            del self._active[record.id]
            self._notify()

    async def _attempt(
        self, record: JobRecord, handler: Handler, scope: anyio.CancelScope
    ) -> Outcome:
        """Call the handler and turn how it ended into an outcome."""
        # Cheap insurance: nothing awaits between the claim and the registration above today,
        # but a job superseded in between must not run.
        if not self._db.is_running(record.id):
            return Outcome("superseded")
        try:
            with scope:
                await handler(record.job)
                return Outcome("posted")
            return Outcome("superseded")  # only reached when a newer head SHA cancelled it
        except Superseded:
            return Outcome("superseded")
        except RetryLater as exc:
            return self._retry(record, str(exc), exc.delay_s)
        except PermanentFailure as exc:
            return Outcome("failed", str(exc) or type(exc).__name__)
        except Exception as exc:
            logger.warning("review %s raised", record.job.label, exc_info=True)
            error = f"{type(exc).__name__}: {exc}"
            return self._retry(record, error, self._backoff(record.attempts))

    def _retry(self, record: JobRecord, error: str, delay_s: float) -> Outcome:
        """Queue the job again after `delay_s`, or fail it once it has used its attempts."""
        attempts = record.attempts + 1
        if attempts >= self._options.max_attempts:
            logger.warning("review %s failed after %d attempts", record.job.label, attempts)
            return Outcome("failed", error, attempts)
        not_before = self._options.clock() + max(0.0, delay_s)
        logger.info("review %s: retry in %.1f s (%s)", record.job.label, delay_s, error)
        return Outcome("queued", error, attempts, not_before)

    def _backoff(self, attempts: int) -> float:
        """Return an exponential delay with jitter (half fixed, half random)."""
        base = self._options.backoff_base_s
        delay = min(self._options.backoff_cap_s, base * math.pow(2, attempts))
        return delay / 2 + random.uniform(0, delay / 2)
