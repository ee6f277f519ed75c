"""Local sources for the CLI: a git revision or a working tree."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

GIT_TIMEOUT_S = 120
_DEFAULT_BRANCHES = ("main", "master", "trunk", "develop")
# git's well-known empty tree object: the base of a root commit.
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


class GitError(RuntimeError):
    """A git command failed; the message is one line for the user."""


def git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    """Run git in `repo` and return its stdout."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo), *args],
            input=stdin,
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError(f"git {args[0]} failed: {exc}") from exc
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()
        raise GitError(f"git {' '.join(args[:2])}: {detail[0] if detail else 'failed'}")
    return proc.stdout


def toplevel(path: Path) -> Path:
    """Return the root of the git work tree containing `path`."""
    if not path.is_dir():
        raise GitError(f"not a directory: {path}")
    try:
        out = git(path, "rev-parse", "--show-toplevel")
    except GitError:
        raise GitError(f"not a git repository: {path}") from None
    return Path(out.decode().strip())


def rev(repo: Path, name: str) -> str:
    """Resolve a revision to a commit id, with a clear error when it is missing."""
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}").decode().strip()
    except GitError:
        raise GitError(f"unknown revision: {name}") from None


def default_base(repo: Path, head: str) -> str:
    """Pick the merge-base of `head` with the default branch, or its parent."""
    for branch in _default_branches(repo):
        base = git(repo, "merge-base", branch, head).decode().strip()
        if base and base != head:
            return base
    # On the default branch itself: review the last commit, or a root commit whole.
    try:
        return rev(repo, f"{head}~1")
    except GitError:
        return EMPTY_TREE


def _default_branches(repo: Path) -> list[str]:
    """List candidate default branches that exist, origin's HEAD first."""
    found = []
    with contextlib.suppress(GitError):
        found.append(git(repo, "symbolic-ref", "-q", "refs/remotes/origin/HEAD").decode().strip())
    refs = [
        f"refs/{kind}/{name}" for name in _DEFAULT_BRANCHES for kind in ("heads", "remotes/origin")
    ]
    listed = git(repo, "for-each-ref", "--format=%(refname)", *refs).decode().split()
    return found + [r for r in refs if r in listed]


def diff_text(repo: Path, base: str, head: str) -> str:
    """Return the unified diff from `base` to `head` (renames detected, no pager tricks)."""
    out = git(repo, "diff", "--no-color", "--no-ext-diff", "--no-textconv", "-M", base, head, "--")
    return out.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class GitTree:
    """Files as they are at one revision."""

    repo: Path
    revision: str

    def paths(self) -> list[str]:
        """List every file path at the revision."""
        out = git(self.repo, "ls-tree", "-r", "-z", "--name-only", self.revision)
        return [p for p in out.decode(errors="replace").split("\0") if p]

    def read_many(self, paths: Iterable[str]) -> dict[str, bytes]:
        """Read many files in one `git cat-file --batch` process."""
        wanted = [p for p in paths if "\n" not in p]
        if not wanted:
            return {}
        request = "".join(f"{self.revision}:{p}\n" for p in wanted).encode()
        return _parse_batch(wanted, git(self.repo, "cat-file", "--batch", stdin=request))


def _parse_batch(paths: list[str], out: bytes) -> dict[str, bytes]:
    """Split `git cat-file --batch` output into blobs (documented in git-cat-file(1))."""
    blobs: dict[str, bytes] = {}
    pos = 0
    for path in paths:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        pos = end + 1
        if len(header) != 3 or header[1] != b"blob":
            continue  # "missing", or a submodule / tree entry
        size = int(header[2])
        blobs[path] = out[pos : pos + size]
        pos += size + 1
    return blobs


@dataclass(frozen=True)
class WorkTree:
    """Files as they are on disk, for `--diff` reviews."""

    root: Path

    def paths(self) -> list[str]:
        """List tracked and untracked-but-not-ignored files (every file outside git)."""
        try:
            out = git(self.root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
        except GitError:
            return _walk(self.root)
        return sorted({p for p in out.decode(errors="replace").split("\0") if p})

    def read_many(self, paths: Iterable[str]) -> dict[str, bytes]:
        """Read the files that exist inside the root."""
        root = self.root.resolve()
        blobs = {}
        for rel in paths:
            target = (root / rel).resolve()
            if target.is_file() and target.is_relative_to(root):
                blobs[rel] = target.read_bytes()
        return blobs


_NOT_SOURCE_DIRS = frozenset({".git", ".venv", "venv", "node_modules", "__pycache__", ".tox"})
MAX_WALK_FILES = 20_000


def _walk(root: Path) -> list[str]:
    """List files under a plain directory, bounded and without tool or VCS folders."""
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _NOT_SOURCE_DIRS)
        base = Path(folder).relative_to(root)
        found.extend((base / name).as_posix() for name in sorted(files))
        if len(found) >= MAX_WALK_FILES:
            break
    return found[:MAX_WALK_FILES]


@dataclass(frozen=True)
class OverlayTree:
    """A work tree, plus files known only from the diff (new files absent on disk)."""

    tree: WorkTree
    extra: dict[str, str]

    def paths(self) -> list[str]:
        """List the work tree's files and the diff's new ones."""
        return sorted(set(self.tree.paths()) | set(self.extra))

    def read_many(self, paths: Iterable[str]) -> dict[str, bytes]:
        """Read from disk first, then from the diff."""
        wanted = list(paths)
        blobs = self.tree.read_many(wanted)
        blobs.update(
            {p: self.extra[p].encode() for p in wanted if p not in blobs and p in self.extra}
        )
        return blobs
