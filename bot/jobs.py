"""Review jobs and the queue contract shared by the webhook receiver, the queues and workers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

# What asked for the review: a pull_request action, a comment command, or a person at a CLI.
Trigger = Literal["opened", "synchronize", "reopened", "ready_for_review", "command", "cli"]
# queued -> running -> posted | superseded | failed; running -> queued again on a retry.
JobState = Literal["queued", "running", "posted", "superseded", "failed"]
Submitted = Literal["queued", "duplicate_delivery", "duplicate_job"]


class ReviewJob(BaseModel):
    """One requested review of one pull request at one head commit (probot's context)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    owner: str = Field(min_length=1, max_length=100)
    repo: str = Field(min_length=1, max_length=100)
    # Bounded so any id GitHub can send fits a 64-bit database column.
    number: int = Field(ge=1, le=2**63 - 1)
    # SHA-1 object names, or SHA-256 ones in repositories that use them.
    head_sha: str = Field(pattern=r"^[0-9a-f]{40}([0-9a-f]{24})?$")
    installation_id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    trigger: Trigger = "opened"
    delivery_id: str | None = Field(default=None, max_length=100)
    requested_by: str | None = None

    @property
    def pr_key(self) -> str:
        """Identify the pull request (GitHub names are case-insensitive)."""
        return f"{self.owner}/{self.repo}#{self.number}".lower()

    @property
    def label(self) -> str:
        """Name the job in logs and messages."""
        return f"{self.owner}/{self.repo}#{self.number}@{self.head_sha[:7]}"


class JobRecord(BaseModel):
    """A job as the queue keeps it."""

    model_config = ConfigDict(frozen=True)

    id: int
    job: ReviewJob
    state: JobState
    attempts: int = 0
    error: str | None = None


class RetryLater(Exception):
    """Put the job back in the queue and try again after `delay_s` (rate limits, 5xx)."""

    def __init__(self, reason: str, delay_s: float) -> None:
        super().__init__(reason)
        self.delay_s = delay_s


class PermanentFailure(Exception):
    """The job cannot succeed by retrying (no access, PR gone): keep it as failed."""


class Superseded(Exception):
    """The pull request moved on (a newer head SHA): stop without posting."""


# A job handler: review and publish; raise RetryLater, PermanentFailure or Superseded.
Handler = Callable[[ReviewJob], Awaitable[None]]


class ReviewQueue(Protocol):
    """Where the webhook receiver puts jobs and workers take them (DESIGN.md §6)."""

    async def submit(self, job: ReviewJob) -> Submitted:
        """Queue a job unless its delivery or its (PR, head SHA) was seen; supersede older ones."""
        ...

    async def depth(self) -> int:
        """Return how many jobs are queued or running."""
        ...
