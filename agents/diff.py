"""Unified diff text -> files, hunks and the lines a reviewer may comment on."""

from __future__ import annotations

import re
from collections.abc import Iterable

from unidiff.errors import UnidiffParseError
from unidiff.patch import PatchedFile, PatchSet

from agents.model import ChangedFile, Diff, FileStatus, Hunk

_DIFF_START = re.compile(r"^(diff --git |--- |\+\+\+ |@@ |Binary files )", re.MULTILINE)
_HUNK_LINE = re.compile(r"^@@.*$", re.MULTILINE)
_HUNK_HEADER = re.compile(r"^@@ -\d+(?:,\d+)? \+\d+(?:,\d+)? @@")


class DiffError(ValueError):
    """The input is not a unified diff this tool can read."""


def parse_diff(text: str) -> Diff:
    """Parse a unified (git) diff; raise DiffError if it is not one."""
    if not text.strip():
        return Diff()
    if not _DIFF_START.search(text):
        raise DiffError("input is not a unified diff (no 'diff --git', '---' or '@@' lines)")
    # unidiff silently drops a section whose hunk header it cannot read.
    bad = next((h for h in _HUNK_LINE.findall(text) if not _HUNK_HEADER.match(h)), None)
    if bad is not None:
        raise DiffError(f"malformed hunk header: {bad[:80]!r}")
    try:
        patch = PatchSet(text)
    except UnidiffParseError as exc:
        raise DiffError(f"malformed unified diff: {exc}") from exc
    files = [_changed_file(f) for f in patch]
    if not files:
        raise DiffError("input is not a unified diff (no file sections found)")
    return Diff(files=tuple(files))


def from_file_patches(entries: Iterable[tuple[str, str | None, FileStatus, str | None]]) -> Diff:
    """Build a Diff from GitHub `pulls/{n}/files` entries: (path, patch, status, old_path).

    Those patches carry no `---`/`+++` header (REST docs, "List pull requests files"),
    which unidiff needs, so one is added; an entry without a patch (binary or too
    large) becomes a file with `has_patch=False`.
    """
    files: list[ChangedFile] = []
    for path, patch, status, old_path in entries:
        if patch is None:
            files.append(ChangedFile(path=path, old_path=old_path, status=status, has_patch=False))
            continue
        header = _header(path, old_path or path, status)
        parsed = parse_diff(header + patch if patch.endswith("\n") else header + patch + "\n")
        files.extend(f.model_copy(update={"status": status}) for f in parsed.files)
    return Diff(files=tuple(files))


def _header(path: str, old_path: str, status: FileStatus) -> str:
    """Return the `diff --git`/`---`/`+++` lines unidiff expects."""
    source = "/dev/null" if status == "added" else f"a/{old_path}"
    target = "/dev/null" if status == "deleted" else f"b/{path}"
    # unidiff reads `+++ /dev/null` after `diff --git` only with git's mode line.
    mode = {"added": "new file mode 100644\n", "deleted": "deleted file mode 100644\n"}
    return f"diff --git a/{old_path} b/{path}\n{mode.get(status, '')}--- {source}\n+++ {target}\n"


def _changed_file(f: PatchedFile) -> ChangedFile:
    """Convert one unidiff file into our plain record."""
    added: set[int] = set()
    removed: set[int] = set()
    context: set[int] = set()
    hunks: list[Hunk] = []
    for h in f:
        hunks.append(
            Hunk(
                source_start=h.source_start,
                source_length=h.source_length,
                target_start=h.target_start,
                target_length=h.target_length,
                section=h.section_header or "",
            )
        )
        # unidiff numbers added/context lines on the target side, removed on the source.
        added.update(ln.target_line_no for ln in h if ln.is_added and ln.target_line_no)
        removed.update(ln.source_line_no for ln in h if ln.is_removed and ln.source_line_no)
        context.update(ln.target_line_no for ln in h if ln.is_context and ln.target_line_no)
    path, old_path = _paths(f)
    return ChangedFile(
        path=path,
        old_path=old_path,
        status=_status(f),
        binary=bool(f.is_binary_file),
        has_patch=not f.is_binary_file,
        hunks=tuple(hunks),
        added=frozenset(added),
        removed=frozenset(removed),
        context=frozenset(context),
    )


def _status(f: PatchedFile) -> FileStatus:
    """Classify a patched file."""
    if f.is_added_file:
        return "added"
    if f.is_removed_file:
        return "deleted"
    if f.is_rename:
        return "renamed"
    return "modified"


def _paths(f: PatchedFile) -> tuple[str, str | None]:
    """Return (head path, old path when renamed)."""
    path = _strip(f.target_file) if f.target_file and f.target_file != "/dev/null" else f.path
    if f.is_rename:
        return path, _strip(f.source_file)
    return path, None


def _strip(name: str) -> str:
    """Drop git's `a/` or `b/` prefix."""
    return name[2:] if name[:2] in ("a/", "b/") else name


def new_file_texts(text: str) -> dict[str, str]:
    """Return the whole text of each file the diff adds: every line of it is in the diff."""
    try:
        patch = PatchSet(text)
    except UnidiffParseError:
        return {}
    return {
        _paths(f)[0]: "".join(line.value for h in f for line in h if line.is_added)
        for f in patch
        if f.is_added_file and not f.is_binary_file
    }
