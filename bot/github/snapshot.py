"""Fetch a pull request through the API: metadata, diff, files at head, config, our last review."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

import anyio
from githubkit import GitHub
from githubkit.exception import RequestFailed
from githubkit.rest.paginator import Paginator
from githubkit.versions.latest.models import DiffEntry, IssueComment, PullRequestReviewComment

from agents.analyzers.test_map import is_test_path
from agents.diff import from_file_patches, parse_diff
from agents.model import Diff, FileStatus, PreviousFinding
from agents.render import SUMMARY_MARKER, parse_fingerprint_marker
from bot.config import REPO_CONFIG_PATH, ConfigError, RepoConfig, parse_repo_config
from bot.github.client import PullRef
from bot.github.state import parse_state
from bot.pipeline import TOOL_CONFIGS, Change, select_files

# Files fetched at head besides the changed ones: tests that may cover them, tool configs.
MAX_RELATED_TESTS = 100
FETCH_CONCURRENCY = 8
_DIFF = {"Accept": "application/vnd.github.diff"}
_RAW = {"Accept": "application/vnd.github.raw"}
_STATUS: dict[str, FileStatus] = {
    "added": "added",
    "removed": "deleted",
    "modified": "modified",
    "renamed": "renamed",
    "copied": "added",
    "changed": "modified",
    "unchanged": "modified",
}


@dataclass(frozen=True)
class PullMeta:
    """What the council and the publisher need to know about the pull request."""

    title: str
    body: str
    state: str
    draft: bool
    base_ref: str
    base_sha: str
    head_sha: str


@dataclass(frozen=True)
class OurReview:
    """What our earlier reviews of this pull request left behind."""

    summary_id: int | None = None
    previous: tuple[PreviousFinding, ...] = ()
    posted: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Snapshot:
    """A pull request at one head commit, ready for build_context and publishing."""

    ref: PullRef
    meta: PullMeta
    change: Change
    tree: ApiTree
    config: RepoConfig
    config_error: str | None
    ours: OurReview


@dataclass(frozen=True)
class ApiTree:
    """File contents at head, fetched ahead (build_context reads synchronously)."""

    all_paths: tuple[str, ...]
    blobs: dict[str, bytes]

    def paths(self) -> list[str]:
        """List every file path at head."""
        return list(self.all_paths)

    def read_many(self, paths: Iterable[str]) -> dict[str, bytes]:
        """Return the fetched contents of these paths."""
        return {p: self.blobs[p] for p in paths if p in self.blobs}


async def fetch_snapshot(
    gh: GitHub[Any], ref: PullRef, bot_login: str, config_path: str = REPO_CONFIG_PATH
) -> Snapshot:
    """Read everything a review of `ref` needs, as of its current head."""
    meta = await fetch_meta(gh, ref)
    diff = await fetch_diff(gh, ref)
    config, config_error = await fetch_config(gh, ref, meta.base_ref, config_path)
    paths = await fetch_paths(gh, ref, meta.head_sha)
    wanted = _wanted(diff, config, paths)
    blobs = await fetch_contents(gh, ref, meta.head_sha, wanted)
    ours = await fetch_ours(gh, ref, bot_login)
    change = Change(
        target=f"{ref}@{meta.head_sha[:12]}",
        diff=diff,
        title=meta.title,
        body=meta.body,
        previous=ours.previous,
    )
    tree = ApiTree(tuple(paths), blobs)
    return Snapshot(ref, meta, change, tree, config, config_error, ours)


async def fetch_meta(gh: GitHub[Any], ref: PullRef) -> PullMeta:
    """Read the pull request's title, body, state and commits."""
    pr = (await gh.rest.pulls.async_get(ref.owner, ref.repo, ref.number)).parsed_data
    return PullMeta(
        title=pr.title,
        body=pr.body or "",
        state=pr.state,
        draft=bool(pr.draft),
        base_ref=pr.base.ref,
        base_sha=pr.base.sha,
        head_sha=pr.head.sha,
    )


async def fetch_diff(gh: GitHub[Any], ref: PullRef) -> Diff:
    """Read the diff; past GitHub's diff limits, rebuild it from the file list."""
    url = f"/repos/{ref.owner}/{ref.repo}/pulls/{ref.number}"
    try:
        response = await gh.arequest("GET", url, headers=_DIFF)
    except RequestFailed as exc:
        # "Get a pull request": diffs over 300 files or 20,000 lines answer 406.
        if exc.response.status_code != 406:
            raise
        return await _diff_from_files(gh, ref)
    return parse_diff(response.text)


async def _diff_from_files(gh: GitHub[Any], ref: PullRef) -> Diff:
    """Rebuild the diff from `pulls/{n}/files` patches (GitHub lists at most 3,000 files)."""
    entries: list[tuple[str, str | None, FileStatus, str | None]] = []
    files: Paginator[DiffEntry] = gh.rest.paginate(
        gh.rest.pulls.async_list_files, owner=ref.owner, repo=ref.repo, pull_number=ref.number
    )
    async for f in files:
        status = _STATUS.get(f.status, "modified")
        old = f.previous_filename if isinstance(f.previous_filename, str) else None
        patch = f.patch if isinstance(f.patch, str) else None
        entries.append((f.filename, patch, status, old))
    return from_file_patches(entries)


async def fetch_config(
    gh: GitHub[Any], ref: PullRef, base_ref: str, path: str = REPO_CONFIG_PATH
) -> tuple[RepoConfig, str | None]:
    """Read the repository config from the base branch, never from the PR's head."""
    data = await fetch_file(gh, ref, base_ref, path)
    if data is None:
        return RepoConfig(), None
    try:
        return parse_repo_config(data.decode("utf-8", errors="replace"), path), None
    except ConfigError as exc:
        return RepoConfig(), str(exc)


async def fetch_paths(gh: GitHub[Any], ref: PullRef, sha: str) -> list[str]:
    """List every file at `sha` (one recursive tree request)."""
    tree = await gh.rest.git.async_get_tree(ref.owner, ref.repo, sha, recursive="1")
    return [e.path for e in tree.parsed_data.tree if e.type == "blob" and e.path]


async def fetch_file(gh: GitHub[Any], ref: PullRef, at: str, path: str) -> bytes | None:
    """Read one file's raw bytes at a branch or commit; None when it does not exist."""
    url = f"/repos/{ref.owner}/{ref.repo}/contents/{quote(path)}"
    try:
        response = await gh.arequest("GET", url, params={"ref": at}, headers=_RAW)
    except RequestFailed as exc:
        if exc.response.status_code == 404:
            return None
        raise
    return response.content


async def fetch_contents(
    gh: GitHub[Any], ref: PullRef, sha: str, paths: Sequence[str]
) -> dict[str, bytes]:
    """Read many files at `sha`, a few at a time."""
    blobs: dict[str, bytes] = {}
    limiter = anyio.CapacityLimiter(FETCH_CONCURRENCY)

    async def one(path: str) -> None:
        async with limiter:
            data = await fetch_file(gh, ref, sha, path)
        if data is not None:
            blobs[path] = data

    async with anyio.create_task_group() as group:
        for path in paths:
            group.start_soon(one, path)
    return blobs


def _wanted(diff: Diff, config: RepoConfig, paths: Sequence[str]) -> list[str]:
    """Choose what to fetch: the reviewable changed files, related tests, tool configs."""
    changed, _ = select_files(diff.files, config.options().ignore, config.max_files)
    configs = [p for p in paths if PurePosixPath(p).name in TOOL_CONFIGS]
    return list(dict.fromkeys([*changed, *related_tests(changed, paths), *configs]))


def related_tests(changed: Sequence[str], paths: Sequence[str]) -> list[str]:
    """Pick the test files likely to exercise the changed files (all of them if few)."""
    tests = [p for p in paths if is_test_path(p)]
    if len(tests) <= MAX_RELATED_TESTS:
        return tests
    stems = {PurePosixPath(p).stem.lower() for p in changed}
    stems.discard("__init__")
    named = [t for t in tests if any(s in PurePosixPath(t).stem.lower() for s in stems)]
    return named[:MAX_RELATED_TESTS]


async def fetch_ours(gh: GitHub[Any], ref: PullRef, bot_login: str) -> OurReview:
    """Find our summary comment and the inline comments we posted, by author and marker."""
    summary_id: int | None = None
    previous: tuple[PreviousFinding, ...] = ()
    comments: Paginator[IssueComment] = gh.rest.paginate(
        gh.rest.issues.async_list_comments,
        owner=ref.owner,
        repo=ref.repo,
        issue_number=ref.number,
    )
    async for c in comments:
        if _is_ours(c.user, bot_login) and SUMMARY_MARKER in (c.body or ""):
            summary_id, previous = c.id, parse_state(c.body or "")
    return OurReview(summary_id, previous, await _posted(gh, ref, bot_login))


async def _posted(gh: GitHub[Any], ref: PullRef, bot_login: str) -> frozenset[str]:
    """Return the fingerprints of the inline comments we posted on this pull request."""
    posted: set[str] = set()
    comments: Paginator[PullRequestReviewComment] = gh.rest.paginate(
        gh.rest.pulls.async_list_review_comments,
        owner=ref.owner,
        repo=ref.repo,
        pull_number=ref.number,
    )
    async for c in comments:
        fingerprint = parse_fingerprint_marker(c.body) if _is_ours(c.user, bot_login) else None
        if fingerprint:
            posted.add(fingerprint)
    return frozenset(posted)


def _is_ours(user: Any, bot_login: str) -> bool:
    """Tell whether a comment's author is our own identity (never trust markers alone)."""
    return user is not None and str(getattr(user, "login", "")).lower() == bot_login.lower()
