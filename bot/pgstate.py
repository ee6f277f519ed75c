"""PostgreSQL state every pr-council process shares in scale-out (docs/scale-out.md).

One database is all a deployment needs: procrastinate's tables hold the queue, and ours
hold the delivery ids already seen, githubkit's installation tokens (so N workers mint one
token per installation, not N) and the next time each installation may be written to (so
GitHub's one-write-per-second advice holds across every worker, not per process).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import NoReturn, TypeGuard, TypeVar

import anyio
import psycopg
from githubkit.cache import AsyncBaseCache, BaseCacheStrategy, MemCache
from githubkit.exception import CacheUnsupportedError
from hishel import AsyncBaseStorage, AsyncInMemoryStorage, BaseStorage, InMemoryStorage
from procrastinate import PsycopgConnector
from procrastinate.schema import SchemaManager
from psycopg_pool import AsyncConnectionPool

from bot.github.client import Pacer

__all__ = [
    "Database",
    "PgCacheStrategy",
    "PgPacer",
    "has_schema",
    "is_postgres",
    "migrate",
    "schema_ready",
]

log = logging.getLogger("pr_council.db")
T = TypeVar("T")

# Ours, next to procrastinate's. The index serves the "was this head reviewed" check of
# ProcrastinateQueue.submit (procrastinate indexes queueing_lock for `todo` jobs only).
SCHEMA = """
CREATE TABLE IF NOT EXISTS pr_council_deliveries (
    delivery_id text PRIMARY KEY,
    seen_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS pr_council_deliveries_seen ON pr_council_deliveries (seen_at);
CREATE TABLE IF NOT EXISTS pr_council_cache (
    key text PRIMARY KEY,
    value text NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS pr_council_pacing (
    key text PRIMARY KEY,
    next_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS pr_council_jobs_queueing_lock ON procrastinate_jobs (queueing_lock);
"""
_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"
_CACHE_GET = (
    "SELECT value, extract(epoch FROM expires_at - now())::float8 FROM pr_council_cache"
    " WHERE key = %s AND expires_at > now()"
)
_CACHE_SET = (
    "INSERT INTO pr_council_cache (key, value, expires_at)"
    " VALUES (%s, %s, now() + make_interval(secs => %s))"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at"
)
_CACHE_PRUNE = "DELETE FROM pr_council_cache WHERE expires_at < now() - interval '1 day'"
_PACE_WAIT = (
    "SELECT greatest(0, extract(epoch FROM next_at - clock_timestamp()))::float8"
    " FROM pr_council_pacing WHERE key = %s"
)
_PACE_NEXT = (
    "INSERT INTO pr_council_pacing (key, next_at)"
    " VALUES (%s, clock_timestamp() + make_interval(secs => %s))"
    " ON CONFLICT (key) DO UPDATE SET next_at = excluded.next_at"
)


def is_postgres(url: str | None) -> TypeGuard[str]:
    """Tell whether PR_COUNCIL_DATABASE_URL selects the PostgreSQL (procrastinate) backend."""
    return url is not None and url.startswith(("postgresql://", "postgres://"))


class Database:
    """One connection pool per process, shared by the queue, the token cache and the pacer."""

    def __init__(self, url: str, *, max_size: int = 8) -> None:
        # procrastinate's connector creates and opens the pool (App.open_async); the
        # arguments go to psycopg_pool.AsyncConnectionPool.
        self.connector = PsycopgConnector(
            conninfo=url,
            min_size=1,
            max_size=max_size,
            kwargs={"application_name": "pr-council"},
        )

    @property
    def pool(self) -> AsyncConnectionPool:
        """Return the open pool (procrastinate raises AppNotOpen before the queue is opened)."""
        return self.connector.pool


async def migrate(url: str) -> bool:
    """Apply procrastinate's schema unless present, then ours; return whether it was new.

    procrastinate's schema.sql is not idempotent (plain CREATE TYPE/TABLE), so it is applied
    only when its procrastinate_jobs table is missing, under a lock against a concurrent run.
    """
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
        await conn.execute(_LOCK, ("pr-council:migrate",))
        fresh = not await _has_jobs_table(conn)
        if fresh:
            await conn.execute(SchemaManager.get_schema())
        await conn.execute(SCHEMA)
    log.info("database schema %s", "applied" if fresh else "already present: updated ours")
    return fresh


async def schema_ready(url: str) -> bool:
    """Tell whether `pr-council db migrate` has run on this database."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        return await has_schema(conn)


async def has_schema(conn: psycopg.AsyncConnection) -> bool:
    """Tell whether procrastinate's tables and ours (its last one) are there."""
    return await _has_jobs_table(conn) and await _has_table(conn, "pr_council_pacing")


async def _has_jobs_table(conn: psycopg.AsyncConnection) -> bool:
    """Tell whether procrastinate's schema is there (its own check_connection test)."""
    return await _has_table(conn, "procrastinate_jobs")


async def _has_table(conn: psycopg.AsyncConnection, name: str) -> bool:
    """Tell whether a table exists on the search path."""
    row = await (await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))).fetchone()
    return bool(row and row[0])


class PgCache(AsyncBaseCache):
    """githubkit's token and JWT cache in PostgreSQL, with this process's copy in front."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._local = MemCache()  # type: ignore[no-untyped-call]  # unannotated __init__

    async def aget(self, key: str) -> str | None:
        """Return a live value: this process's copy, or the shared one."""
        if (value := self._local.get(key)) is not None:
            return value
        async with self._db.pool.connection() as conn:
            row = await (await conn.execute(_CACHE_GET, (key,))).fetchone()
        if row is None:
            return None
        value, ttl_s = row
        self._local.set(key, value, timedelta(seconds=ttl_s))
        return str(value)

    async def aset(self, key: str, value: str, ex: timedelta) -> None:
        """Store a value for every process until it expires."""
        self._local.set(key, value, ex)
        async with self._db.pool.connection() as conn:
            await conn.execute(_CACHE_SET, (key, value, ex.total_seconds()))
            await conn.execute(_CACHE_PRUNE)


class PgCacheStrategy(BaseCacheStrategy):
    """Share installation tokens across workers; async clients only (githubkit's auth flow)."""

    def __init__(self, database: Database) -> None:
        self._cache = PgCache(database)
        # http_cache=False in bot.github.client: hishel's storages are never used.
        self._storage = InMemoryStorage()
        self._async_storage = AsyncInMemoryStorage()

    def get_cache_storage(self) -> NoReturn:
        """Refuse sync clients, as githubkit's AsyncRedisCacheStrategy does."""
        raise CacheUnsupportedError("the PostgreSQL token cache serves async clients only")

    def get_async_cache_storage(self) -> PgCache:
        """Return the shared cache."""
        return self._cache

    def get_hishel_storage(self) -> BaseStorage:
        """Return an unused in-memory HTTP cache."""
        return self._storage

    def get_async_hishel_storage(self) -> AsyncBaseStorage:
        """Return an unused in-memory HTTP cache."""
        return self._async_storage


@dataclass
class PgPacer(Pacer):
    """A Pacer for the whole deployment: one write per key at a time, `interval_s` apart.

    A transaction-scoped advisory lock per key serialises writers across processes (the
    in-process lock first, so a process waits on one connection per key); the end of the
    last write is kept in pr_council_pacing on the database's clock (workers' clocks differ).
    """

    database: Database = field(kw_only=True)

    async def write(self, key: str, request: Callable[[], Awaitable[T]]) -> T:
        """Run one write for `key` no sooner than `interval_s` after the previous one anywhere."""
        lock = self._locks.setdefault(key, anyio.Lock())
        async with lock, self.database.pool.connection() as conn:
            await conn.execute(_LOCK, (f"pr-council:pace:{key}",))
            row = await (await conn.execute(_PACE_WAIT, (key,))).fetchone()
            if row is not None and row[0] > 0:
                await self.sleep(row[0])
            try:
                return await request()
            finally:
                # Recorded even when the request failed or the job was cancelled meanwhile.
                with anyio.CancelScope(shield=True):
                    await conn.execute(_PACE_NEXT, (key, self.interval_s))
                    await conn.commit()
