"""Turn ruff's fixes into suggestions: the flagged lines as the fixes would leave them."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

from agents.analyzers.ruff_output import RuffDiagnostic, RuffLocation

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_TRAILING_BREAK = re.compile(r"(?:\r\n|\r|\n)\Z")


def _line_starts(text: str) -> list[int]:
    """Return each line's start offset (ruff's line breaks), plus the text's end."""
    return [0, *(m.end() for m in _LINE_BREAK.finditer(text)), len(text)]


def _offset(starts: Sequence[int], loc: RuffLocation) -> int:
    """Turn a 1-based row/column into a string offset (past the end clamps to the end)."""
    if loc.row > len(starts) - 1:
        return starts[-1]
    return min(starts[loc.row - 1] + loc.column - 1, starts[-1])


def fix_suggestion(text: str, *diags: RuffDiagnostic) -> str | None:
    """Return the diagnostics' lines as ruff's fixes would leave them, or None.

    The lines run from the first diagnostic's row to the last one's end row. None when
    a diagnostic has no usable fix, an edit reaches outside those lines, or edits
    overlap; an empty string means "delete these lines".
    """
    fixes = [d.fix for d in diags]
    if not fixes or any(
        f is None or not f.edits or f.applicability == "display-only" for f in fixes
    ):
        return None
    starts = _line_starts(text)
    first_row = min(d.location.row for d in diags)
    first = starts[min(first_row, len(starts) - 1) - 1]
    last_row = max(d.end_location.row for d in diags)
    last = _offset(starts, RuffLocation(row=last_row + 1, column=1))
    edits = [e for f in fixes if f is not None for e in f.edits]
    spans = sorted(
        (_offset(starts, e.location), _offset(starts, e.end_location), e.content) for e in edits
    )
    if any(start < first or end > last for start, end, _ in spans) or _overlap(spans):
        return None
    segment = text[first:last]
    for start, end, content in reversed(spans):
        segment = segment[: start - first] + content + segment[end - first :]
    return _whole_lines(text[first:last], segment)


def _overlap(spans: Sequence[tuple[int, int, str]]) -> bool:
    """Tell whether sorted edit spans overlap (two fixes touching the same text)."""
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


def _whole_lines(before: str, after: str) -> str | None:
    """Drop the final line break; None if the fix joined the lines to the next or did nothing."""
    if not after:
        return ""
    if _TRAILING_BREAK.search(before) and not _TRAILING_BREAK.search(after):
        return None
    lines = _TRAILING_BREAK.sub("", after, count=1)
    return None if lines == _TRAILING_BREAK.sub("", before, count=1) else lines
