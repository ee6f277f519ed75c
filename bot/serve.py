"""App mode's composition root: settings in, a FastAPI app with its queue and workers out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
from fastapi import FastAPI
from githubkit import AppAuthStrategy, GitHub
from githubkit.cache import BaseCacheStrategy
from pydantic import SecretStr

from agents.llm import AnthropicLLM, anthropic_llm
from bot.app import create_app
from bot.config import ConfigError, Settings
from bot.github.client import (
    Pacer,
    PullRef,
    app_bot_login,
    app_client,
    installation,
    warm_up,
)
from bot.github.snapshot import fetch_meta
from bot.jobs import Handler, PermanentFailure, RetryLater, ReviewJob, Superseded
from bot.journal import Journal
from bot.metrics import Metrics
from bot.pgqueue import ProcrastinateQueue, ReviewRetry, WorkerOptions
from bot.pgstate import Database, PgCacheStrategy, PgPacer, is_postgres
from bot.queue import EmbeddedQueue, QueueOptions
from bot.runner import ReviewJobHandler
from bot.webhooks import EnqueueCommand

log = logging.getLogger("pr_council.serve")
QUEUE_FILE = "queue.sqlite3"


@dataclass
class AppClients:
    """Per-installation clients of one App, and the App's bot login (fetched once)."""

    app: GitHub[AppAuthStrategy]
    login: str | None = None

    async def __call__(self, installation_id: int | None) -> tuple[GitHub[Any], str]:
        """Return a client acting as the installation, and our login."""
        if installation_id is None:
            raise PermanentFailure("the job names no installation")
        if self.login is None:
            self.login = await app_bot_login(self.app)
        return installation(self.app, installation_id), self.login


@dataclass
class ServeOptions:
    """What tests and benchmarks replace; production uses the defaults."""

    cache: BaseCacheStrategy | None = None
    pacer: Pacer = field(default_factory=Pacer)
    queue: QueueOptions = field(default_factory=QueueOptions)
    llm: Callable[[], AnthropicLLM | None] | None = None


def build_app(
    settings: Settings, app_slug: str | None, options: ServeOptions | None = None
) -> FastAPI:
    """Wire the receiver, the durable queue and the review workers together."""
    options = options or ServeOptions()
    secret = _required(settings.webhook_secret, "PR_COUNCIL_WEBHOOK_SECRET")
    if is_postgres(settings.database_url):
        return _enqueue_only(settings, app_slug, options, secret)
    gh = _app(settings, options.cache)
    queue = EmbeddedQueue(
        Journal(settings.state_dir / QUEUE_FILE, options.queue.clock), options.queue
    )
    metrics = Metrics()
    handler = ReviewJobHandler(
        AppClients(gh), settings, llm=options.llm or _llm_factory(settings), pacer=options.pacer
    )
    work = observed(handler, metrics)

    @asynccontextmanager
    async def workers() -> AsyncIterator[None]:
        try:
            await anyio.to_thread.run_sync(warm_up, gh)
            async with queue.running(work):
                yield
        finally:
            await queue.close()

    app = create_app(
        secret=secret,
        queue=queue,
        metrics=metrics,
        app_slug=app_slug,
        lifespan_tasks=workers,
        commands=_commands(gh),
    )
    app.state.queue = queue  # for operators' tooling and tests: jobs(), wait_idle()
    return app


def _enqueue_only(
    settings: Settings, app_slug: str | None, options: ServeOptions, secret: SecretStr
) -> FastAPI:
    """Receive webhooks into PostgreSQL; `pr-council worker` processes do the reviews."""
    queue = _pg_queue(Database(_database_url(settings)), options)
    gh = _app(settings, options.cache or PgCacheStrategy(queue.database))

    @asynccontextmanager
    async def opened() -> AsyncIterator[None]:
        async with queue.opened():
            yield

    app = create_app(
        secret=secret,
        queue=queue,
        metrics=Metrics(),
        app_slug=app_slug,
        lifespan_tasks=opened,
        commands=_commands(gh),
    )
    app.state.queue = queue
    return app


def build_worker(
    settings: Settings, worker: WorkerOptions, options: ServeOptions | None = None
) -> tuple[ProcrastinateQueue, ReviewJobHandler]:
    """Build a worker's queue and handler; tokens and write pacing shared through PostgreSQL."""
    database = Database(_database_url(settings), max_size=worker.concurrency + 4)
    options = options or ServeOptions(
        cache=PgCacheStrategy(database),
        pacer=PgPacer(interval_s=worker.write_interval_s, database=database),
    )
    llm = options.llm or _llm_factory(settings)
    clients = AppClients(_app(settings, options.cache))
    handler = ReviewJobHandler(clients, settings, llm=llm, pacer=options.pacer)
    return _pg_queue(database, options), handler


async def run_worker(
    settings: Settings, worker: WorkerOptions, options: ServeOptions | None = None
) -> None:
    """Review jobs from PostgreSQL until SIGTERM or SIGINT (`pr-council worker`)."""
    queue, handler = build_worker(settings, worker, options)
    await anyio.to_thread.run_sync(warm_up, _app(settings, None))
    async with queue.opened():
        await queue.work(handler, worker)


def _pg_queue(database: Database, options: ServeOptions) -> ProcrastinateQueue:
    """Build the PostgreSQL queue with the embedded queue's retry settings."""
    tuning = options.queue
    retry = ReviewRetry(tuning.max_attempts, tuning.backoff_base_s, tuning.backoff_cap_s)
    return ProcrastinateQueue(database, retry)


def _database_url(settings: Settings) -> str:
    """Return the PostgreSQL URL scale-out needs, or stop with what to set."""
    url = settings.database_url
    if not is_postgres(url):
        raise ConfigError("PR_COUNCIL_DATABASE_URL must be a postgresql:// URL for scale-out")
    return url


async def fetch_slug(settings: Settings, cache: BaseCacheStrategy | None = None) -> str:
    """Authenticate as the App once at startup (a wrong key fails here, not on the first PR)."""
    return (await app_bot_login(_app(settings, cache))).removesuffix("[bot]")


def observed(handler: ReviewJobHandler, metrics: Metrics) -> Handler:
    """Count each job's outcome in the metrics."""

    def posted(outcome: str, review: Any) -> None:
        metrics.observe_review(outcome, review)  # type: ignore[arg-type]

    handler.on_review = posted

    async def run(job: ReviewJob) -> None:
        try:
            await handler(job)
        except Superseded:
            metrics.observe_review("superseded", None)
            raise
        except RetryLater:
            metrics.observe_review("retried", None)
            raise
        except PermanentFailure:
            metrics.observe_review("failed", None)
            raise

    return run


def _commands(gh: GitHub[AppAuthStrategy]) -> Callable[[EnqueueCommand], Any]:
    """Resolve `/council review` to a job at the pull request's current head."""

    async def resolve(command: EnqueueCommand) -> ReviewJob | None:
        client = installation(gh, command.installation_id)
        meta = await fetch_meta(client, PullRef(command.owner, command.repo, command.number))
        return command.job(meta.head_sha) if meta.state == "open" else None

    return resolve


_KEY_SETTINGS = "PR_COUNCIL_PRIVATE_KEY or PR_COUNCIL_PRIVATE_KEY_PATH"


def _app(settings: Settings, cache: BaseCacheStrategy | None) -> GitHub[AppAuthStrategy]:
    """Build the App's client from the settings."""
    app_id = settings.app_id or _missing("PR_COUNCIL_APP_ID")
    key = _required(settings.private_key, _KEY_SETTINGS)
    try:
        return app_client(app_id, key.get_secret_value(), settings.github_api_url, cache=cache)
    except ValueError as exc:
        raise ConfigError(
            f"the App's private key ({_KEY_SETTINGS}) is {exc}: use the .pem file"
            " GitHub generated in the App's settings"
        ) from None


def _llm_factory(settings: Settings) -> Callable[[], AnthropicLLM | None]:
    """Share one model client (one connection pool) across reviews when a key is set."""
    key = settings.anthropic_api_key
    if key is None:
        return lambda: None
    llm = anthropic_llm(
        api_key=key.get_secret_value(),
        model=settings.model,
        fallbacks=settings.fallback_models,
        base_url=settings.anthropic_base_url,
        prices=settings.prices,
    )
    return lambda: llm


def _required(value: SecretStr | None, name: str) -> SecretStr:
    """Return a required secret setting, or stop with what to set."""
    return value if value is not None and value.get_secret_value() else _missing(name)


def _missing(name: str) -> Any:
    """Refuse to start without a setting."""
    raise ConfigError(f"pr-council serve needs {name}")
