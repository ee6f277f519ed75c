"""`pr-council action`: the App's pipeline inside a GitHub Actions job.

Everything about the pull request comes through the API, never from a checkout, so the same
code is safe under `pull_request_target` (GitHub docs, "Keeping your GitHub Actions and
workflows secure": never run a fork's code with a privileged token).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from githubkit import GitHub, TokenAuthStrategy
from githubkit.exception import GitHubException, RateLimitExceeded, RequestFailed
from pydantic import BaseModel, ConfigDict, ValidationError

from agents.llm import AnthropicLLM
from agents.model import SEVERITIES, Finding, Review, at_least
from agents.render import render_json, render_markdown, render_sarif
from bot.config import ActionEnv, ConfigError, FailOn, Settings
from bot.github.client import PullRef, describe, token_client, token_identity
from bot.github.publish import Published, Publisher
from bot.github.snapshot import Snapshot, fetch_snapshot
from bot.runner import review_snapshot
from bot.webhooks import has_command

# Workflow-command annotations shown per step: GitHub displays at most 10 of each level.
MAX_ANNOTATIONS = 10
_WRITERS = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})
_LEVEL = {"critical": "error", "major": "error", "minor": "warning", "nit": "notice"}


class ActionError(ValueError):
    """The action cannot run: a one-line message, exit 2."""


# --- the event -----------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class _Owner(_Model):
    login: str


class _Repo(_Model):
    name: str
    owner: _Owner


class _Head(_Model):
    sha: str


class _Pull(_Model):
    number: int
    head: _Head


class _Issue(_Model):
    number: int
    pull_request: dict[str, Any] | None = None


class _User(_Model):
    login: str
    type: str = "User"


class _Comment(_Model):
    body: str | None = ""
    user: _User
    author_association: str = "NONE"


class _PullEvent(_Model):
    repository: _Repo
    pull_request: _Pull


class _CommentEvent(_Model):
    repository: _Repo
    issue: _Issue
    comment: _Comment


@dataclass(frozen=True)
class Target:
    """The pull request to review, and the head the event saw (None: ask the API)."""

    ref: PullRef
    head_sha: str | None


def target_of(event_name: str, payload: object) -> Target | str:
    """Return what to review for this event, or a polite reason not to."""
    try:
        if event_name in ("pull_request", "pull_request_target"):
            event = _PullEvent.model_validate(payload)
            pull = event.pull_request
            return Target(_ref(event.repository, pull.number), pull.head.sha)
        if event_name == "issue_comment":
            return _command_target(_CommentEvent.model_validate(payload))
    except ValidationError as exc:
        field = ".".join(str(p) for p in exc.errors()[0]["loc"])
        raise ActionError(f"the {event_name} event lacks {field}") from None
    return f"nothing to review for a {event_name} event"


def _command_target(event: _CommentEvent) -> Target | str:
    """Accept `/council review` on a pull request from someone with write access."""
    comment = event.comment
    if event.issue.pull_request is None or not has_command(comment.body or "", None):
        return "the comment is not a /council review command on a pull request"
    if comment.user.type == "Bot" or comment.user.login.endswith("[bot]"):
        return "comments by bots are ignored"
    if comment.author_association not in _WRITERS:
        return (
            f"/council review needs write access to the repository; `{comment.user.login}` "
            f"is {comment.author_association.lower()}, so no review was run"
        )
    return Target(_ref(event.repository, event.issue.number), None)


def _ref(repo: _Repo, number: int) -> PullRef:
    """Name a pull request."""
    return PullRef(repo.owner.login, repo.name, number)


# --- running -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What the action did: the review, where it went, and whether writes were refused."""

    review: Review
    fail_on: FailOn
    published: Published | None = None
    refused: str | None = None


def action_command(settings: Settings, env: ActionEnv, llm: AnthropicLLM | None) -> int:
    """Review the event's pull request, publish per `post`, write outputs; exit per fail-on."""
    target = target_of(env.event_name, _load_event(env.event_path))
    if isinstance(target, str):
        print(f"::notice title=pr-council::{_data(target)}")
        _append(env.step_summary, f"### pr-council\n\n{target}.\n")
        _outputs(env, None, None, None)
        return 0
    if settings.github_token is None:
        raise ActionError("no GitHub token: pass the github-token input (the default is fine)")
    try:
        outcome = anyio.run(_run, settings, env, target, llm)
    except GitHubException as exc:
        raise ActionError(describe(exc)) from None
    return _report(env, outcome)


async def _run(
    settings: Settings, env: ActionEnv, target: Target, llm: AnthropicLLM | None
) -> Outcome:
    """Fetch through the API, review, and publish unless told not to."""
    assert settings.github_token is not None
    async with token_client(
        settings.github_token.get_secret_value(), settings.github_api_url
    ) as gh:
        snap = await _snapshot(gh, env, target)
        review = await review_snapshot(snap, settings, mode=env.mode, llm=llm)
        fail_on = env.fail_on or snap.config.fail_on or "never"
        if env.post == "none":
            return Outcome(review, fail_on)
        return await _publish(gh, snap, _for_posting(review, env), fail_on)


async def _snapshot(gh: GitHub[TokenAuthStrategy], env: ActionEnv, target: Target) -> Snapshot:
    """Read the pull request; apply the action's inputs over the repository config."""
    login = await token_identity(gh)
    snap = await fetch_snapshot(gh, target.ref, login, env.config_path)
    if target.head_sha is not None and snap.meta.head_sha != target.head_sha:
        print(
            f"::notice title=pr-council::the head moved to {snap.meta.head_sha[:7]}; reviewing it"
        )
    config = snap.config
    if env.max_inline_comments is not None:
        config = config.model_copy(update={"max_inline_comments": env.max_inline_comments})
    coverage = _coverage(env)
    change = dataclasses.replace(
        snap.change, coverage_report=coverage or snap.change.coverage_report
    )
    return dataclasses.replace(snap, config=config, change=change)


def _coverage(env: ActionEnv) -> str | None:
    """Read the coverage report an earlier step wrote into the workspace."""
    if env.coverage_file is None:
        return None
    path = env.workspace / env.coverage_file
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ActionError(
            f"coverage-file: cannot read {env.coverage_file}: {exc.strerror}"
        ) from None


def _for_posting(review: Review, env: ActionEnv) -> Review:
    """With post: summary, everything goes in the summary comment."""
    if env.post != "summary":
        return review
    findings = tuple(f.model_copy(update={"placement": "summary"}) for f in review.findings)
    return review.model_copy(update={"findings": findings})


async def _publish(
    gh: GitHub[TokenAuthStrategy], snap: Snapshot, review: Review, fail_on: FailOn
) -> Outcome:
    """Publish like the App (the job's own check run reports status: no extra check run)."""
    publisher = Publisher(gh, checks=False)
    try:
        published = await publisher.publish(snap, review, fail_on, quiet=snap.config.quiet)
    except RequestFailed as exc:
        if exc.response.status_code != 403 or isinstance(exc, RateLimitExceeded):
            raise
        # Fork PRs under `pull_request` get a read-only token (GitHub docs, "Automatic token
        # authentication"): fall back to what a job can always write.
        return Outcome(review, fail_on, refused=describe(exc))
    return Outcome(review, fail_on, published)


# --- reporting -----------------------------------------------------------------------------


def _report(env: ActionEnv, outcome: Outcome) -> int:
    """Write the job summary, annotations, report files and outputs; return the exit code."""
    review = outcome.review
    folder = env.runner_temp / f"pr-council-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True, exist_ok=True)
    report, sarif = folder / "report.json", folder / "results.sarif"
    report.write_text(render_json(review), encoding="utf-8")
    sarif.write_text(render_sarif(review), encoding="utf-8")
    if outcome.refused:
        print(
            f"::warning title=pr-council::could not write to the pull request ({outcome.refused}); "
            "the review is in the job summary and annotations"
        )
    if outcome.published is None:
        for line in workflow_annotations(review.findings):
            print(line)
    _append(env.step_summary, _job_summary(outcome))
    url = outcome.published.summary_url if outcome.published else None
    _outputs(env, review, (report, sarif), url)
    return int(
        outcome.fail_on != "never"
        and any(at_least(f.severity, outcome.fail_on) for f in review.findings)
    )


def _job_summary(outcome: Outcome) -> str:
    """Render the review for the job's summary page."""
    head = ""
    if outcome.refused:
        head = "> [!WARNING]\n> pr-council could not comment on the pull request (read-only token); the review is below.\n\n"
    return head + render_markdown(outcome.review) + "\n"


def workflow_annotations(findings: Sequence[Finding]) -> list[str]:
    """Return workflow commands for the gravest findings with a line (escaped: PR text is untrusted)."""
    lines = []
    for f in [f for f in findings if f.line is not None][:MAX_ANNOTATIONS]:
        props = f"file={_prop(f.path)},line={f.line},endLine={max(f.line or 1, f.end_line or 0)}"
        title = _prop(f"pr-council {f.severity}: {f.title}"[:200])
        lines.append(f"::{_LEVEL[f.severity]} {props},title={title}::{_data(f.body or f.title)}")
    return lines


def _data(text: str) -> str:
    """Escape a workflow command's message (GitHub docs, "Workflow commands")."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _prop(text: str) -> str:
    """Escape a workflow command's property value."""
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def _outputs(
    env: ActionEnv, review: Review | None, files: tuple[Path, Path] | None, url: str | None
) -> None:
    """Write the step outputs (GitHub docs, "Setting an output parameter")."""
    findings = review.findings if review else ()
    highest = next((s for s in SEVERITIES if any(f.severity == s for f in findings)), "none")
    values = {
        "findings-count": str(len(findings)),
        "highest-severity": highest,
        "report-path": str(files[0]) if files else "",
        "sarif-path": str(files[1]) if files else "",
        "review-url": url or "",
    }
    _append(env.output_file, "".join(f"{k}={v}\n" for k, v in values.items()))


def _append(path: Path | None, text: str) -> None:
    """Append to a runner file, or print it when running outside a runner."""
    if path is None:
        sys.stdout.write(text)
        return
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)


def _load_event(path: Path) -> object:
    """Read the event payload file the runner wrote."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"GITHUB_EVENT_PATH: cannot read {path}: {exc}") from None
