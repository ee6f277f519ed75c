"""State of the fake GitHub server: repositories, pull requests and their diffs, comments,
reviews, check runs; the JSON GitHub renders them as; and GitHub's validation rules.

Plain dataclasses, changed by the test thread and by the server thread under
`GitHubState.lock`. `tests.fakes.github_api` serves this state over HTTP.

Diffs are computed here, in git's format (`diff --git`, `index`, `---`/`+++`, hunks with
git's default function-name context, "\\ No newline at end of file", new/deleted file
modes, exact renames, "Binary files ... differ" for content with a NUL byte, C-quoted
paths for unusual names). Hunks come from difflib, so they may split changes differently
from git's Myers diff, but they are always a valid unified diff of the two versions.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import re
import threading
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Literal
from urllib.parse import quote

HTML = "https://github.com"
DOCS = "https://docs.github.com/rest"
FAKE_APP_ID = 4242
FAKE_APP_SLUG = "pr-council"
FAKE_USER_TOKEN = "ghp_fake_user_token"
FAKE_USER_LOGIN = "octocat"
DEFAULT_INSTALLATION_ID = 1001
MAX_BODY_CHARS = 65536
MAX_CHECK_OUTPUT_CHARS = 65535
MAX_ANNOTATIONS = 50
MAX_DIFF_FILES = 300
MAX_DIFF_LINES = 20000
MAX_LISTED_FILES = 3000
CONTEXT_LINES = 3

FileData = bytes | str
Files = dict[str, bytes]
Side = Literal["LEFT", "RIGHT"]


# --------------------------------------------------------------------------- errors


class ApiError(Exception):
    """An error answer: HTTP status, GitHub's JSON body, extra headers."""

    def __init__(
        self, status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{status}: {body.get('message')}")
        self.status, self.body, self.headers = status, body, dict(headers or {})


def error_body(message: str, status: int, **extra: Any) -> dict[str, Any]:
    """GitHub's error JSON: message, documentation_url, status (a string), extras."""
    return {"message": message, **extra, "documentation_url": DOCS, "status": str(status)}


def not_found() -> ApiError:
    """404 Not Found."""
    return ApiError(404, error_body("Not Found", 404))


def forbidden(message: str) -> ApiError:
    """403 with a message."""
    return ApiError(403, error_body(message, 403))


def unprocessable(*errors: str) -> ApiError:
    """422 "Unprocessable Entity" with plain-string errors (as the reviews API sends)."""
    return ApiError(422, error_body("Unprocessable Entity", 422, errors=list(errors)))


def validation_failed(resource: str, field_name: str, message: str) -> ApiError:
    """422 "Validation Failed" with one structured error."""
    error = {"resource": resource, "code": "custom", "field": field_name, "message": message}
    return ApiError(422, error_body("Validation Failed", 422, errors=[error]))


def check_length(resource: str, field_name: str, text: object, limit: int = MAX_BODY_CHARS) -> None:
    """422 if a text field is longer than GitHub accepts."""
    if isinstance(text, str) and len(text) > limit:
        message = f"{field_name} is too long (maximum is {limit} characters)"
        raise validation_failed(resource, field_name, message)


# --------------------------------------------------------------------------- small helpers


def now_iso() -> str:
    """The current UTC time as GitHub writes it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def blob_sha(data: bytes) -> str:
    """Git's blob id of some content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def fake_sha(*parts: object) -> str:
    """A deterministic 40-hex id from some parts."""
    return hashlib.sha1(repr(parts).encode()).hexdigest()


def as_files(files: Mapping[str, FileData] | None) -> Files:
    """Files as bytes (str is UTF-8 encoded)."""
    return {p: v.encode() if isinstance(v, str) else bytes(v) for p, v in (files or {}).items()}


def is_binary(data: bytes) -> bool:
    """Git's heuristic: a NUL byte in the first 8000 bytes."""
    return b"\0" in data[:8000]


def numeric_id(text: str) -> int:
    """A stable positive id for a login or name."""
    return zlib.crc32(text.encode()) % 90_000_000 + 1_000_000


def node_id(kind: str, number: int) -> str:
    """A GraphQL-style node id."""
    return base64.b64encode(f"0{len(kind)}:{kind}{number}".encode()).decode()


def split_lines(text: str) -> list[str]:
    """Lines split on \\n only, each keeping its newline (the last may lack one)."""
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


# --------------------------------------------------------------------------- diffs


@dataclass(frozen=True)
class DiffLine:
    """One line of a hunk: kind " ", "-", "+" or "\\\\", text without newline, numbers."""

    kind: str
    text: str
    old: int | None
    new: int | None

    def render(self) -> str:
        """The line as it appears in the diff."""
        return "\\ No newline at end of file" if self.kind == "\\" else self.kind + self.text


@dataclass(frozen=True)
class Hunk:
    """One hunk: its @@ header and its lines."""

    header: str
    lines: tuple[DiffLine, ...]

    def render(self) -> str:
        """The hunk's text (no trailing newline)."""
        return "\n".join([self.header, *(line.render() for line in self.lines)])

    def has(self, side: Side, line: int) -> bool:
        """Whether the line is commentable on that side in this hunk."""
        if side == "RIGHT":
            return any(x.new == line and x.kind in " +" for x in self.lines)
        return any(x.old == line and x.kind in " -" for x in self.lines)


@dataclass(frozen=True)
class FileDiff:
    """The diff of one file between two commits."""

    path: str
    previous_path: str | None
    status: Literal["added", "removed", "modified", "renamed"]
    old_sha: str | None
    new_sha: str | None
    binary: bool
    header: tuple[str, ...]
    hunks: tuple[Hunk, ...]

    @property
    def additions(self) -> int:
        """Added lines."""
        return sum(x.kind == "+" for h in self.hunks for x in h.lines)

    @property
    def deletions(self) -> int:
        """Removed lines."""
        return sum(x.kind == "-" for h in self.hunks for x in h.lines)

    @property
    def patch(self) -> str | None:
        """The hunks without file headers, as `pulls/{n}/files` gives them."""
        return "\n".join(h.render() for h in self.hunks) if self.hunks else None

    @property
    def text(self) -> str:
        """This file's part of the unified diff."""
        return "".join(f"{line}\n" for line in self.header) + (
            f"{self.patch}\n" if self.patch else ""
        )

    def hunk_of(self, side: Side, line: int) -> int | None:
        """Index of the hunk where the line is commentable, if any."""
        return next((i for i, h in enumerate(self.hunks) if h.has(side, line)), None)

    def at_position(self, position: int) -> tuple[Side, int] | None:
        """(side, line) of a diff position (1 = the line below the first @@)."""
        rows: list[DiffLine | None] = []
        for i, hunk in enumerate(self.hunks):
            rows += ([None] if i else []) + list(hunk.lines)
        if not 1 <= position <= len(rows) or (row := rows[position - 1]) is None:
            return None
        if row.kind == "-" and row.old is not None:
            return "LEFT", row.old
        return ("RIGHT", row.new) if row.kind in " +" and row.new is not None else None

    def diff_hunk(self, side: Side, line: int) -> str:
        """The hunk text up to the commented line, as review comments carry it."""
        hunk = self.hunks[self.hunk_of(side, line) or 0]
        rows = [hunk.header]
        for x in hunk.lines:
            rows.append(x.render())
            if (x.new if side == "RIGHT" else x.old) == line and x.kind != "\\":
                break
        return "\n".join(rows)


def _quote(path: str) -> str:
    """A path as git prints it: C-quoted when it has unusual characters."""
    if not re.search(r'[\x00-\x1f"\\\x7f-\U0010ffff]', path):
        return path
    escapes = {ord('"'): '\\"', ord("\\"): "\\\\", 9: "\\t", 10: "\\n"}
    out = [escapes.get(b) or (chr(b) if 32 <= b < 127 else f"\\{b:03o}") for b in path.encode()]
    return '"' + "".join(out) + '"'


def _range(start: int, length: int) -> str:
    """One side of a hunk header, as git writes it."""
    if length == 1:
        return f"{start + 1}"
    return f"{start},0" if length == 0 else f"{start + 1},{length}"


def _funcname(lines: list[str], before: int) -> str:
    """Git's default hunk context: the last line before the hunk starting with [A-Za-z_$]."""
    for raw in reversed(lines[:before]):
        if re.match(r"[A-Za-z_$]", raw):
            return " " + raw.rstrip()[:80]
    return ""


def _rows(kind: str, raw: str, old: int | None, new: int | None) -> list[DiffLine]:
    """A diff line, plus the no-newline marker when the line has no newline."""
    rows = [DiffLine(kind, raw.removesuffix("\n"), old, new)]
    return rows if raw.endswith("\n") else [*rows, DiffLine("\\", "", old, new)]


def _hunk(a: list[str], b: list[str], group: list[tuple[str, int, int, int, int]]) -> Hunk:
    """One hunk from a group of difflib opcodes."""
    i1, i2, j1, j2 = group[0][1], group[-1][2], group[0][3], group[-1][4]
    header = f"@@ -{_range(i1, i2 - i1)} +{_range(j1, j2 - j1)} @@{_funcname(a, i1)}"
    lines: list[DiffLine] = []
    for tag, x1, x2, y1, y2 in group:
        if tag == "equal":
            for k in range(x2 - x1):
                lines += _rows(" ", a[x1 + k], x1 + k + 1, y1 + k + 1)
            continue
        for k in range(x1, x2):
            lines += _rows("-", a[k], k + 1, None)
        for k in range(y1, y2):
            lines += _rows("+", b[k], None, k + 1)
    return Hunk(header, tuple(lines))


def text_hunks(old: str, new: str) -> tuple[Hunk, ...]:
    """Unified-diff hunks (3 lines of context) between two texts."""
    a, b = split_lines(old), split_lines(new)
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    groups = [
        g for g in matcher.get_grouped_opcodes(CONTEXT_LINES) if len(g) > 1 or g[0][0] != "equal"
    ]
    return tuple(_hunk(a, b, g) for g in groups)


def file_diff(path: str, old: bytes | None, new: bytes | None) -> FileDiff:
    """The diff of one added, removed or modified file."""
    status: Literal["added", "removed", "modified"] = (
        "added" if old is None else "removed" if new is None else "modified"
    )
    old_sha, new_sha = (
        (blob_sha(old) if old is not None else None),
        (blob_sha(new) if new is not None else None),
    )
    a, b = _quote(f"a/{path}"), _quote(f"b/{path}")
    header = [f"diff --git {a} {b}"]
    index = f"index {_short(old_sha)}..{_short(new_sha)}"
    if status == "added":
        header += ["new file mode 100644", index]
    elif status == "removed":
        header += ["deleted file mode 100644", index]
    else:
        header.append(f"{index} 100644")
    src, dst = ("/dev/null" if old is None else a), ("/dev/null" if new is None else b)
    binary = is_binary(old or b"") or is_binary(new or b"")
    hunks: tuple[Hunk, ...] = ()
    if binary:
        header.append(f"Binary files {src} and {dst} differ")
    else:
        hunks = text_hunks(_decode(old), _decode(new))
        tab = "\t" if " " in path else ""
        header += [f"--- {src}{tab}", f"+++ {dst}{tab}"] if hunks else []
    return FileDiff(path, None, status, old_sha, new_sha, binary, tuple(header), hunks)


def _short(sha: str | None) -> str:
    """An abbreviated blob id, zeros for a missing side."""
    return sha[:7] if sha else "0000000"


def _decode(data: bytes | None) -> str:
    """Content as text for diffing."""
    return (data or b"").decode("utf-8", errors="replace")


def _renamed(old_path: str, new_path: str, data: bytes) -> FileDiff:
    """An exact (100 % similar) rename."""
    header = (
        f"diff --git {_quote('a/' + old_path)} {_quote('b/' + new_path)}",
        "similarity index 100%",
        f"rename from {_quote(old_path)}",
        f"rename to {_quote(new_path)}",
    )
    sha = blob_sha(data)
    return FileDiff(new_path, old_path, "renamed", sha, sha, is_binary(data), header, ())


def diff_files(base: Files, head: Files) -> list[FileDiff]:
    """Every changed file between two trees, sorted by path, exact renames detected."""
    added = [p for p in head if p not in base]
    renames: dict[str, str] = {}
    for old_path in (p for p in base if p not in head and base[p]):
        match = next((p for p in added if head[p] == base[old_path] and p not in renames), None)
        if match is not None:
            renames[match] = old_path
    diffs = []
    for path in sorted(set(base) | set(head)):
        if path in renames:
            diffs.append(_renamed(renames[path], path, head[path]))
        elif path not in renames.values() and base.get(path) != head.get(path):
            diffs.append(file_diff(path, base.get(path), head.get(path)))
    return diffs


@dataclass
class PullDiff:
    """A pull request's diff at one head commit, computed when first asked for.

    Lazily: a push costs nothing until a client reads the diff (a benchmark pushes hundreds of
    times from its load generator's loop).
    """

    base: Files
    head: Files

    @cached_property
    def files(self) -> list[FileDiff]:
        """Every changed file, sorted by path."""
        return diff_files(self.base, self.head)

    @cached_property
    def text(self) -> str:
        """The whole unified diff."""
        return "".join(f.text for f in self.files)

    @cached_property
    def by_path(self) -> dict[str, FileDiff]:
        """Files by (new) path."""
        return {f.path: f for f in self.files}

    @property
    def changed_lines(self) -> int:
        """Additions plus deletions."""
        return sum(f.additions + f.deletions for f in self.files)


# --------------------------------------------------------------------------- state


@dataclass(frozen=True)
class Actor:
    """A user or bot account."""

    login: str
    type: str = "User"

    @property
    def id(self) -> int:
        """Stable numeric id."""
        return numeric_id(self.login)


@dataclass
class Repo:
    """A repository: branches and every known commit's files."""

    owner: str
    name: str
    default_branch: str
    private: bool = False
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Files] = field(default_factory=dict)
    trees: dict[str, tuple[str, str]] = field(default_factory=dict)
    permissions: dict[str, str] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        """owner/name."""
        return f"{self.owner}/{self.name}"

    @property
    def id(self) -> int:
        """Stable numeric id."""
        return numeric_id(self.full_name)


@dataclass
class Pull:
    """A pull request; `heads` is every head sha ever pushed, oldest first."""

    owner: str
    repo: str
    number: int
    title: str
    body: str | None
    author: Actor
    base_ref: str
    base_sha: str
    head_ref: str
    head_sha: str
    draft: bool = False
    state: str = "open"
    too_large_for_diff: bool = False
    patchless: frozenset[str] = frozenset()
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    heads: list[str] = field(default_factory=list)
    diffs: dict[str, PullDiff] = field(default_factory=dict, repr=False)

    @property
    def id(self) -> int:
        """Stable numeric id."""
        return numeric_id(f"{self.owner}/{self.repo}#{self.number}")

    @property
    def diff(self) -> PullDiff:
        """The diff at the current head."""
        return self.diffs[self.head_sha]


@dataclass
class IssueComment:
    """A comment on the PR's conversation."""

    id: int
    repo: str
    number: int
    body: str
    author: Actor
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)


@dataclass
class ReviewComment:
    """An inline comment of a review."""

    id: int
    review_id: int
    repo: str
    number: int
    path: str
    line: int
    side: Side
    start_line: int | None
    start_side: Side | None
    body: str
    commit_id: str
    author: Actor
    diff_hunk: str
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)


@dataclass
class Review:
    """A pull request review (state COMMENTED, APPROVED, CHANGES_REQUESTED or PENDING)."""

    id: int
    repo: str
    number: int
    body: str
    state: str
    commit_id: str
    author: Actor
    submitted_at: str | None = field(default_factory=now_iso)


@dataclass
class CheckRun:
    """A check run; annotations accumulate over create and updates."""

    id: int
    repo: str
    name: str
    head_sha: str
    author: Actor
    status: str = "queued"
    conclusion: str | None = None
    started_at: str | None = field(default_factory=now_iso)
    completed_at: str | None = None
    details_url: str | None = None
    external_id: str | None = None
    title: str | None = None
    summary: str | None = None
    text: str | None = None
    annotations: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Installation:
    """An installation of the app on some repositories."""

    id: int
    account: str
    repos: set[str] = field(default_factory=set)
    read_only: bool = False


@dataclass
class UserToken:
    """A personal (or workflow) token acting as a user."""

    login: str
    read_only: bool = False
    repos: set[str] | None = None


def _copies(items: Iterable[Any]) -> list[Any]:
    """Shallow copies, safe to read while the server keeps working."""
    return [replace(item) for item in items]


class GitHubState:
    """Everything the fake GitHub knows. Test-facing methods take the lock themselves."""

    def __init__(self, *, app_id: int = FAKE_APP_ID, slug: str = FAKE_APP_SLUG) -> None:
        self.lock = threading.RLock()
        self.app_id, self.slug = app_id, slug
        self.base_url: str | None = None
        self.clear_state()

    @property
    def bot(self) -> Actor:
        """The app's bot account."""
        return Actor(f"{self.slug}[bot]", "Bot")

    @property
    def api(self) -> str:
        """The API root that URLs in bodies point to."""
        return self.base_url or "https://api.github.com"

    def clear_state(self) -> None:
        """Forget every repository, pull request, comment, token and installation."""
        with self.lock:
            self.repos: dict[str, Repo] = {}
            self.pulls: dict[tuple[str, int], Pull] = {}
            self.installations: dict[int, Installation] = {}
            self.user_tokens: dict[str, UserToken] = {FAKE_USER_TOKEN: UserToken(FAKE_USER_LOGIN)}
            self._comments: dict[int, IssueComment] = {}
            self._reviews: dict[int, Review] = {}
            self._review_comments: dict[int, ReviewComment] = {}
            self._check_runs: dict[int, CheckRun] = {}
            self._next_id = 1_000_000

    def new_id(self) -> int:
        """A fresh id for a comment, review or check run."""
        with self.lock:
            self._next_id += 1
            return self._next_id

    # ---- setup (test thread)

    def add_repo(
        self,
        owner: str,
        repo: str,
        *,
        default_branch: str = "main",
        files: Mapping[str, FileData] | None = None,
        installation_id: int | None = DEFAULT_INSTALLATION_ID,
        private: bool = False,
    ) -> Repo:
        """Create a repository (its default branch holds `files`) and install the app on it."""
        with self.lock:
            if f"{owner}/{repo}" in self.repos:
                raise ValueError(f"repository {owner}/{repo} exists already")
            entry = Repo(owner, repo, default_branch, private)
            root = fake_sha(owner, repo, "root")
            entry.commits[root], entry.branches[default_branch] = as_files(files), root
            entry.permissions[owner] = "admin"
            self.repos[entry.full_name] = entry
            if installation_id is not None:
                self.install(installation_id, entry.full_name)
            return entry

    def install(self, installation_id: int, *repos: str, read_only: bool = False) -> Installation:
        """Install the app (id `installation_id`) on more "owner/repo" repositories."""
        with self.lock:
            account = repos[0].split("/")[0] if repos else "fake-org"
            inst = self.installations.setdefault(
                installation_id, Installation(installation_id, account)
            )
            inst.repos.update(repos)
            inst.read_only = inst.read_only or read_only
            return inst

    def add_token(
        self, token: str, login: str, *, read_only: bool = False, repos: Iterable[str] | None = None
    ) -> None:
        """Accept a personal token acting as `login` (optionally limited to some repos)."""
        with self.lock:
            self.user_tokens[token] = UserToken(
                login, read_only, None if repos is None else set(repos)
            )

    def set_read_only(self, target: int | str, read_only: bool = True) -> None:
        """Make an installation (int id) or a personal token (str) read-only, or not."""
        with self.lock:
            holder = (
                self.installations[target] if isinstance(target, int) else self.user_tokens[target]
            )
            holder.read_only = read_only

    def set_permission(self, owner: str, repo: str, login: str, permission: str) -> None:
        """Set a user's permission on a repo: admin, maintain, write, triage, read or none."""
        with self.lock:
            self.repos[f"{owner}/{repo}"].permissions[login] = permission

    def add_pull(
        self,
        owner: str,
        repo: str,
        number: int,
        *,
        base_files: Mapping[str, FileData],
        head_files: Mapping[str, FileData],
        title: str = "A pull request",
        body: str | None = "",
        base_sha: str | None = None,
        head_sha: str | None = None,
        author: str = FAKE_USER_LOGIN,
        draft: bool = False,
        state: str = "open",
        base_ref: str | None = None,
        head_ref: str | None = None,
        too_large_for_diff: bool = False,
        patchless: Iterable[str] = (),
    ) -> Pull:
        """Open a PR; base files become the base branch, head files its first head commit."""
        with self.lock:
            entry = self.repos.get(f"{owner}/{repo}") or self.add_repo(owner, repo)
            base, head = as_files(base_files), as_files(head_files)
            base_sha = base_sha or fake_sha(owner, repo, number, "base", sorted(base.items()))
            head_sha = head_sha or fake_sha(owner, repo, number, "head", sorted(head.items()))
            base_ref = base_ref or entry.default_branch
            head_ref = head_ref or f"feature-{number}"
            entry.commits[base_sha], entry.branches[base_ref] = base, base_sha
            pull = Pull(
                owner, repo, number, title, body, Actor(author), base_ref, base_sha, head_ref,
                head_sha, draft, state, too_large_for_diff, frozenset(patchless),
            )  # fmt: skip
            self.pulls[(entry.full_name, number)] = pull
            self._move_head(pull, head_sha, head)
            return pull

    def push(
        self, owner: str, repo: str, number: int, head_sha: str, head_files: Mapping[str, FileData]
    ) -> Pull:
        """Move the PR's head to a new commit (comments and reviews are kept)."""
        with self.lock:
            pull = self.pull(owner, repo, number)
            self._move_head(pull, head_sha, as_files(head_files))
            pull.updated_at = now_iso()
            return pull

    def _move_head(self, pull: Pull, head_sha: str, head: Files) -> None:
        """Record a head commit and its diff against the base."""
        entry = self.repos[f"{pull.owner}/{pull.repo}"]
        entry.commits[head_sha], entry.branches[pull.head_ref] = head, head_sha
        pull.head_sha = head_sha
        pull.heads.append(head_sha)
        pull.diffs[head_sha] = PullDiff(entry.commits[pull.base_sha], head)

    def pull(self, owner: str, repo: str, number: int) -> Pull:
        """The live Pull object (KeyError if unknown)."""
        with self.lock:
            return self.pulls[(f"{owner}/{repo}", number)]

    def seed_issue_comment(
        self,
        owner: str,
        repo: str,
        number: int,
        body: str,
        *,
        author: str = "someone",
        author_type: str = "User",
    ) -> IssueComment:
        """Add a comment by somebody else (a human, another bot...)."""
        with self.lock:
            self.pull(owner, repo, number)
            comment = IssueComment(
                self.new_id(), f"{owner}/{repo}", number, body, Actor(author, author_type)
            )
            self._comments[comment.id] = comment
            return replace(comment)

    # ---- accessors (test thread)

    def issue_comments(self, owner: str, repo: str, number: int) -> list[IssueComment]:
        """The PR's issue comments, oldest first."""
        with self.lock:
            return _copies(self.comments_of(f"{owner}/{repo}", number))

    def reviews(self, owner: str, repo: str, number: int) -> list[Review]:
        """The PR's reviews, oldest first."""
        with self.lock:
            return _copies(
                r
                for r in self._reviews.values()
                if (r.repo, r.number) == (f"{owner}/{repo}", number)
            )

    def review_comments(self, owner: str, repo: str, number: int) -> list[ReviewComment]:
        """The PR's inline review comments, oldest first."""
        with self.lock:
            return _copies(self.review_comments_of(f"{owner}/{repo}", number))

    def check_runs(self, owner: str, repo: str) -> list[CheckRun]:
        """The repo's check runs, oldest first."""
        with self.lock:
            return _copies(c for c in self._check_runs.values() if c.repo == f"{owner}/{repo}")

    # ---- queries (server thread, lock held)

    def comments_of(self, repo: str, number: int) -> list[IssueComment]:
        """Live issue comments of one PR."""
        return [c for c in self._comments.values() if (c.repo, c.number) == (repo, number)]

    def review_comments_of(self, repo: str, number: int) -> list[ReviewComment]:
        """Live review comments of one PR."""
        return [c for c in self._review_comments.values() if (c.repo, c.number) == (repo, number)]

    def reviews_of(self, repo: str, number: int) -> list[Review]:
        """Live reviews of one PR."""
        return [r for r in self._reviews.values() if (r.repo, r.number) == (repo, number)]

    def repo_or_404(self, owner: str, repo: str) -> Repo:
        """The repo, or 404."""
        if (entry := self.repos.get(f"{owner}/{repo}")) is None:
            raise not_found()
        return entry

    def pull_or_404(self, owner: str, repo: str, number: int) -> Pull:
        """The PR, or 404."""
        if (pull := self.pulls.get((f"{owner}/{repo}", number))) is None:
            raise not_found()
        return pull

    def comment_or_404(self, repo: str, comment_id: int) -> IssueComment:
        """An issue comment of this repo, or 404."""
        comment = self._comments.get(comment_id)
        if comment is None or comment.repo != repo:
            raise not_found()
        return comment

    def check_run_or_404(self, repo: str, run_id: int) -> CheckRun:
        """A check run of this repo, or 404."""
        run = self._check_runs.get(run_id)
        if run is None or run.repo != repo:
            raise not_found()
        return run

    def resolve(self, entry: Repo, ref: str | None) -> tuple[str, Files]:
        """(commit sha, files) of a branch name or commit sha (default branch if None)."""
        ref = ref or entry.default_branch
        for name in (ref, ref.removeprefix("refs/heads/")):
            sha = entry.branches.get(name, name)
            if sha in entry.commits:
                return sha, entry.commits[sha]
        raise ApiError(404, error_body(f"No commit found for the ref {ref}", 404))

    def permission(self, entry: Repo, login: str) -> str:
        """A user's permission on a repo (read if unset, as on a public repo)."""
        return entry.permissions.get(login, "none" if entry.private else "read")

    def association(self, repo: str, actor: Actor) -> str:
        """author_association of an actor on a repo."""
        entry = self.repos[repo]
        if actor.login == entry.owner:
            return "OWNER"
        return (
            "COLLABORATOR"
            if entry.permissions.get(actor.login) in ("admin", "maintain", "write")
            else "NONE"
        )

    # ---- writes (server thread, lock held)

    def create_issue_comment(self, pull: Pull, body: object, author: Actor) -> IssueComment:
        """Store a new issue comment (422 on a missing or too long body)."""
        body = _required_body("IssueComment", body)
        comment = IssueComment(
            self.new_id(), f"{pull.owner}/{pull.repo}", pull.number, body, author
        )
        self._comments[comment.id] = comment
        return comment

    def update_issue_comment(
        self, comment: IssueComment, body: object, author: Actor
    ) -> IssueComment:
        """Edit a comment: only its author may (403 otherwise)."""
        if comment.author.login != author.login:
            raise forbidden(
                "Resource not accessible by integration" if author.type == "Bot" else "Forbidden"
            )
        comment.body = _required_body("IssueComment", body)
        comment.updated_at = now_iso()
        return comment

    def create_review(self, pull: Pull, data: dict[str, Any], author: Actor) -> Review:
        """Validate like GitHub, then store a review and its inline comments (all or nothing)."""
        commit_id = str(data.get("commit_id") or pull.head_sha)
        if commit_id not in pull.heads:
            raise unprocessable("Pull request review commit_id is not part of the pull request")
        state = _review_state(data.get("event"), pull, author)
        body = data.get("body") or ""
        check_length("PullRequestReview", "body", body)
        drafts = [_resolve_comment(pull.diffs[commit_id], c) for c in data.get("comments") or []]
        if state in ("COMMENTED", "CHANGES_REQUESTED") and not body and not drafts:
            raise unprocessable("Review body is required for COMMENT and REQUEST_CHANGES events")
        repo = f"{pull.owner}/{pull.repo}"
        review = Review(self.new_id(), repo, pull.number, str(body), state, commit_id, author)
        review.submitted_at = None if state == "PENDING" else review.submitted_at
        self._reviews[review.id] = review
        for draft in drafts:
            ids = (self.new_id(), review.id, repo, pull.number)
            comment = ReviewComment(*ids, commit_id=commit_id, author=author, **draft)
            self._review_comments[comment.id] = comment
        return review

    def create_check_run(self, entry: Repo, data: dict[str, Any], author: Actor) -> CheckRun:
        """Create a check run (422 on missing name/head_sha, unknown sha, bad output)."""
        name, head_sha = data.get("name"), data.get("head_sha")
        if not isinstance(name, str) or not name or not isinstance(head_sha, str):
            raise validation_failed("CheckRun", "name" if not name else "head_sha", "is missing")
        if head_sha not in entry.commits:
            raise unprocessable(f"No commit found for SHA: {head_sha}")
        run = CheckRun(self.new_id(), entry.full_name, name, head_sha, author)
        self._apply_check_update(run, data)
        self._check_runs[run.id] = run
        return run

    def update_check_run(self, run: CheckRun, data: dict[str, Any]) -> CheckRun:
        """Update a check run (annotations are appended)."""
        if isinstance(data.get("name"), str):
            run.name = data["name"]
        self._apply_check_update(run, data)
        return run

    def _apply_check_update(self, run: CheckRun, data: dict[str, Any]) -> None:
        """Validate then apply status, conclusion, urls and output."""
        output = data.get("output")
        annotations = _validate_output(output) if output is not None else []
        status, conclusion = data.get("status"), data.get("conclusion")
        if conclusion is not None or status == "completed":
            if conclusion is None:
                raise validation_failed(
                    "CheckRun", "conclusion", "is required when status is completed"
                )
            run.status, run.conclusion = "completed", str(conclusion)
            run.completed_at = str(data.get("completed_at") or now_iso())
        elif isinstance(status, str):
            run.status = status
        for key in ("started_at", "details_url", "external_id"):
            if data.get(key) is not None:
                setattr(run, key, str(data[key]))
        if isinstance(output, dict):
            run.title, run.summary = output.get("title"), output.get("summary")
            run.text = output.get("text", run.text)
            run.annotations.extend(annotations)


def _required_body(resource: str, body: object) -> str:
    """A comment body: present, a string, not too long."""
    if not isinstance(body, str) or not body:
        raise validation_failed(resource, "body", "body wasn't supplied")
    check_length(resource, "body", body)
    return body


def _review_state(event: object, pull: Pull, author: Actor) -> str:
    """The review state for an event (422 on an unknown event or reviewing one's own PR)."""
    states = {
        None: "PENDING",
        "COMMENT": "COMMENTED",
        "APPROVE": "APPROVED",
        "REQUEST_CHANGES": "CHANGES_REQUESTED",
    }
    if event not in states:
        raise unprocessable(f"Unknown event: {event}")
    if event in ("APPROVE", "REQUEST_CHANGES") and author.login == pull.author.login:
        verb = "approve" if event == "APPROVE" else "request changes on"
        raise unprocessable(f"Can not {verb} your own pull request")
    return states[event]


def _resolve_comment(diff: PullDiff, comment: dict[str, Any]) -> dict[str, Any]:
    """Check an inline comment against the diff; the ReviewComment fields, or 422."""
    path, body = comment.get("path"), comment.get("body")
    check_length("PullRequestReviewComment", "body", body)
    if not isinstance(body, str) or not body:
        raise unprocessable("Body can't be blank")
    file = diff.by_path.get(str(path))
    if file is None:
        raise unprocessable("Path could not be resolved")
    side, line = comment.get("side", "RIGHT"), comment.get("line")
    if line is None and comment.get("position") is not None:
        side, line = file.at_position(int(comment["position"])) or ("RIGHT", -1)
    if side not in ("LEFT", "RIGHT") or not isinstance(line, int):
        raise unprocessable("Line could not be resolved")
    hunk = file.hunk_of(side, line)
    if hunk is None:
        raise unprocessable("Line could not be resolved")
    start_line, start_side = comment.get("start_line"), comment.get("start_side")
    if start_line is not None:
        start_side = start_side or side
        valid = start_side in ("LEFT", "RIGHT") and isinstance(start_line, int)
        start_hunk = file.hunk_of(start_side, start_line) if valid else None
        if start_hunk is None:
            raise unprocessable("Start line could not be resolved")
        if start_hunk != hunk or (start_side == side and start_line >= line):
            raise unprocessable(
                "start_line must be part of the same hunk as the line, and precede it"
            )
    return {
        "path": file.path, "line": line, "side": side, "start_line": start_line,
        "start_side": start_side if start_line is not None else None, "body": body,
        "diff_hunk": file.diff_hunk(side, line),
    }  # fmt: skip


def _validate_output(output: object) -> list[dict[str, Any]]:
    """Check a check-run output (title, summary, lengths, ≤ 50 annotations); its annotations."""
    if not isinstance(output, dict) or not output.get("title") or not output.get("summary"):
        raise validation_failed("CheckRun", "output", "title and summary are required")
    for key in ("summary", "text"):
        check_length("CheckRun", key, output.get(key), MAX_CHECK_OUTPUT_CHARS)
    annotations = output.get("annotations") or []
    if len(annotations) > MAX_ANNOTATIONS:
        raise validation_failed(
            "CheckRun", "annotations", f"Only {MAX_ANNOTATIONS} annotations may be sent per request"
        )
    required = ("path", "start_line", "end_line", "annotation_level", "message")
    for note in annotations:
        if not isinstance(note, dict) or any(note.get(k) is None for k in required):
            raise validation_failed(
                "CheckRun",
                "annotations",
                "path, start_line, end_line, annotation_level and message are required",
            )
        if note["annotation_level"] not in ("notice", "warning", "failure"):
            raise validation_failed(
                "CheckRun", "annotations", "annotation_level is not included in the list"
            )
    return [dict(note) for note in annotations]


# --------------------------------------------------------------------------- JSON

_USER_URLS = {
    "followers_url": "/followers", "following_url": "/following{/other_user}",
    "gists_url": "/gists{/gist_id}", "starred_url": "/starred{/owner}{/repo}",
    "subscriptions_url": "/subscriptions", "organizations_url": "/orgs", "repos_url": "/repos",
    "events_url": "/events{/privacy}", "received_events_url": "/received_events",
}  # fmt: skip

_REPO_URLS = {
    "archive_url": "/{archive_format}{/ref}", "assignees_url": "/assignees{/user}",
    "blobs_url": "/git/blobs{/sha}", "branches_url": "/branches{/branch}",
    "collaborators_url": "/collaborators{/collaborator}", "comments_url": "/comments{/number}",
    "commits_url": "/commits{/sha}", "compare_url": "/compare/{base}...{head}",
    "contents_url": "/contents/{+path}", "contributors_url": "/contributors",
    "deployments_url": "/deployments", "downloads_url": "/downloads", "events_url": "/events",
    "forks_url": "/forks", "git_commits_url": "/git/commits{/sha}", "git_refs_url": "/git/refs{/sha}",
    "git_tags_url": "/git/tags{/sha}", "issue_comment_url": "/issues/comments{/number}",
    "issue_events_url": "/issues/events{/number}", "issues_url": "/issues{/number}",
    "keys_url": "/keys{/key_id}", "labels_url": "/labels{/name}", "languages_url": "/languages",
    "merges_url": "/merges", "milestones_url": "/milestones{/number}",
    "notifications_url": "/notifications{?since,all,participating}", "pulls_url": "/pulls{/number}",
    "releases_url": "/releases{/id}", "stargazers_url": "/stargazers",
    "statuses_url": "/statuses/{sha}", "subscribers_url": "/subscribers",
    "subscription_url": "/subscription", "tags_url": "/tags", "teams_url": "/teams",
    "trees_url": "/git/trees{/sha}", "hooks_url": "/hooks",
}  # fmt: skip

APP_PERMISSIONS = {
    "checks": "write", "contents": "read", "issues": "write", "metadata": "read",
    "pull_requests": "write",
}  # fmt: skip
APP_EVENTS = ["issue_comment", "pull_request"]
_CREATED = "2024-01-02T03:04:05Z"


def user_json(actor: Actor, api: str) -> dict[str, Any]:
    """A SimpleUser."""
    url = f"{api}/users/{quote(actor.login)}"
    return {
        "login": actor.login, "id": actor.id, "node_id": node_id(actor.type, actor.id),
        "avatar_url": f"https://avatars.githubusercontent.com/u/{actor.id}?v=4",
        "gravatar_id": "", "url": url, "html_url": f"{HTML}/{quote(actor.login)}",
        **{key: url + suffix for key, suffix in _USER_URLS.items()},
        "type": actor.type, "site_admin": False, "user_view_type": "public",
    }  # fmt: skip


def private_user_json(actor: Actor, api: str) -> dict[str, Any]:
    """The authenticated user (PrivateUser)."""
    counts = ("public_repos", "public_gists", "followers", "following", "private_gists",
              "total_private_repos", "owned_private_repos", "disk_usage", "collaborators")  # fmt: skip
    return {
        **user_json(actor, api), "name": actor.login, "company": None, "blog": "",
        "location": None, "email": None, "hireable": None, "bio": None,
        **dict.fromkeys(counts, 0), "created_at": _CREATED, "updated_at": _CREATED,
        "two_factor_authentication": True,
    }  # fmt: skip


def repo_json(entry: Repo, api: str) -> dict[str, Any]:
    """A Repository."""
    url = f"{api}/repos/{entry.full_name}"
    html = f"{HTML}/{entry.full_name}"
    return {
        "id": entry.id, "node_id": node_id("Repository", entry.id), "name": entry.name,
        "full_name": entry.full_name, "private": entry.private,
        "owner": user_json(Actor(entry.owner), api), "html_url": html, "description": None,
        "fork": False, "url": url, **{k: url + s for k, s in _REPO_URLS.items()},
        "git_url": f"git://github.com/{entry.full_name}.git",
        "ssh_url": f"git@github.com:{entry.full_name}.git", "clone_url": f"{html}.git",
        "svn_url": html, "mirror_url": None, "homepage": None, "language": "Python",
        "forks_count": 0, "stargazers_count": 0, "watchers_count": 0, "size": 1,
        "default_branch": entry.default_branch, "open_issues_count": 0, "has_pages": False,
        "disabled": False, "archived": False, "license": None, "forks": 0, "open_issues": 0,
        "watchers": 0, "visibility": "private" if entry.private else "public",
        "pushed_at": _CREATED, "created_at": _CREATED, "updated_at": _CREATED,
    }  # fmt: skip


def _link(href: str) -> dict[str, str]:
    """A {"href": ...} link."""
    return {"href": href}


def _branch(state: GitHubState, pull: Pull, ref: str, sha: str) -> dict[str, Any]:
    """The head or base of a PR."""
    entry = state.repos[f"{pull.owner}/{pull.repo}"]
    owner = Actor(pull.owner)
    return {"label": f"{pull.owner}:{ref}", "ref": ref, "sha": sha,
            "user": user_json(owner, state.api), "repo": repo_json(entry, state.api)}  # fmt: skip


def pull_json(state: GitHubState, pull: Pull) -> dict[str, Any]:
    """A PullRequest."""
    full, api = f"{pull.owner}/{pull.repo}", state.api
    url, html = f"{api}/repos/{full}/pulls/{pull.number}", f"{HTML}/{full}/pull/{pull.number}"
    issue = f"{api}/repos/{full}/issues/{pull.number}"
    diff = pull.diff
    links = {"self": url, "html": html, "issue": issue, "comments": f"{issue}/comments",
             "review_comments": f"{url}/comments", "commits": f"{url}/commits",
             "review_comment": f"{api}/repos/{full}/pulls/comments{{/number}}",
             "statuses": f"{api}/repos/{full}/statuses/{pull.head_sha}"}  # fmt: skip
    return {
        "url": url, "id": pull.id, "node_id": node_id("PullRequest", pull.id), "html_url": html,
        "diff_url": f"{html}.diff", "patch_url": f"{html}.patch", "issue_url": issue,
        "commits_url": links["commits"], "review_comments_url": links["review_comments"],
        "review_comment_url": links["review_comment"], "comments_url": links["comments"],
        "statuses_url": links["statuses"], "number": pull.number, "state": pull.state,
        "locked": False, "title": pull.title, "user": user_json(pull.author, api),
        "body": pull.body, "labels": [], "milestone": None, "active_lock_reason": None,
        "created_at": pull.created_at, "updated_at": pull.updated_at,
        "closed_at": None if pull.state == "open" else pull.updated_at, "merged_at": None,
        "merge_commit_sha": fake_sha("merge", pull.head_sha), "assignee": None,
        "assignees": [], "requested_reviewers": [], "requested_teams": [],
        "head": _branch(state, pull, pull.head_ref, pull.head_sha),
        "base": _branch(state, pull, pull.base_ref, pull.base_sha),
        "_links": {k: _link(v) for k, v in links.items()},
        "author_association": state.association(full, pull.author), "auto_merge": None,
        "draft": pull.draft, "merged": False, "mergeable": True, "rebaseable": True,
        "mergeable_state": "draft" if pull.draft else "clean", "merged_by": None,
        "comments": len(state.comments_of(full, pull.number)),
        "review_comments": len(state.review_comments_of(full, pull.number)),
        "maintainer_can_modify": False, "commits": len(pull.heads),
        "additions": sum(f.additions for f in diff.files),
        "deletions": sum(f.deletions for f in diff.files), "changed_files": len(diff.files),
    }  # fmt: skip


def diff_entry_json(state: GitHubState, pull: Pull, file: FileDiff) -> dict[str, Any]:
    """A DiffEntry of `pulls/{n}/files` (no patch for binary or patchless files)."""
    full, path = f"{pull.owner}/{pull.repo}", quote(file.path)
    sha = file.new_sha or file.old_sha
    entry: dict[str, Any] = {
        "sha": sha, "filename": file.path, "status": file.status,
        "additions": file.additions, "deletions": file.deletions,
        "changes": file.additions + file.deletions,
        "blob_url": f"{HTML}/{full}/blob/{pull.head_sha}/{path}",
        "raw_url": f"{HTML}/{full}/raw/{pull.head_sha}/{path}",
        "contents_url": f"{state.api}/repos/{full}/contents/{path}?ref={pull.head_sha}",
    }  # fmt: skip
    if file.patch is not None and file.path not in pull.patchless:
        entry["patch"] = file.patch
    if file.previous_path is not None:
        entry["previous_filename"] = file.previous_path
    return entry


def issue_comment_json(state: GitHubState, comment: IssueComment) -> dict[str, Any]:
    """An IssueComment."""
    api, full = state.api, comment.repo
    via_app = comment.author == state.bot
    return {
        "id": comment.id, "node_id": node_id("IssueComment", comment.id),
        "url": f"{api}/repos/{full}/issues/comments/{comment.id}",
        "html_url": f"{HTML}/{full}/pull/{comment.number}#issuecomment-{comment.id}",
        "body": comment.body, "user": user_json(comment.author, api),
        "created_at": comment.created_at, "updated_at": comment.updated_at,
        "issue_url": f"{api}/repos/{full}/issues/{comment.number}",
        "author_association": state.association(full, comment.author),
        "performed_via_github_app": integration_json(state) if via_app else None,
    }  # fmt: skip


def review_json(state: GitHubState, review: Review) -> dict[str, Any]:
    """A PullRequestReview."""
    full = review.repo
    html = f"{HTML}/{full}/pull/{review.number}#pullrequestreview-{review.id}"
    pull_url = f"{state.api}/repos/{full}/pulls/{review.number}"
    data = {
        "id": review.id, "node_id": node_id("PullRequestReview", review.id),
        "user": user_json(review.author, state.api), "body": review.body,
        "state": review.state, "html_url": html, "pull_request_url": pull_url,
        "_links": {"html": _link(html), "pull_request": _link(pull_url)},
        "commit_id": review.commit_id,
        "author_association": state.association(full, review.author),
    }  # fmt: skip
    if review.submitted_at is not None:
        data["submitted_at"] = review.submitted_at
    return data


def review_comment_json(state: GitHubState, comment: ReviewComment) -> dict[str, Any]:
    """A PullRequestReviewComment."""
    full, api = comment.repo, state.api
    url = f"{api}/repos/{full}/pulls/comments/{comment.id}"
    html = f"{HTML}/{full}/pull/{comment.number}#discussion_r{comment.id}"
    pull_url = f"{api}/repos/{full}/pulls/{comment.number}"
    return {
        "url": url, "pull_request_review_id": comment.review_id, "id": comment.id,
        "node_id": node_id("PullRequestReviewComment", comment.id),
        "diff_hunk": comment.diff_hunk, "path": comment.path, "commit_id": comment.commit_id,
        "original_commit_id": comment.commit_id, "user": user_json(comment.author, api),
        "body": comment.body, "created_at": comment.created_at,
        "updated_at": comment.updated_at, "html_url": html, "pull_request_url": pull_url,
        "author_association": state.association(full, comment.author),
        "_links": {"self": _link(url), "html": _link(html), "pull_request": _link(pull_url)},
        "start_line": comment.start_line, "original_start_line": comment.start_line,
        "start_side": comment.start_side, "line": comment.line, "original_line": comment.line,
        "side": comment.side, "subject_type": "line",
    }  # fmt: skip


def integration_json(state: GitHubState) -> dict[str, Any]:
    """The app (Integration), as GET /app answers."""
    owner = Actor("pr-council-org", "Organization")
    return {
        "id": state.app_id, "slug": state.slug, "node_id": node_id("Integration", state.app_id),
        "client_id": f"Iv1.{state.app_id:016x}", "owner": user_json(owner, state.api),
        "name": "PR Council", "description": "A council of reviewers for pull requests.",
        "external_url": "https://example.com/pr-council",
        "html_url": f"{HTML}/apps/{state.slug}", "created_at": _CREATED,
        "updated_at": _CREATED, "permissions": APP_PERMISSIONS, "events": APP_EVENTS,
        "installations_count": len(state.installations),
    }  # fmt: skip


def installation_json(state: GitHubState, inst: Installation) -> dict[str, Any]:
    """An Installation."""
    account = Actor(inst.account, "Organization")
    return {
        "id": inst.id, "account": user_json(account, state.api),
        "repository_selection": "selected",
        "access_tokens_url": f"{state.api}/app/installations/{inst.id}/access_tokens",
        "repositories_url": f"{state.api}/installation/repositories",
        "html_url": f"{HTML}/organizations/{inst.account}/settings/installations/{inst.id}",
        "app_id": state.app_id, "app_slug": state.slug, "target_id": account.id,
        "target_type": "Organization",
        "permissions": {k: "read" for k in APP_PERMISSIONS} if inst.read_only else APP_PERMISSIONS,
        "events": APP_EVENTS, "created_at": _CREATED, "updated_at": _CREATED,
        "single_file_name": None, "suspended_by": None, "suspended_at": None,
    }  # fmt: skip


def check_run_json(state: GitHubState, run: CheckRun) -> dict[str, Any]:
    """A CheckRun."""
    url = f"{state.api}/repos/{run.repo}/check-runs/{run.id}"
    pulls = [p for p in state.pulls.values()
             if f"{p.owner}/{p.repo}" == run.repo and p.head_sha == run.head_sha]  # fmt: skip
    return {
        "id": run.id, "head_sha": run.head_sha, "node_id": node_id("CheckRun", run.id),
        "external_id": run.external_id, "url": url,
        "html_url": f"{HTML}/{run.repo}/runs/{run.id}", "details_url": run.details_url,
        "status": run.status, "conclusion": run.conclusion, "started_at": run.started_at,
        "completed_at": run.completed_at, "name": run.name,
        "output": {"title": run.title, "summary": run.summary, "text": run.text,
                   "annotations_count": len(run.annotations),
                   "annotations_url": f"{url}/annotations"},
        "check_suite": {"id": numeric_id(f"{run.repo}@{run.head_sha}")},
        "app": integration_json(state),
        "pull_requests": [_minimal_pull(state, p) for p in pulls],
    }  # fmt: skip


def _minimal_pull(state: GitHubState, pull: Pull) -> dict[str, Any]:
    """A PullRequestMinimal."""
    entry = state.repos[f"{pull.owner}/{pull.repo}"]
    repo = {"id": entry.id, "url": f"{state.api}/repos/{entry.full_name}", "name": entry.name}
    return {
        "id": pull.id, "number": pull.number,
        "url": f"{state.api}/repos/{entry.full_name}/pulls/{pull.number}",
        "head": {"ref": pull.head_ref, "sha": pull.head_sha, "repo": repo},
        "base": {"ref": pull.base_ref, "sha": pull.base_sha, "repo": repo},
    }  # fmt: skip


def content_json(
    state: GitHubState, entry: Repo, ref: str, path: str, data: bytes | None
) -> dict[str, Any]:
    """A ContentFile (data given) or a directory item (data None)."""
    full, api = entry.full_name, state.api
    sha = blob_sha(data) if data is not None else fake_sha(full, ref, path)
    kind = "file" if data is not None else "dir"
    url = f"{api}/repos/{full}/contents/{quote(path)}?ref={ref}"
    git = f"{api}/repos/{full}/git/{'blobs' if data is not None else 'trees'}/{sha}"
    html = f"{HTML}/{full}/{'blob' if data is not None else 'tree'}/{ref}/{quote(path)}"
    download = f"https://raw.githubusercontent.com/{full}/{ref}/{quote(path)}"
    item: dict[str, Any] = {
        "type": kind, "size": len(data or b""), "name": path.rsplit("/", 1)[-1], "path": path,
        "sha": sha, "url": url, "git_url": git, "html_url": html,
        "download_url": download if data is not None else None,
        "_links": {"self": url, "git": git, "html": html},
    }  # fmt: skip
    if data is not None:
        too_big = len(data) > 1_000_000
        encoded = base64.b64encode(data).decode()
        item["encoding"] = "none" if too_big else "base64"
        item["content"] = (
            ""
            if too_big
            else "".join(encoded[i : i + 60] + "\n" for i in range(0, len(encoded), 60))
        )
    return item


def tree_json(
    state: GitHubState, entry: Repo, commit: str, prefix: str, *, recursive: bool
) -> dict[str, Any]:
    """A GitTree of a commit's files under `prefix` (a directory path ending in "/" or "")."""
    files = entry.commits[commit]
    base = f"{state.api}/repos/{entry.full_name}/git"
    items: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in files if p.startswith(prefix)):
        rel = path[len(prefix) :]
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            directory = "/".join(parts[:depth])
            if recursive or depth == 1:
                items.setdefault(
                    directory, _tree_item(state, entry, commit, prefix + directory + "/", directory)
                )
        if recursive or len(parts) == 1:
            sha = blob_sha(files[path])
            items[rel] = {"path": rel, "mode": "100644", "type": "blob", "sha": sha,
                          "size": len(files[path]), "url": f"{base}/blobs/{sha}"}  # fmt: skip
    sha = register_tree(entry, commit, prefix)
    tree = [items[k] for k in sorted(items)]
    return {"sha": sha, "url": f"{base}/trees/{sha}", "tree": tree, "truncated": False}


def _tree_item(
    state: GitHubState, entry: Repo, commit: str, prefix: str, rel: str
) -> dict[str, Any]:
    """A subdirectory entry of a tree."""
    sha = register_tree(entry, commit, prefix)
    url = f"{state.api}/repos/{entry.full_name}/git/trees/{sha}"
    return {"path": rel, "mode": "040000", "type": "tree", "sha": sha, "url": url}


def register_tree(entry: Repo, commit: str, prefix: str) -> str:
    """The (content-derived) sha of a directory, remembered so it can be fetched."""
    files = entry.commits[commit]
    sha = fake_sha(
        "tree", sorted((p, blob_sha(d)) for p, d in files.items() if p.startswith(prefix))
    )
    entry.trees[sha] = (commit, prefix)
    return sha


def permission_json(state: GitHubState, entry: Repo, login: str) -> dict[str, Any]:
    """A RepositoryCollaboratorPermission."""
    permission = state.permission(entry, login)
    legacy = {"maintain": "write", "triage": "read"}.get(permission, permission)
    user = {**user_json(Actor(login), state.api), "role_name": permission}
    return {"permission": legacy, "role_name": permission, "user": user}
