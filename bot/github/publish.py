"""Publish a review on GitHub: inline comments once, the summary edited in place, a check run."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from githubkit import GitHub
from githubkit.exception import RateLimitExceeded, RequestFailed
from githubkit.rest.paginator import Paginator
from githubkit.versions.latest.models import IssueComment

from agents.model import ChangedFile, Finding, Review, at_least
from agents.render import COMMENT_LIMIT, SUMMARY_MARKER, render_inline_comment, render_markdown
from bot.config import FailOn
from bot.github.client import Pacer, status_of
from bot.github.snapshot import Snapshot
from bot.github.state import state_marker

log = logging.getLogger("pr_council.publish")
T = TypeVar("T")

CHECK_NAME = "pr-council"
# "Update a check run": at most 50 annotations per request; more go in further updates.
ANNOTATIONS_PER_REQUEST = 50
MAX_ANNOTATIONS = 1_000
_STATE_CHARS = 20_000
Conclusion = Literal["success", "neutral", "failure"]
_LEVEL: dict[str, str] = {
    "critical": "failure",
    "major": "failure",
    "minor": "warning",
    "nit": "notice",
}


@dataclass(frozen=True)
class Published:
    """What a publication left on GitHub."""

    summary_id: int | None
    summary_url: str | None
    review_id: int | None = None
    inline_posted: int = 0
    inline_moved: int = 0
    check_run_id: int | None = None
    notes: tuple[str, ...] = ()


@dataclass
class Publisher:
    """Publishes reviews through one client; writes are paced per installation."""

    gh: GitHub[Any]
    pacer: Pacer = field(default_factory=Pacer)
    pace_key: str = "token"
    checks: bool = True

    async def publish(
        self, snap: Snapshot, review: Review, fail_on: FailOn, *, quiet: bool = False
    ) -> Published:
        """Post new inline comments, upsert the summary, then report the check run.

        With `quiet`, a clean review of a pull request we never commented on posts no summary.
        """
        review, review_id, posted, moved = await self._inline(snap, review)
        if quiet and not review.findings and snap.ours.summary_id is None:
            check_id, notes = await self._check(snap, review, fail_on)
            return Published(None, None, None, 0, 0, check_id, ("quiet: nothing to say",))
        summary_id, url = await self._summary(snap, review)
        check_id, notes = await self._check(snap, review, fail_on)
        return Published(summary_id, url, review_id, posted, moved, check_id, notes)

    async def _write(self, request: Callable[[], Awaitable[T]]) -> T:
        """Send one content-creating request, paced."""
        return await self.pacer.write(self.pace_key, request)

    # --- inline comments ----------------------------------------------------------------

    async def _inline(self, snap: Snapshot, review: Review) -> tuple[Review, int | None, int, int]:
        """Post one review with the inline comments not posted before; on 422 move them."""
        fresh = [f for f in review.inline if f.fingerprint not in snap.ours.posted]
        comments = [inline_comment(f, snap.change.diff.file(f.path)) for f in fresh]
        if not comments:
            return review, None, 0, 0
        data = {
            "commit_id": snap.meta.head_sha,
            "event": "COMMENT",
            "body": f"pr-council: {len(comments)} new comment(s); the summary is in the thread.",
            "comments": comments,
        }
        try:
            created = await self._write(lambda: self._create_review(snap, data))
        except RequestFailed as exc:
            if status_of(exc) != 422:
                raise
            # GitHub rejects the whole review when one line is not part of the diff.
            log.warning("%s: inline comments rejected (422); moved to the summary", snap.ref)
            return _moved_to_summary(review, fresh), None, 0, len(fresh)
        return review, created, len(fresh), 0

    async def _create_review(self, snap: Snapshot, data: dict[str, Any]) -> int | None:
        """Create the review; after a 5xx, look for it before anyone posts it again."""
        ref = snap.ref
        url = f"/repos/{ref.owner}/{ref.repo}/pulls/{ref.number}/reviews"
        try:
            response = await self.gh.arequest("POST", url, json=data)
        except RequestFailed as exc:
            if (status_of(exc) or 0) < 500 or not await self._review_landed(snap, data):
                raise
            return None
        return _id(response.json())

    async def _review_landed(self, snap: Snapshot, data: dict[str, Any]) -> bool:
        """Tell whether a review whose request failed was stored anyway (by its markers)."""
        wanted = {c["body"] for c in data["comments"]}
        ref = snap.ref
        found: Paginator[Any] = self.gh.rest.paginate(
            self.gh.rest.pulls.async_list_review_comments,
            owner=ref.owner,
            repo=ref.repo,
            pull_number=ref.number,
        )
        bodies = {c.body async for c in found}
        return wanted <= bodies

    # --- summary ------------------------------------------------------------------------

    async def _summary(self, snap: Snapshot, review: Review) -> tuple[int, str]:
        """Edit our summary comment in place, or create it."""
        body = summary_body(review, snap.meta.head_sha)
        if snap.ours.summary_id is not None:
            updated = await self._update_summary(snap, snap.ours.summary_id, body)
            if updated is not None:
                return updated
        return await self._create_summary(snap, body)

    async def _update_summary(
        self, snap: Snapshot, comment_id: int, body: str
    ) -> tuple[int, str] | None:
        """Edit the summary; None when it was deleted meanwhile."""
        ref = snap.ref
        try:
            response = await self._write(
                lambda: self.gh.rest.issues.async_update_comment(
                    ref.owner, ref.repo, comment_id, body=body
                )
            )
        except RequestFailed as exc:
            if status_of(exc) == 404:
                return None
            raise
        return response.parsed_data.id, response.parsed_data.html_url

    async def _create_summary(self, snap: Snapshot, body: str) -> tuple[int, str]:
        """Create the summary; after a 5xx, find it by its marker instead of posting twice."""
        ref = snap.ref
        try:
            response = await self._write(
                lambda: self.gh.rest.issues.async_create_comment(
                    ref.owner, ref.repo, ref.number, body=body
                )
            )
        except RequestFailed as exc:
            landed = await self._find_summary(snap, body) if (status_of(exc) or 0) >= 500 else None
            if landed is None:
                raise
            return landed
        return response.parsed_data.id, response.parsed_data.html_url

    async def _find_summary(self, snap: Snapshot, body: str) -> tuple[int, str] | None:
        """Return our summary comment with exactly this body, if GitHub stored it."""
        ref = snap.ref
        comments: Paginator[IssueComment] = self.gh.rest.paginate(
            self.gh.rest.issues.async_list_comments,
            owner=ref.owner,
            repo=ref.repo,
            issue_number=ref.number,
        )
        async for c in comments:
            if c.body == body:
                return c.id, c.html_url
        return None

    # --- check run ----------------------------------------------------------------------

    async def _check(
        self, snap: Snapshot, review: Review, fail_on: FailOn
    ) -> tuple[int | None, tuple[str, ...]]:
        """Report a check run with annotations; without the permission, say so and go on."""
        if not self.checks:
            return None, ()
        batches = _batches(check_annotations(review.findings))
        try:
            check_id = await self._create_check(snap, review, fail_on, batches[0])
            for batch in batches[1:]:
                await self._update_check(snap, check_id, review, fail_on, batch)
        except RequestFailed as exc:
            if status_of(exc) != 403 or isinstance(exc, RateLimitExceeded):
                raise
            # Only GitHub Apps (and the Actions token) may create check runs ("Checks" docs).
            return None, ("check run not created: this token may not write checks",)
        return check_id, ()

    async def _create_check(
        self, snap: Snapshot, review: Review, fail_on: FailOn, batch: list[dict[str, Any]]
    ) -> int:
        """Create the completed check run with the first annotations."""
        ref, external_id = snap.ref, uuid.uuid4().hex
        data = {
            "name": CHECK_NAME,
            "head_sha": snap.meta.head_sha,
            "status": "completed",
            "conclusion": conclusion(review, fail_on),
            "external_id": external_id,
            "output": check_output(review, fail_on, batch),
        }
        url = f"/repos/{ref.owner}/{ref.repo}/check-runs"
        try:
            response = await self._write(lambda: self.gh.arequest("POST", url, json=data))
        except RequestFailed as exc:
            found = (
                await self._find_check(snap, external_id) if (status_of(exc) or 0) >= 500 else None
            )
            if found is None:
                raise
            return found
        return _id(response.json())

    async def _find_check(self, snap: Snapshot, external_id: str) -> int | None:
        """Return the check run a failed request created anyway, by its external id."""
        ref = snap.ref
        runs = await self.gh.rest.checks.async_list_for_ref(
            ref.owner, ref.repo, snap.meta.head_sha, check_name=CHECK_NAME
        )
        return next(
            (r.id for r in runs.parsed_data.check_runs if r.external_id == external_id), None
        )

    async def _update_check(
        self,
        snap: Snapshot,
        check_id: int,
        review: Review,
        fail_on: FailOn,
        batch: list[dict[str, Any]],
    ) -> None:
        """Add one more batch of annotations (GitHub appends them)."""
        ref = snap.ref
        data = {"output": check_output(review, fail_on, batch)}
        url = f"/repos/{ref.owner}/{ref.repo}/check-runs/{check_id}"
        await self._write(lambda: self.gh.arequest("PATCH", url, json=data))


def _id(body: object) -> int:
    """Return the `id` of a created object."""
    if isinstance(body, dict) and isinstance(body.get("id"), int):
        return int(body["id"])
    raise ValueError("GitHub's answer has no id")


def inline_comment(finding: Finding, changed: ChangedFile | None) -> dict[str, Any]:
    """Build one review comment, spanning the suggestion's lines when GitHub allows it."""
    assert finding.line is not None
    comment: dict[str, Any] = {"path": finding.path, "line": finding.line, "side": "RIGHT"}
    end = finding.end_line or finding.line
    span = range(finding.line, end + 1)
    if end > finding.line and changed is not None and all(changed.commentable(n) for n in span):
        comment.update(start_line=finding.line, start_side="RIGHT", line=end)
    elif end > finding.line:
        # A suggestion replaces the commented lines: on one line it would replace too little.
        finding = finding.model_copy(update={"suggestion": None})
    comment["body"] = render_inline_comment(finding)
    return comment


def _moved_to_summary(review: Review, moved: Sequence[Finding]) -> Review:
    """Place rejected inline findings in the summary and say why."""
    prints = {f.fingerprint for f in moved}
    findings = tuple(
        f.model_copy(update={"placement": "summary"}) if f.fingerprint in prints else f
        for f in review.findings
    )
    note = f"{len(moved)} inline comments were rejected by GitHub (422) and are listed here."
    return review.model_copy(update={"findings": findings, "notes": (*review.notes, note)})


def summary_body(review: Review, head_sha: str) -> str:
    """Render the summary, the commit it reviewed (it is edited in place) and the hidden state."""
    footer = f"<sub>Reviewed at commit {head_sha[:7]}.</sub>\n\n" + state_marker(
        review.findings, max_chars=_STATE_CHARS
    )
    body = render_markdown(review, max_chars=COMMENT_LIMIT - len(footer) - 4)
    assert SUMMARY_MARKER in body
    return f"{body.rstrip()}\n\n{footer}\n"


def conclusion(review: Review, fail_on: FailOn) -> Conclusion:
    """Fail at `fail_on`; otherwise neutral with findings, success without."""
    if fail_on != "never" and any(at_least(f.severity, fail_on) for f in review.findings):
        return "failure"
    return "neutral" if review.findings else "success"


def check_annotations(findings: Sequence[Finding]) -> list[dict[str, Any]]:
    """Return check-run annotations for the findings that have a line."""
    out = []
    for f in findings[:MAX_ANNOTATIONS]:
        if f.line is None:
            continue
        out.append(
            {
                "path": f.path,
                "start_line": f.line,
                "end_line": max(f.line, f.end_line or f.line),
                "annotation_level": _LEVEL[f.severity],
                "title": f"{f.severity}: {f.title}"[:255],
                "message": (f.body or f.title)[:4_000],
            }
        )
    return out


def _batches(items: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Split annotations into request-sized batches (always at least one)."""
    size = ANNOTATIONS_PER_REQUEST
    return [items[i : i + size] for i in range(0, len(items), size)] or [[]]


def check_output(review: Review, fail_on: FailOn, batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Build the check run's output: a title, a short summary, annotations."""
    counts = {s: sum(f.severity == s for f in review.findings) for s in _LEVEL}
    title = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no findings"
    summary = (
        f"pr-council found {len(review.findings)} findings ({title}); fail_on: {fail_on}. "
        "The full review is in the pull request's pr-council comment."
    )
    return {"title": title, "summary": summary, "annotations": batch}
