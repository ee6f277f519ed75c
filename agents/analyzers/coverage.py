"""Diff coverage: read a Cobertura XML or LCOV report and flag changed lines no test ran."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Literal
from xml.parsers import expat

from agents.analyzers.base import make_finding
from agents.analyzers.test_map import is_python_source
from agents.model import AnalyzerResult, ChangedFile, Finding, ReviewContext, Skipped

TOOL = "diff-coverage"
RULE = "uncovered-lines"

ReportFormat = Literal["cobertura", "lcov"]

_LCOV_LINE = re.compile(r"^(?:[A-Z]+:.*|end_of_record)$")


class CoverageError(ValueError):
    """The coverage report is empty, malformed or in a format this tool does not read."""


@dataclass(frozen=True)
class FileCoverage:
    """One file of a report: each coverable line and how often it ran."""

    path: str
    lines: Mapping[int, int]


@dataclass(frozen=True)
class CoverageData:
    """A parsed coverage report."""

    format: ReportFormat
    files: tuple[FileCoverage, ...] = ()
    # Cobertura <source> roots the file names are relative to.
    sources: tuple[str, ...] = ()


def parse_coverage(text: str) -> CoverageData:
    """Parse a Cobertura XML or LCOV report, detecting which; raise CoverageError if neither."""
    body = text.lstrip("\ufeff \t\r\n")
    if not body:
        raise CoverageError("the coverage report is empty")
    if body.startswith("<"):
        return _parse_cobertura(body)
    if body.startswith("{"):
        raise CoverageError(
            "JSON coverage reports are not read; use `coverage xml` or `coverage lcov`"
        )
    if re.search(r"^SF:", body, re.M):
        return _parse_lcov(body)
    raise CoverageError("unrecognised coverage report (expected Cobertura XML or LCOV)")


def _normal(path: str) -> str:
    """Use forward slashes, so Windows-made reports match too."""
    return path.strip().replace("\\", "/")


def _merge(files: dict[str, dict[int, int]], path: str, line: int, hits: int) -> None:
    """Record a line; a line reported twice counts as run if either run did."""
    lines = files.setdefault(path, {})
    lines[line] = max(hits, lines.get(line, hits))


def _parse_lcov(text: str) -> CoverageData:
    """Read LCOV records: `SF:` opens a file, `DA:line,hits[,checksum]` marks a line."""
    files: dict[str, dict[int, int]] = {}
    current: str | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if not _LCOV_LINE.match(line):
            raise CoverageError(f"line {number} of the LCOV report is not an LCOV record")
        if line.startswith("SF:"):
            current = _normal(line[3:])
            files.setdefault(current, {})
        elif line == "end_of_record":
            current = None
        elif line.startswith("DA:"):
            if current is None:
                raise CoverageError(f"line {number} of the LCOV report has DA: outside a record")
            _merge(files, current, *_lcov_da(line[3:], number))
    return CoverageData(format="lcov", files=_freeze(files))


def _lcov_da(value: str, number: int) -> tuple[int, int]:
    """Parse `line,hits[,checksum]`."""
    parts = value.split(",")
    try:
        return int(parts[0]), int(parts[1])
    except (ValueError, IndexError):
        raise CoverageError(
            f"line {number} of the LCOV report has a malformed DA: record"
        ) from None


def _freeze(files: dict[str, dict[int, int]]) -> tuple[FileCoverage, ...]:
    """Turn the parse tables into records, dropping impossible line numbers."""
    return tuple(
        FileCoverage(path=p, lines={n: h for n, h in lines.items() if n >= 1})
        for p, lines in files.items()
        if p
    )


@dataclass
class _Cobertura:
    """Streaming state while reading a Cobertura document."""

    files: dict[str, dict[int, int]] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    filename: str | None = None
    text: list[str] | None = None
    root_seen: bool = False

    def start(self, name: str, attrs: dict[str, str]) -> None:
        """Handle an opening tag."""
        if not self.root_seen:
            if name != "coverage":
                raise CoverageError(f"XML root is <{name}>, not a Cobertura <coverage> report")
            self.root_seen = True
        elif name == "class":
            self.filename = _normal(attrs.get("filename", "")) or None
            if self.filename is not None:
                # A file with no statements (an empty __init__.py) is still in the report.
                self.files.setdefault(self.filename, {})
        elif name == "line" and self.filename is not None:
            _merge(self.files, self.filename, *_cobertura_line(attrs))
        elif name == "source":
            self.text = []

    def end(self, name: str) -> None:
        """Handle a closing tag."""
        if name == "class":
            self.filename = None
        elif name == "source" and self.text is not None:
            self.sources.append(_normal("".join(self.text)))
            self.text = None

    def chars(self, data: str) -> None:
        """Collect <source> text."""
        if self.text is not None:
            self.text.append(data)


def _cobertura_line(attrs: Mapping[str, str]) -> tuple[int, int]:
    """Parse a <line number=".." hits=".."/> element."""
    try:
        return int(attrs["number"]), int(attrs["hits"])
    except (KeyError, ValueError):
        raise CoverageError(f"malformed <line> element in the Cobertura report: {attrs}") from None


def _refuse_entity(name: str, *_: object) -> None:
    """Refuse every entity declaration: blocks entity-expansion bombs and external entities."""
    raise CoverageError(f"the XML report declares an entity ({name!r}); refusing to expand it")


def _parse_cobertura(text: str) -> CoverageData:
    """Stream-parse Cobertura XML with expat, refusing entity declarations.

    expat from the standard library is used directly: a Cobertura report needs no DTD
    entities, and refusing every declaration is the policy defusedxml applies by default,
    without a new dependency (expat also never fetches external DTDs on its own).
    """
    state = _Cobertura()
    parser = expat.ParserCreate(encoding="utf-8")
    parser.buffer_text = True
    parser.StartElementHandler = state.start
    parser.EndElementHandler = state.end
    parser.CharacterDataHandler = state.chars
    parser.EntityDeclHandler = _refuse_entity
    try:
        parser.Parse(text.encode("utf-8"), True)
    except expat.ExpatError as exc:
        raise CoverageError(f"malformed XML coverage report: {exc}") from None
    return CoverageData(
        format="cobertura", files=_freeze(state.files), sources=tuple(state.sources)
    )


def _candidates(report: FileCoverage, sources: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Return the path components a report file may stand for, with each source root."""
    name = report.path
    paths = [name] if name.startswith("/") else [name, *(f"{s}/{name}" for s in sources)]
    return [tuple(p for p in path.split("/") if p not in ("", ".")) for path in paths]


def _suffix_len(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    """Count the whole trailing path components `a` and `b` share."""
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def match_files(changed: Iterable[str], data: CoverageData) -> dict[str, FileCoverage]:
    """Pair changed repo paths with report files by the longest common path suffix.

    A pair counts only when each is the other's unique best match, so `a/util.py` and
    `b/util.py` never both claim one report entry.
    """
    by_name: dict[str, list[tuple[FileCoverage, list[tuple[str, ...]]]]] = {}
    for report in data.files:
        candidates = _candidates(report, data.sources)
        by_name.setdefault(PurePosixPath(report.path).name, []).append((report, candidates))
    scores: dict[tuple[str, str], int] = {}
    for path in changed:
        parts = tuple(PurePosixPath(path).parts)
        for report, candidates in by_name.get(parts[-1] if parts else "", []):
            scores[path, report.path] = max(_suffix_len(parts, c) for c in candidates)
    reports = {r.path: r for r in data.files}
    return {path: reports[rp] for (path, rp) in _mutual_best(scores)}


def _mutual_best(scores: Mapping[tuple[str, str], int]) -> list[tuple[str, str]]:
    """Keep the pairs that are the unique best for both their sides."""
    best_left: dict[str, int] = {}
    best_right: dict[str, int] = {}
    for (left, right), score in scores.items():
        best_left[left] = max(score, best_left.get(left, 0))
        best_right[right] = max(score, best_right.get(right, 0))
    top = [(lr, s) for lr, s in scores.items() if s == best_left[lr[0]] == best_right[lr[1]]]
    lefts = [lr[0] for lr, _ in top]
    rights = [lr[1] for lr, _ in top]
    return [lr for lr, _ in top if lefts.count(lr[0]) == 1 and rights.count(lr[1]) == 1]


def uncovered_runs(added: Iterable[int], lines: Mapping[int, int]) -> list[tuple[int, int]]:
    """Group uncovered added lines into runs; blank or comment lines do not break a run.

    A run breaks at a covered line or at an unchanged line between two added ones.
    """
    runs: list[tuple[int, int]] = []
    start: int | None = None
    end = previous = -1
    for n in sorted(added):
        if start is not None and (n != previous + 1 or lines.get(n, 0) > 0):
            runs.append((start, end))
            start = None
        if n in lines and lines[n] <= 0:
            start, end = (n if start is None else start), n
        previous = n
    if start is not None:
        runs.append((start, end))
    return runs


@dataclass(frozen=True)
class _Tally:
    """Changed coverable lines, and how many of them ran."""

    coverable: int = 0
    covered: int = 0

    def add(self, added: Iterable[int], lines: Mapping[int, int]) -> _Tally:
        """Count one file's added lines that the report measured."""
        measured = [lines[n] for n in added if n in lines]
        return _Tally(self.coverable + len(measured), self.covered + sum(h > 0 for h in measured))

    def note(self) -> str:
        """Render the diff-coverage summary line."""
        if not self.coverable:
            return "diff coverage: no changed lines are coverable in the report"
        percent = round(100 * self.covered / self.coverable, 1)
        if self.covered < self.coverable:
            # Never round a change with a missed line up to a perfect score.
            percent = min(percent, 99.9)
        return (
            f"diff coverage: {percent:.1f}% ({self.covered} of {self.coverable} "
            "changed coverable lines covered)"
        )


class CoverageAnalyzer:
    """Flag added lines a coverage report measured and no test executed."""

    name = TOOL

    def run(self, ctx: ReviewContext) -> AnalyzerResult:
        """Compare the diff with the coverage report, if one was given."""
        if ctx.coverage_report is None:
            return AnalyzerResult(tool=TOOL)
        try:
            data = parse_coverage(ctx.coverage_report)
        except CoverageError as exc:
            return AnalyzerResult(tool=TOOL, notes=(f"coverage report not used: {exc}",))
        return _compare(ctx, data)


def _compare(ctx: ReviewContext, data: CoverageData) -> AnalyzerResult:
    """Build findings per uncovered run, the percentage note and the unmatched files."""
    changed = _changed(ctx)
    matched = match_files((f.path for f in changed), data)
    stale = {p: reason for p, r in matched.items() if (reason := _stale(ctx, p, r))}
    matched = {p: r for p, r in matched.items() if p not in stale}
    findings: list[Finding] = []
    tally = _Tally()
    for f in changed:
        report = matched.get(f.path)
        if report is not None:
            tally = tally.add(f.added, report.lines)
            findings.extend(
                _finding(ctx, f.path, run) for run in uncovered_runs(f.added, report.lines)
            )
    missing = [
        f.path
        for f in changed
        if f.path not in matched | stale and is_python_source(f.path, ctx.files.get(f.path))
    ]
    skipped = [Skipped(path=p, reason=reason, by=TOOL) for p, reason in stale.items()]
    skipped += [Skipped(path=p, reason="not in the coverage report", by=TOOL) for p in missing]
    return AnalyzerResult(
        tool=TOOL,
        findings=tuple(findings),
        skipped=tuple(skipped),
        notes=_notes(tally, matched, missing),
    )


def _stale(ctx: ReviewContext, path: str, report: FileCoverage) -> str | None:
    """Tell why a report entry cannot describe the head text, if it cannot."""
    text = ctx.files.get(path)
    last = max(report.lines, default=0)
    if text is None or last <= len(text.splitlines()):
        return None
    # A report from another revision would put findings on the wrong lines.
    return f"the coverage report does not match this revision (it measures line {last})"


def _notes(
    tally: _Tally, matched: Mapping[str, FileCoverage], missing: list[str]
) -> tuple[str, ...]:
    """Give the percentage, or say why there is none."""
    if matched:
        return (tally.note(),)
    if missing:
        return ("diff coverage: none of the changed source files is in the coverage report",)
    return ()


def _changed(ctx: ReviewContext) -> list[ChangedFile]:
    """Return changed files with added lines that the council did not already set aside."""
    set_aside = {s.path for s in ctx.skipped}
    return [
        f for f in ctx.diff.files if f.added and f.status != "deleted" and f.path not in set_aside
    ]


def _finding(ctx: ReviewContext, path: str, run: tuple[int, int]) -> Finding:
    """Build the finding for one run of uncovered added lines."""
    start, end = run
    where = f"Line {start} is" if start == end else f"Lines {start}\u2013{end} are"
    return make_finding(
        ctx,
        agent="test-coverage",
        severity="minor",
        # Measured by the test run that produced the report, not guessed.
        confidence=0.95,
        path=path,
        line=start,
        end_line=end,
        title=f"{where} not covered by tests",
        body=(
            "The coverage report measured these added lines and no test executed them. "
            "Add a test that reaches this code, or explain why it cannot run under test."
        ),
        rule=RULE,
        source=f"{TOOL}:{RULE}",
    )
