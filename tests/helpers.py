"""Build real ReviewContexts from before/after file maps, for unit tests."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from agents.diff import parse_diff
from agents.model import ReviewContext


def unified_diff(head: Mapping[str, str | None], base: Mapping[str, str] | None = None) -> str:
    """Return a git-style unified diff turning `base` into `head` (None deletes a file)."""
    base = base or {}
    out: list[str] = []
    for path in sorted(set(base) | set(head)):
        old, new = base.get(path), head.get(path, base.get(path))
        if old == new:
            continue
        out.append(f"diff --git a/{path} b/{path}\n")
        if old is None or new is None:
            out.append(f"{'new' if old is None else 'deleted'} file mode 100644\n")
        lines = difflib.unified_diff(
            _lines(old),
            _lines(new),
            fromfile=f"a/{path}" if old is not None else "/dev/null",
            tofile=f"b/{path}" if new is not None else "/dev/null",
        )
        out.extend(
            line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
            for line in lines
        )
    return "".join(out)


def _lines(text: str | None) -> list[str]:
    return [] if text is None else text.splitlines(keepends=True)


def context_from(
    head: Mapping[str, str | None], base: Mapping[str, str] | None = None, **fields: Any
) -> ReviewContext:
    """Build a ReviewContext for the change from `base` to `head`."""
    diff = parse_diff(unified_diff(head, base))
    files = {p: t for p, t in head.items() if t is not None}
    fields.setdefault(
        "repo_files",
        tuple(sorted(set(files) | set(base or {}) - {p for p, t in head.items() if t is None})),
    )
    return ReviewContext(target="test", diff=diff, files=files, **fields)
