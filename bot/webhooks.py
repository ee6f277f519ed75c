"""Verify and route GitHub webhook deliveries to review jobs: pure functions, no I/O (DESIGN.md §6).

`route` answers one of five outcomes, and raises nothing but `WebhookError`:

=====================  ============================================  =================================
event                  action / condition                            outcome
=====================  ============================================  =================================
pull_request           opened, synchronize, reopened                 Enqueue (drafts: Ignored unless
                                                                     review_drafts)
pull_request           ready_for_review                              Enqueue
pull_request           any other action, or the PR is closed         Ignored
issue_comment          created, on a PR, `/council review` or        EnqueueCommand
                       `@<app-slug> review` by OWNER/MEMBER/
                       COLLABORATOR
issue_comment          by a bot (ours included), on a plain issue,   Ignored
                       no command, no write access, not `created`
ping                                                                 Pong
installation,          any                                           Logged
installation_repositories
anything else                                                        Ignored
=====================  ============================================  =================================

A delivery without an `installation` cannot be reviewed as the App: it is Ignored (200), not a
failure. A body that is not a JSON object is a `WebhookError(400)`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import from_json

from bot.jobs import ReviewJob, Trigger

SIGNATURE_HEADER: Final = "X-Hub-Signature-256"

# "Validating webhook deliveries": the header is `sha256=` and the hex HMAC-SHA256 of the raw body.
_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")
_TRIGGERS: Final[dict[str, Trigger]] = {
    "opened": "opened",
    "synchronize": "synchronize",
    "reopened": "reopened",
    "ready_for_review": "ready_for_review",
}
# author_association values that mean write access to the repository (DESIGN.md §6).
_WRITERS: Final = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_TEXT_MAX = 200
_M = TypeVar("_M", bound=BaseModel)


class WebhookError(Exception):
    """A delivery the receiver refuses, with the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Routed(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # The payload's `action`, for logs (None when it has none).
    action: str | None = None


class Enqueue(_Routed):
    """Queue a review of this job."""

    job: ReviewJob


class EnqueueCommand(_Routed):
    """Queue a review asked for in a comment, once the receiver has resolved the head SHA.

    An issue_comment payload carries no head SHA, and `ReviewJob` needs one: resolving it
    takes a GitHub call, which must happen outside the request path (see `bot.app`).
    """

    owner: str
    repo: str
    number: int
    installation_id: int
    requested_by: str
    delivery_id: str

    @property
    def target(self) -> str:
        """Name the pull request in logs and answers."""
        return f"{self.owner}/{self.repo}#{self.number}"

    def job(self, head_sha: str) -> ReviewJob:
        """Return the review job for the pull request at `head_sha`."""
        return ReviewJob(
            owner=self.owner,
            repo=self.repo,
            number=self.number,
            head_sha=head_sha,
            installation_id=self.installation_id,
            trigger="command",
            delivery_id=self.delivery_id,
            requested_by=self.requested_by,
        )


class Pong(_Routed):
    """Answer GitHub's ping."""

    zen: str = ""


class Ignored(_Routed):
    """Acknowledge and do nothing, for the stated reason."""

    reason: str


class Logged(_Routed):
    """Acknowledge an installation change worth a log line."""

    reason: str


Routed = Enqueue | EnqueueCommand | Pong | Ignored | Logged


def verify_signature(secret: bytes, body: bytes, header: str | None) -> None:
    """Raise WebhookError(401) unless `header` is the HMAC-SHA256 of `body` under `secret`."""
    # "Validating webhook deliveries": only X-Hub-Signature-256 counts; the legacy sha1
    # X-Hub-Signature is never read, so a delivery signed with it alone is refused.
    if header is None:
        raise WebhookError(401, f"missing {SIGNATURE_HEADER}")
    match = _SIGNATURE.fullmatch(header)
    if match is None:
        raise WebhookError(401, f"malformed {SIGNATURE_HEADER} (expected sha256=<64 hex digits>)")
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, match.group(1).lower()):
        raise WebhookError(401, f"{SIGNATURE_HEADER} does not match the body")


def route(
    event: str,
    delivery_id: str,
    payload: bytes,
    *,
    app_slug: str | None,
    review_drafts: bool = False,
) -> Routed:
    """Decide what one verified delivery asks for; raise only WebhookError."""
    delivery = _Delivery(event, delivery_id, payload, app_slug, review_drafts)
    handler = _HANDLERS.get(event)
    if handler is None:
        return delivery.ignored(f"event {event!r} is not handled", delivery.action)
    return handler(delivery)


def event_label(event: str) -> str:
    """Return the event name for metrics: one we handle, else "other" (bounded cardinality)."""
    return event if event in _HANDLERS else "other"


def has_command(body: str, app_slug: str | None) -> bool:
    """Tell whether a line of `body`, outside quotes and code blocks, asks for a review."""
    pattern = _command_pattern(app_slug)
    return any(pattern.match(line) for line in _prose_lines(body))


@dataclass
class _Delivery:
    event: str
    delivery_id: str
    payload: bytes
    app_slug: str | None
    review_drafts: bool

    @functools.cached_property
    def data(self) -> dict[str, Any]:
        """Return the whole payload as a JSON object, or raise WebhookError(400)."""
        return _decode(self.payload)

    @property
    def action(self) -> str | None:
        """Return the payload's `action`, cut for the logs (decodes the whole payload)."""
        return _text(self.data.get("action"))

    def ignored(self, reason: str, action: str | None) -> Ignored:
        """Return an Ignored outcome for this delivery."""
        return Ignored(reason=reason, action=action)


def _decode(payload: bytes) -> dict[str, Any]:
    """Parse the body as a JSON object or raise WebhookError(400)."""
    try:
        data = _loads(payload)
    except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, absurd nesting
        # GitHub Apps always send application/json; a repository hook may be set to form data.
        raise WebhookError(400, "the body is not JSON (use content type application/json)") from exc
    if not isinstance(data, dict):
        raise WebhookError(400, "the body is not a JSON object")
    return data


def _loads(payload: bytes) -> Any:
    """Parse JSON with pydantic-core (2.4x faster than `json`), else `json` for what it refuses.

    pydantic-core refuses a few documents `json` reads (a BOM, UTF-16, lone surrogate escapes,
    nesting over 200): the fallback keeps their answer what it was.
    """
    try:
        return from_json(payload)
    except ValueError:
        return json.loads(payload)


def _text(value: object) -> str | None:
    """Return a payload string, cut to a loggable length; None for anything else."""
    return value[:_TEXT_MAX] if isinstance(value, str) else None


# --- the fields we use ---
#
# A delivery is read in one pass over its bytes into models of just the fields routing uses
# (pydantic-core skips the rest): ~25 us for a 26 KB pull_request payload, against ~200 us to
# decode it all and validate githubkit's model of the event, which was a quarter of the
# receiver's CPU per delivery under a burst (benchmarks/README.md, webhook.py). githubkit's
# webhook models stay the reference: tests/test_webhooks.py checks that they and these read
# the same values from every sample payload and from generated variants, and these models are
# more lenient (a payload githubkit refuses for a field we do not use is still routed).


class _Lenient(BaseModel):
    model_config = ConfigDict(frozen=True)


class _Account(_Lenient):
    login: str
    type: str | None = "User"  # githubkit allows null too


class _Repository(_Lenient):
    name: str
    owner: _Account


class _Installation(_Lenient):
    id: int


class _Head(_Lenient):
    sha: str


class _PullRequest(_Lenient):
    number: int
    head: _Head
    state: str = "open"
    draft: bool | None = False


class _PullRequestDelivery(_Lenient):
    # Any type: a non-string action is logged as None and ignored, not a malformed delivery.
    action: object = None
    repository: _Repository
    pull_request: _PullRequest
    installation: _Installation | None = None


class _Issue(_Lenient):
    number: int
    # Present only when the issue is a pull request ("Webhook events and payloads": issue_comment).
    pull_request: dict[str, Any] | None = None


class _Comment(_Lenient):
    body: str | None = ""
    user: _Account | None = None
    author_association: str = "NONE"


class _CommentDelivery(_Lenient):
    action: object = None
    repository: _Repository
    issue: _Issue
    comment: _Comment
    installation: _Installation | None = None


def _read(delivery: _Delivery, model: type[_M]) -> _M | str:
    """Read the fields we use from the bytes, else from the decoded payload; else say why not.

    The second reading decodes with `json` too (which reads a few documents pydantic-core's
    parser refuses, such as a BOM) and raises WebhookError(400) when the body is not JSON.
    """
    with contextlib.suppress(ValidationError):
        return model.model_validate_json(delivery.payload)
    try:
        return model.model_validate(delivery.data)
    except ValidationError as exc:
        return f"{delivery.event} delivery lacks a valid {_first_error(exc)}"


def _first_error(exc: ValidationError) -> str:
    """Name the first field that failed validation, as a dotted path."""
    errors = exc.errors(include_url=False, include_input=False)
    return ".".join(str(part) for part in errors[0]["loc"]) if errors else "payload"


# --- pull_request ---


def _pull_request(delivery: _Delivery) -> Routed:
    """Queue a review for a pull request that was opened or moved, unless it should be skipped."""
    facts = _read(delivery, _PullRequestDelivery)
    action = delivery.action if isinstance(facts, str) else _text(facts.action)
    trigger = _TRIGGERS.get(action or "")
    if trigger is None:
        return delivery.ignored(f"pull_request action {action!r} does not ask for a review", action)
    if isinstance(facts, str):
        return delivery.ignored(facts, action)
    skip = _pull_request_skip(facts, trigger, delivery.review_drafts)
    return delivery.ignored(skip, action) if skip else _enqueue(delivery, facts, trigger)


def _pull_request_skip(facts: _PullRequestDelivery, trigger: Trigger, drafts: bool) -> str | None:
    """Return why this pull request event does not get a review, or None."""
    checks = (
        (facts.pull_request.state == "closed", "the pull request is closed"),
        (facts.installation is None, "no installation in the delivery (not sent to the App)"),
        (
            bool(facts.pull_request.draft) and trigger != "ready_for_review" and not drafts,
            "draft pull request (reviewed once marked ready for review)",
        ),
    )
    return next((reason for failed, reason in checks if failed), None)


def _enqueue(delivery: _Delivery, facts: _PullRequestDelivery, trigger: Trigger) -> Routed:
    """Return the review job for the pull request, or why it cannot be one."""
    installation = facts.installation.id if facts.installation else None
    try:
        job = ReviewJob(
            owner=facts.repository.owner.login,
            repo=facts.repository.name,
            number=facts.pull_request.number,
            head_sha=facts.pull_request.head.sha,
            installation_id=installation,
            trigger=trigger,
            delivery_id=delivery.delivery_id,
        )
    except ValidationError as exc:  # e.g. a SHA-256 repository's 64-hex head commit
        reason = f"cannot queue a review: invalid {_first_error(exc)}"
        return delivery.ignored(reason, trigger)
    return Enqueue(job=job, action=trigger)


# --- issue_comment ---


def _issue_comment(delivery: _Delivery) -> Routed:
    """Turn a review command from someone with write access into a command to resolve."""
    facts = _read(delivery, _CommentDelivery)
    action = delivery.action if isinstance(facts, str) else _text(facts.action)
    if action != "created":
        return delivery.ignored(f"issue_comment action {action!r} is not a new command", action)
    if isinstance(facts, str):
        return delivery.ignored(facts, action)
    reason = _comment_skip(facts, delivery.app_slug)
    # _comment_skip refuses a missing author or installation; repeated here for the type checker.
    if reason or facts.comment.user is None or facts.installation is None:
        return delivery.ignored(reason or "comment without an author or installation", action)
    return EnqueueCommand(
        owner=facts.repository.owner.login,
        repo=facts.repository.name,
        number=facts.issue.number,
        installation_id=facts.installation.id,
        requested_by=facts.comment.user.login,
        delivery_id=delivery.delivery_id,
        action=action,
    )


def _comment_skip(facts: _CommentDelivery, app_slug: str | None) -> str | None:
    """Return why this comment does not queue a review, or None."""
    user = facts.comment.user
    login = user.login if user else "ghost"
    checks = (
        (user is None or _is_bot(user), "comment by a bot (the bot ignores bots, itself included)"),
        (facts.issue.pull_request is None, "comment on an issue, not a pull request"),
        (not has_command(facts.comment.body or "", app_slug), "no review command in the comment"),
        (
            facts.comment.author_association not in _WRITERS,
            f"{login} ({facts.comment.author_association}) needs write access to ask for a review",
        ),
        (facts.installation is None, "no installation in the delivery (not sent to the App)"),
    )
    return next((reason for failed, reason in checks if failed), None)


def _is_bot(user: _Account) -> bool:
    """Tell whether an account is a bot: GitHub Apps comment as `<slug>[bot]`, type Bot."""
    return user.type == "Bot" or user.login.lower().endswith("[bot]")


@functools.lru_cache(maxsize=8)
def _command_pattern(app_slug: str | None) -> re.Pattern[str]:
    """Match a command at the start of a line: `/council review` or `@<app-slug> review`."""
    names = [r"/council"]
    if app_slug:
        names.append(rf"@{re.escape(app_slug)}(?:\[bot\])?")
    # Up to three spaces of indentation: four make a Markdown code block.
    return re.compile(rf" {{0,3}}(?:{'|'.join(names)})[ \t]+review(?![\w-])", re.IGNORECASE)


def _prose_lines(body: str) -> Iterator[str]:
    """Yield the lines of a Markdown comment that are neither quoted nor in a fenced block."""
    fence: str | None = None
    for line in body.splitlines():
        marker = _FENCE.match(line)
        if fence is not None:
            closes = marker is not None and marker.group(1).startswith(fence)
            fence = None if closes else fence
        elif marker is not None:
            fence = marker.group(1)
        elif not line.lstrip().startswith(">"):
            yield line


# --- ping and installations ---


def _ping(delivery: _Delivery) -> Routed:
    """Answer GitHub's ping (sent when a hook or an App is created)."""
    return Pong(zen=_text(delivery.data.get("zen")) or "")


def _installation_change(delivery: _Delivery) -> Routed:
    """Note who installed, changed or removed the App."""
    installation = delivery.data.get("installation")
    account = installation.get("account") if isinstance(installation, dict) else None
    login = _text(account.get("login")) if isinstance(account, dict) else None
    who = login or "an unknown account"
    return Logged(reason=f"{delivery.event} {delivery.action} by {who}", action=delivery.action)


_HANDLERS: Final[dict[str, Callable[[_Delivery], Routed]]] = {
    "pull_request": _pull_request,
    "issue_comment": _issue_comment,
    "ping": _ping,
    "installation": _installation_change,
    "installation_repositories": _installation_change,
}
