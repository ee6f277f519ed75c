"""Review a pull request through the API: the job handler App mode runs, shared with the CLI."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from githubkit import GitHub
from githubkit.exception import GitHubException

from agents.llm import AnthropicLLM
from agents.model import Mode, Review
from agents.orchestrator import ProgressHook
from bot.config import Settings
from bot.github.client import Pacer, PullRef, classify
from bot.github.publish import Published, Publisher
from bot.github.snapshot import Snapshot, fetch_meta, fetch_snapshot
from bot.jobs import RetryLater, ReviewJob, Superseded
from bot.pipeline import build_context, run_review

log = logging.getLogger("pr_council.review")
_MAX_HEAD_MOVES = 3

# Who the job acts as: a client for the installation, and the login our comments carry.
Clients = Callable[[int | None], Awaitable[tuple[GitHub[Any], str]]]
# Called once per finished job: outcome ("posted", "superseded", "failed") and the review.
ReviewHook = Callable[[str, Review | None], None]


async def review_snapshot(
    snap: Snapshot,
    settings: Settings,
    *,
    mode: Mode = "parallel",
    llm: AnthropicLLM | None = None,
    progress: ProgressHook | None = None,
    model_note: str = "analyzers only: no ANTHROPIC_API_KEY set",
) -> Review:
    """Run the council on a fetched pull request; say why no model took part, if none did."""
    ctx = build_context(snap.change, snap.tree, snap.config)
    price = llm.dearest if llm is not None else None
    review = await run_review(
        ctx, mode=mode, progress=progress, llm=llm, limits=settings.limits, price=price
    )
    notes = list(review.notes)
    if snap.config_error:
        notes.append(f"repository config ignored, defaults used: {snap.config_error}")
    if llm is None:
        notes.append(model_note)
    return review.model_copy(update={"notes": tuple(notes)})


@dataclass
class ReviewJobHandler:
    """The queue's handler: snapshot, council, publish; GitHub failures become decisions."""

    clients: Clients
    settings: Settings
    llm: Callable[[], AnthropicLLM | None] = lambda: None
    pacer: Pacer = field(default_factory=Pacer)
    mode: Mode = "parallel"
    on_review: ReviewHook | None = None

    async def __call__(self, job: ReviewJob) -> None:
        """Review one job's pull request and publish, unless the PR moved on."""
        try:
            published = await self._run(job)
        except GitHubException as exc:
            decision = classify(exc)
            log.warning("%s: %s", job.label, decision)
            raise decision from exc
        log.info("%s: posted summary %s", job.label, published.summary_url)

    async def _run(self, job: ReviewJob) -> Published:
        """Review the pull request's current head and publish it."""
        gh, login = await self.clients(job.installation_id)
        # One HTTP client (and connection pool) for the whole review: by default githubkit
        # builds one per request, ~1 ms of event-loop CPU each and a new TLS connection.
        async with gh:
            return await self._review(gh, login, job)

    async def _review(self, gh: GitHub[Any], login: str, job: ReviewJob) -> Published:
        """Review the head until it holds still, then publish.

        Deliveries can arrive out of order (a burst, a redelivery): an older push's job may
        have superseded the newer one. So a job reviews whatever the head is now, and if the
        head moves while it reviews, it starts over on the new head (a few times at most).
        """
        ref = PullRef(job.owner, job.repo, job.number)
        for _ in range(_MAX_HEAD_MOVES):
            snap = await fetch_snapshot(gh, ref, login)
            _still_open(snap.meta.state)
            if snap.meta.head_sha != job.head_sha:
                log.info("%s: head is now %s; reviewing it", job.label, snap.meta.head_sha[:7])
            review = await review_snapshot(snap, self.settings, mode=self.mode, llm=self.llm())
            # The review took a while: one GET is cheaper than publishing an outdated head.
            now = await fetch_meta(gh, ref)
            _still_open(now.state)
            if now.head_sha == snap.meta.head_sha:
                return await self._publish(gh, job, snap, review)
        raise RetryLater("the head kept moving during the review", 30.0)

    async def _publish(
        self, gh: GitHub[Any], job: ReviewJob, snap: Snapshot, review: Review
    ) -> Published:
        """Publish the review, paced per installation."""
        fail_on = snap.config.fail_on or "never"
        publisher = Publisher(gh, self.pacer, str(job.installation_id or "token"))
        published = await publisher.publish(snap, review, fail_on, quiet=snap.config.quiet)
        if self.on_review is not None:
            self.on_review("posted", review)
        return published


def _still_open(state: str) -> None:
    """Stop when the pull request was closed."""
    if state != "open":
        raise Superseded("the pull request is closed")
