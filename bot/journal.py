"""The embedded queue's SQLite journal: synchronous, one connection, and a checkpoint thread."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from bot.jobs import JobRecord, JobState, ReviewJob, Submitted

logger = logging.getLogger("pr_council.queue")

DELIVERY_RETENTION_S = 7 * 24 * 3600.0
# Write transactions between checkpoints: a few pages each, so well under SQLite's 1,000-page
# default, and a checkpoint has little to copy.
CHECKPOINT_EVERY = 100
_PRUNE_EVERY_S = 3600.0
_MAX_ERROR_CHARS = 2000

# `busy` marks a job whose handler may still be executing: it stays 1 after a supersession
# until the worker has unwound, so the picker never starts a second review of that PR early.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pr_key TEXT NOT NULL,
    head_sha TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL
        CHECK (state IN ('queued', 'running', 'posted', 'superseded', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    error TEXT,
    busy INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
DROP INDEX IF EXISTS jobs_live_sha;
CREATE UNIQUE INDEX IF NOT EXISTS jobs_open_sha ON jobs (pr_key, head_sha)
    WHERE state IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS jobs_sha ON jobs (pr_key, head_sha);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, id);
CREATE INDEX IF NOT EXISTS jobs_live ON jobs (pr_key) WHERE state IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS jobs_busy ON jobs (pr_key) WHERE busy = 1;
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_id TEXT PRIMARY KEY,
    seen_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_seen ON deliveries (seen_at);
"""

_RECORD = "SELECT id, payload, state, attempts, error FROM jobs"
_PICK = (
    _RECORD + " WHERE state = 'queued' AND not_before <= ?"
    " AND pr_key NOT IN (SELECT pr_key FROM jobs WHERE busy = 1) ORDER BY id LIMIT 1"
)
_Row = tuple[int, str, str, int, str | None]


@dataclass(frozen=True)
class Accepted:
    """The journal's answer to one submitted job."""

    outcome: Submitted
    job_id: int | None = None
    # Jobs of the same PR that were running and are now superseded: their handlers must stop.
    cancel: tuple[int, ...] = ()


@dataclass(frozen=True)
class Claim:
    """A job taken for a worker, or when the next delayed retry becomes due."""

    record: JobRecord | None
    next_due: float | None = None


@dataclass(frozen=True)
class Outcome:
    """How a run ended: the new state, and for a retry when and how often."""

    state: JobState
    error: str | None = None
    attempts: int | None = None
    not_before: float = 0.0


class Journal:
    """Jobs and delivery ids in SQLite (WAL, synchronous=NORMAL); call it from one thread at a time."""

    def __init__(self, path: Path, clock: Callable[[], float]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._pruned_at = float("-inf")
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            self._setup()
        except BaseException:
            self._db.close()
            raise
        self.checkpointer = Checkpointer(path)

    def _setup(self) -> None:
        """Configure the connection, create the schema and recover from an unclean stop."""
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        # "Write-Ahead Logging", automatic checkpoints: SQLite runs one inside whichever commit
        # fills 1,000 WAL pages, and a checkpoint syncs to disk (tens to hundreds of ms here).
        # Commits run on the event loop (bot/queue.py), so the Checkpointer runs them instead.
        self._db.execute("PRAGMA wal_autocheckpoint=0")
        self._db.executescript(_SCHEMA)
        with self._transaction():
            # A job left running was interrupted (crash or shutdown): run it again.
            self._db.execute("UPDATE jobs SET state = 'queued' WHERE state = 'running'")
            self._db.execute("UPDATE jobs SET busy = 0 WHERE busy = 1")

    def close(self) -> None:
        """Stop the checkpoints and close the connection (SQLite checkpoints a last time)."""
        self.checkpointer.close()
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """Run statements atomically: commit on success, roll back on any error."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self._db.in_transaction:  # some errors (disk full) already rolled it back
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @contextmanager
    def _write(self) -> Iterator[None]:
        """Run a write transaction and count it towards the next checkpoint."""
        with self._transaction():
            yield
        self.checkpointer.committed()

    def submit(self, jobs: Sequence[ReviewJob]) -> list[Accepted]:
        """Record a batch of jobs in one transaction (one commit for a burst of webhooks)."""
        now = self._clock()
        with self._write():
            if now - self._pruned_at >= _PRUNE_EVERY_S:
                self._prune(now)
            return [self._submit_one(job, now) for job in jobs]

    def _prune(self, now: float) -> None:
        """Forget delivery ids older than the retention period."""
        self._db.execute("DELETE FROM deliveries WHERE seen_at < ?", (now - DELIVERY_RETENTION_S,))
        self._pruned_at = now

    def _submit_one(self, job: ReviewJob, now: float) -> Accepted:
        """De-duplicate one job, queue it and supersede the PR's older jobs."""
        if job.delivery_id is not None:
            seen = self._db.execute(
                "INSERT OR IGNORE INTO deliveries (delivery_id, seen_at) VALUES (?, ?)",
                (job.delivery_id, now),
            )
            if seen.rowcount == 0:
                return Accepted("duplicate_delivery")
        job_id = None if self._reviewed(job) else self._insert(job, now)
        if job_id is None:
            return Accepted("duplicate_job")
        return Accepted("queued", job_id, self._supersede(job.pr_key, job_id, now))

    def _reviewed(self, job: ReviewJob) -> bool:
        """Tell whether this head was reviewed or passed over; a `/council review` asks again."""
        if job.trigger == "command":
            return False
        row = self._db.execute(
            "SELECT 1 FROM jobs WHERE pr_key = ? AND head_sha = ?"
            " AND state IN ('posted', 'superseded') LIMIT 1",
            (job.pr_key, job.head_sha),
        ).fetchone()
        return row is not None

    def _insert(self, job: ReviewJob, now: float) -> int | None:
        """Insert a queued job; return its id, or None if the (PR, head SHA) has a live job."""
        row = self._db.execute(
            "INSERT INTO jobs (pr_key, head_sha, payload, state, created_at, updated_at)"
            " VALUES (?, ?, ?, 'queued', ?, ?)"
            " ON CONFLICT (pr_key, head_sha) WHERE state IN ('queued', 'running')"
            " DO NOTHING RETURNING id",
            (job.pr_key, job.head_sha, job.model_dump_json(), now, now),
        ).fetchone()
        return cast(int, row[0]) if row else None

    def _supersede(self, pr_key: str, newest: int, now: float) -> tuple[int, ...]:
        """Mark the PR's other live jobs superseded; return the ids of those that were running."""
        # `state <> 'failed'` lets SQLite use the partial index jobs_live_sha. RETURNING shows
        # new values, so `busy` (set only while a handler runs) tells the running ones apart.
        rows = self._db.execute(
            "UPDATE jobs SET state = 'superseded', updated_at = ?"
            " WHERE pr_key = ? AND state IN ('queued', 'running') AND id <> ?"
            " RETURNING id, busy",
            (now, pr_key, newest),
        ).fetchall()
        return tuple(job_id for job_id, busy in rows if busy)

    def claim(self) -> Claim:
        """Take the oldest due job of a PR with no busy job, or say when a retry is next due."""
        now = self._clock()
        with self._write():
            row: _Row | None = self._db.execute(_PICK, (now,)).fetchone()
            if row is None:
                return Claim(None, self._next_due(now))
            self._db.execute(
                "UPDATE jobs SET state = 'running', busy = 1, updated_at = ? WHERE id = ?",
                (now, row[0]),
            )
        return Claim(_record((row[0], row[1], "running", row[3], row[4])))

    def _next_due(self, now: float) -> float | None:
        """Return when the earliest delayed job becomes due, if any."""
        row = self._db.execute(
            "SELECT min(not_before) FROM jobs WHERE state = 'queued' AND not_before > ?", (now,)
        ).fetchone()
        return cast(float | None, row[0])

    def finish(self, job_id: int, outcome: Outcome) -> None:
        """Record how a run ended, unless the job was superseded meanwhile; free its PR."""
        with self._write():
            self._db.execute(
                "UPDATE jobs SET state = ?, error = ?, attempts = coalesce(?, attempts),"
                " not_before = ?, updated_at = ? WHERE id = ? AND state = 'running'",
                (
                    outcome.state,
                    _clip(outcome.error),
                    outcome.attempts,
                    outcome.not_before,
                    self._clock(),
                    job_id,
                ),
            )
            self._db.execute("UPDATE jobs SET busy = 0 WHERE id = ?", (job_id,))

    def is_running(self, job_id: int) -> bool:
        """Tell whether a job is still in the running state (not superseded)."""
        row = self._db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row is not None and row[0] == "running"

    def get(self, job_id: int) -> JobRecord | None:
        """Return one job."""
        row: _Row | None = self._db.execute(_RECORD + " WHERE id = ?", (job_id,)).fetchone()
        return _record(row) if row else None

    def jobs(self, state: JobState | None) -> list[JobRecord]:
        """Return all jobs, or those in one state, oldest first."""
        if state is None:
            rows: list[_Row] = self._db.execute(_RECORD + " ORDER BY id").fetchall()
        else:
            rows = self._db.execute(_RECORD + " WHERE state = ? ORDER BY id", (state,)).fetchall()
        return [_record(row) for row in rows]

    def depth(self) -> int:
        """Count the jobs queued or running."""
        row = self._db.execute(
            "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')"
        ).fetchone()
        return cast(int, row[0])


class Checkpointer:
    """Copy the journal's WAL into its database file from a thread and a connection of its own.

    A PASSIVE checkpoint waits for no reader or writer, so commits go on meanwhile; the last
    connection to close checkpoints whatever is left.
    """

    def __init__(self, path: Path, every: int = CHECKPOINT_EVERY) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._every, self._commits, self.checkpoints = every, 0, 0
        self._wake, self._done, self._stopping = threading.Event(), threading.Condition(), False
        self._thread = threading.Thread(target=self._run, name="journal-checkpoints", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        """Count a write transaction; ask for a checkpoint every `every` of them."""
        self._commits += 1
        if self._commits % self._every == 0:
            self._wake.set()

    def _run(self) -> None:
        """Checkpoint whenever asked, until closed."""
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            try:
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.Error:  # the next request tries again; commits do not depend on it
                logger.warning("journal checkpoint failed", exc_info=True)
                continue
            with self._done:
                self.checkpoints += 1
                self._done.notify_all()

    def wait_for(self, count: int, timeout_s: float) -> bool:
        """Block until `count` checkpoints have run (False on timeout): for tests and tools."""
        with self._done:
            return self._done.wait_for(lambda: self.checkpoints >= count, timeout_s)

    def close(self) -> None:
        """Stop the thread and close the connection."""
        self._stopping = True
        self._wake.set()
        self._thread.join()
        self._db.close()


def _record(row: _Row) -> JobRecord:
    """Build a record from a row; pydantic rejects an unknown state."""
    job_id, payload, state, attempts, error = row
    job = ReviewJob.model_validate_json(payload)
    return JobRecord(
        id=job_id, job=job, state=cast(JobState, state), attempts=attempts, error=error
    )


def _clip(error: str | None) -> str | None:
    """Keep stored error texts short."""
    return error if error is None else error[:_MAX_ERROR_CHARS]
