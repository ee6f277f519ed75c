"""The ReviewQueue on PostgreSQL through procrastinate: any number of workers (DESIGN.md §6).

`pr-council serve` only submits; `pr-council worker` processes run the `pr_council.review`
task. Same semantics as the embedded queue (bot/queue.py):

- submit, in one transaction under a per-PR advisory lock: the delivery id goes into
  pr_council_deliveries (seen: duplicate_delivery); a job of this (PR, head SHA) waiting,
  running, posted or superseded is a duplicate_job (a `/council review` command may review
  a posted head again); else the job is deferred with `lock` = the PR (procrastinate runs
  one job per lock at a time) and `queueing_lock` = PR@SHA, and the PR's other waiting jobs
  are cancelled and its running one aborted (the worker cancels the task's coroutine).
- states: todo (queued) -> doing (running) -> succeeded (posted) | aborted (superseded) |
  failed; cancelled (superseded while queued); doing -> todo on a retry, on a shutdown past
  its grace period, and when a worker died (its heartbeat stopped: stalled-job recovery).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Final

import anyio
from procrastinate import App, BaseRetryStrategy, JobContext, PsycopgConnector, RetryDecision
from procrastinate.exceptions import AlreadyEnqueued, JobAborted
from procrastinate.job_context import AbortReason
from procrastinate.jobs import Job
from procrastinate.sql import queries
from procrastinate.types import JSONDict
from procrastinate.worker import Worker
from psycopg import AsyncConnection

from bot.config import ConfigError
from bot.github.client import WRITE_INTERVAL_S
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
from bot.pgstate import Database, has_schema

__all__ = ["ProcrastinateQueue", "ReviewRetry", "WorkerOptions"]

log = logging.getLogger("pr_council.queue")

TASK: Final = "pr_council.review"
QUEUE: Final = "reviews"
STATES: Final[dict[str, JobState]] = {
    "todo": "queued",
    "doing": "running",
    "succeeded": "posted",
    "cancelled": "superseded",
    "aborted": "superseded",
    "failed": "failed",
}
_REVIEWED = ("todo", "doing", "succeeded", "cancelled", "aborted")
_LIVE = ("todo", "doing")
_DELIVERY_RETENTION = "7 days"
_PRUNE_EVERY_S = 3600.0
_SEEN = "INSERT INTO pr_council_deliveries (delivery_id) VALUES (%s) ON CONFLICT DO NOTHING"
_PRUNE = "DELETE FROM pr_council_deliveries WHERE seen_at < now() - %s::interval"
_HAS_JOB = (
    "SELECT 1 FROM procrastinate_jobs WHERE queueing_lock = %s AND task_name = %s"
    " AND status::text = ANY(%s) LIMIT 1"
)
_OTHERS = (
    "SELECT id FROM procrastinate_jobs WHERE lock = %s AND task_name = %s AND id <> %s"
    " AND status IN ('todo', 'doing') FOR UPDATE"
)
_DEPTH = (
    "SELECT count(*) FROM procrastinate_jobs WHERE queue_name = %s AND status IN ('todo', 'doing')"
)
_RECORDS = "SELECT id, args, status::text, attempts FROM procrastinate_jobs WHERE task_name = %s"
_ABORT_REQUESTED = "SELECT abort_requested FROM procrastinate_jobs WHERE id = %s"


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker process runs; see docs/scale-out.md for sizing."""

    concurrency: int = 2
    # LISTEN/NOTIFY wakes workers at once; polling is procrastinate's fallback (default 5 s).
    poll_s: float = 1.0
    # On SIGTERM, running reviews may finish for this long; then they are put back.
    grace_s: float = 60.0
    heartbeat_s: float = 10.0
    # A worker whose heartbeat is older than this is dead: its running jobs are put back.
    stalled_s: float = 60.0
    write_interval_s: float = WRITE_INTERVAL_S
    install_signal_handlers: bool = True

    @property
    def name(self) -> str:
        """Name this worker in procrastinate's logs."""
        return f"pr-council@{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class ReviewRetry(BaseRetryStrategy):
    """What a failed run becomes: RetryLater after its delay, other errors after a backoff.

    procrastinate retries every exception when `retry_exceptions` is unset, the cancellation
    of an aborted job included ("Retry a job" in its docs): the retried ones are named here.
    """

    max_attempts: int = 5
    backoff_base_s: float = 2.0
    backoff_cap_s: float = 300.0
    retry_exceptions: tuple[type[BaseException], ...] = (RetryLater, Exception)
    final_exceptions: tuple[type[BaseException], ...] = (PermanentFailure, Superseded, JobAborted)

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        """Decide when to run the job again, if ever."""
        now = datetime.now(UTC)
        if isinstance(exception, asyncio.CancelledError):
            # Only a shutdown past its grace period gets here (see _review): put it back now.
            return RetryDecision(retry_at=now)
        if isinstance(exception, self.final_exceptions) or not isinstance(
            exception, self.retry_exceptions
        ):
            return None
        if job.attempts + 1 >= self.max_attempts:
            log.warning("review job %s failed after %d attempts", job.id, job.attempts + 1)
            return None
        return RetryDecision(retry_at=now + timedelta(seconds=self.delay(exception, job.attempts)))

    def delay(self, exception: BaseException, attempts: int) -> float:
        """Return RetryLater's delay, or an exponential backoff with jitter."""
        if isinstance(exception, RetryLater):
            return max(0.0, exception.delay_s)
        delay = min(self.backoff_cap_s, self.backoff_base_s * math.pow(2, attempts))
        return delay / 2 + random.uniform(0, delay / 2)


class ProcrastinateQueue:
    """A ReviewQueue in PostgreSQL (see the module docstring); open it with `opened()`."""

    def __init__(self, database: Database, retry: ReviewRetry | None = None) -> None:
        self.database = database
        self.app = App(connector=database.connector)
        self._handler: Handler | None = None
        self._pruned_at = float("-inf")
        self.task = self.app.task(
            name=TASK, queue=QUEUE, pass_context=True, retry=retry or ReviewRetry()
        )(self._review)

    @asynccontextmanager
    async def opened(self) -> AsyncIterator[ProcrastinateQueue]:
        """Open the pool; refuse a database `pr-council db migrate` has not prepared."""
        async with self.app.open_async():
            async with self.database.pool.connection() as conn:
                ready = await has_schema(conn)
            if not ready:
                raise ConfigError(
                    "the database has no pr-council schema: run `pr-council db migrate`"
                )
            yield self

    async def submit(self, job: ReviewJob) -> Submitted:
        """Queue a job unless its delivery or its (PR, head SHA) was seen; supersede older ones."""
        async with self.database.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"pr-council:{job.pr_key}",),
            )
            outcome = await self._submit(conn, job)
        if outcome == "queued":
            log.info("queued review %s", job.label)
        return outcome

    async def _submit(self, conn: AsyncConnection, job: ReviewJob) -> Submitted:
        """De-duplicate, defer and supersede inside the caller's transaction."""
        if job.delivery_id is not None and not await self._first_delivery(conn, job.delivery_id):
            return "duplicate_delivery"
        statuses = list(_LIVE if job.trigger == "command" else _REVIEWED)
        seen = await conn.execute(_HAS_JOB, (_queueing_lock(job), TASK, statuses))
        if await seen.fetchone() is not None:
            return "duplicate_job"
        job_id = await self._defer(conn, job)
        if job_id is None:
            return "duplicate_job"
        await self._supersede(conn, job.pr_key, job_id)
        return "queued"

    async def _first_delivery(self, conn: AsyncConnection, delivery_id: str) -> bool:
        """Record a delivery id; False if it was seen within the retention period."""
        now = anyio.current_time()
        if now - self._pruned_at >= _PRUNE_EVERY_S:
            await conn.execute(_PRUNE, (_DELIVERY_RETENTION,))
            self._pruned_at = now
        return (await conn.execute(_SEEN, (delivery_id,))).rowcount == 1

    async def _defer(self, conn: AsyncConnection, job: ReviewJob) -> int | None:
        """Defer the task on this connection; None if procrastinate's queueing_lock refuses."""
        deferrer = self.task.configure(
            lock=job.pr_key, queueing_lock=_queueing_lock(job), connection=conn
        )
        try:
            async with conn.transaction():  # a savepoint: the delivery row stays recorded
                return await deferrer.defer_async(job=job.model_dump(mode="json"))
        except AlreadyEnqueued:
            return None

    async def _supersede(self, conn: AsyncConnection, pr_key: str, newest: int) -> None:
        """Cancel the PR's other waiting jobs and abort its running one."""
        rows = await (await conn.execute(_OTHERS, (pr_key, TASK, newest))).fetchall()
        for (job_id,) in rows:
            # abort=True: todo -> cancelled; doing -> abort_requested, and procrastinate's
            # NOTIFY makes the worker cancel the job's coroutine (async tasks, 3.x).
            await self.app.job_manager.cancel_job_by_id_async(job_id, abort=True, connection=conn)
            log.info("review job %s superseded by job %s", job_id, newest)

    async def depth(self) -> int:
        """Return how many jobs are queued or running."""
        async with self.database.pool.connection() as conn:
            row = await (await conn.execute(_DEPTH, (QUEUE,))).fetchone()
        return int(row[0]) if row else 0

    async def jobs(self, state: JobState | None = None) -> list[JobRecord]:
        """Return all review jobs, or those in one state, oldest first."""
        async with self.database.pool.connection() as conn:
            rows = await (await conn.execute(_RECORDS + " ORDER BY id", (TASK,))).fetchall()
        records = [_record(*row) for row in rows]
        return [r for r in records if state is None or r.state == state]

    async def _review(self, context: JobContext, job: JSONDict) -> str:
        """Run the handler on one job (the procrastinate task); raise what ends it."""
        if self._handler is None:
            raise PermanentFailure("this process only enqueues")
        try:
            await self._handler(ReviewJob.model_validate(job))
        except Superseded as exc:
            raise JobAborted(f"superseded: {exc}") from exc
        except BaseException:
            # procrastinate cancels the coroutine both for an abort (a newer head SHA: final)
            # and at the end of a shutdown's grace period (retried by ReviewRetry); it asks
            # the retry strategy about both, so the abort becomes JobAborted here.
            if context.abort_reason() is AbortReason.USER_REQUEST:
                raise JobAborted("superseded by a newer head SHA") from None
            raise
        return "posted"

    async def work(self, handler: Handler, options: WorkerOptions) -> None:
        """Review jobs until SIGTERM or SIGINT, then shut down within the grace period."""
        await self._run(self._worker(handler, options), options)

    @asynccontextmanager
    async def running(self, handler: Handler, options: WorkerOptions) -> AsyncIterator[None]:
        """Run a worker in this process while inside (tests); on exit stop it gracefully."""
        worker = self._worker(handler, replace(options, install_signal_handlers=False))
        async with anyio.create_task_group() as group:
            group.start_soon(self._run, worker, options)
            # procrastinate's run() forgets a stop() that came before it registered, and it
            # signals registration only by setting run_task.
            while worker.run_task is None:  # noqa: ASYNC110
                await anyio.sleep(0.01)
            try:
                yield
            finally:
                worker.stop()  # type: ignore[no-untyped-call]  # unannotated in procrastinate

    def _worker(self, handler: Handler, options: WorkerOptions) -> Worker:
        """Build procrastinate's worker with our options."""
        self._handler = handler
        return Worker(
            app=self.app,
            queues=[QUEUE],
            name=options.name,
            concurrency=options.concurrency,
            fetch_job_polling_interval=options.poll_s,
            abort_job_polling_interval=options.poll_s,
            shutdown_graceful_timeout=options.grace_s,
            install_signal_handlers=options.install_signal_handlers,
            update_heartbeat_interval=options.heartbeat_s,
            stalled_worker_timeout=options.stalled_s,
            delete_jobs="never",  # finished jobs are the record of reviewed heads
        )

    async def _run(self, worker: Worker, options: WorkerOptions) -> None:
        """Run the worker and, beside it, recover the jobs of dead workers."""
        async with anyio.create_task_group() as group:
            group.start_soon(self._recover_forever, options)
            await worker.run()  # type: ignore[no-untyped-call]  # unannotated in procrastinate
            group.cancel_scope.cancel()

    async def _recover_forever(self, options: WorkerOptions) -> None:
        """Put back the jobs of stalled workers every heartbeat interval."""
        while True:
            try:
                await self.recover_stalled(options.stalled_s)
            except Exception:
                log.exception("stalled-job recovery failed; trying again")
            await anyio.sleep(options.heartbeat_s)

    async def recover_stalled(self, stalled_s: float) -> int:
        """Requeue running jobs of workers silent for `stalled_s`; finish aborted ones.

        procrastinate 3.x detects stalled jobs (get_stalled_jobs) but leaves the retry to the
        application ("Retry stalled jobs" in its docs); a lock keeps two workers from
        retrying one job twice, the second time while another worker runs it.
        """
        async with self.database.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended('pr-council:recover', 0))"
            )
            stalled = await conn.execute(
                queries["select_stalled_jobs_by_heartbeat"],
                {"queue": QUEUE, "task_name": TASK, "seconds_since_heartbeat": stalled_s},
            )
            ids = [int(row[0]) for row in await stalled.fetchall()]
            for job_id in ids:
                await _put_back(conn, job_id)
        return len(ids)


async def _put_back(conn: AsyncConnection, job_id: int) -> None:
    """Queue a stalled job again, or end it as aborted if a newer head superseded it."""
    row = await (await conn.execute(_ABORT_REQUESTED, (job_id,))).fetchone()
    if row is not None and row[0]:
        await conn.execute(
            queries["finish_job"], {"job_id": job_id, "status": "aborted", "delete_job": False}
        )
        return
    await conn.execute(
        queries["retry_job"],
        {"job_id": job_id, "retry_at": datetime.now(UTC), "new_priority": None,
         "new_queue_name": None, "new_lock": None},
    )  # fmt: skip
    log.warning("review job %s: its worker stopped answering; queued again", job_id)


def _cli_app() -> App:
    """Build an App for procrastinate's own CLI on PR_COUNCIL_DATABASE_URL (no connection yet)."""
    return App(connector=PsycopgConnector(conninfo=os.environ.get("PR_COUNCIL_DATABASE_URL", "")))


# procrastinate's CLI loads a module-level App by dotted path (its --app option):
# `procrastinate --app=bot.pgqueue.cli_app shell` (docs/scale-out.md).
cli_app = _cli_app()


def _queueing_lock(job: ReviewJob) -> str:
    """Name a job's (PR, head SHA): procrastinate keeps one such job waiting at a time."""
    return f"{job.pr_key}@{job.head_sha}"


def _record(job_id: int, args: JSONDict, status: str, runs: int) -> JobRecord:
    """Describe a procrastinate job as the queue contract does.

    procrastinate's `attempts` counts finished runs, the last one included; `attempts` here
    counts the failed runs and those interrupted (a shutdown) or lost with their worker.
    """
    job = ReviewJob.model_validate(args["job"])
    attempts = runs - 1 if status in ("succeeded", "aborted") else runs
    return JobRecord(id=job_id, job=job, state=STATES[status], attempts=max(0, attempts))
