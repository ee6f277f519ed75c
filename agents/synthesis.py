"""Merge the specialists' reports into one ranked, de-duplicated, placed review."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from agents.model import (
    AgentReport,
    Finding,
    Mode,
    PreviousFinding,
    Review,
    ReviewContext,
    Skipped,
    at_least,
    severity_rank,
)

# bandit's Bnnn tests and ruff's flake8-bandit Snnn rules share their numbers.
_BANDIT = re.compile(r"^B(\d{3})$")
_WORDS = re.compile(r"[^a-z0-9]+")
# Our AST rules that ruff also implements: perf-ast's blocking-call rules and ruff's ASYNC2xx.
_ALIASES = {
    **dict.fromkeys(("ASYNC210", "ASYNC211", "ASYNC212", "ASYNC220", "ASYNC221"), "PCA008"),
    **dict.fromkeys(("ASYNC222", "ASYNC251"), "PCA008"),
    **dict.fromkeys(("ASYNC230", "ASYNC240"), "PCA009"),
}
# Hard-coded password (259) and hard-coded key (321) are kinds of hard-coded credentials (798).
_CWE_FAMILY = {259: 798, 321: 798}


def synthesize(ctx: ReviewContext, reports: Sequence[AgentReport], *, mode: Mode) -> Review:
    """Build the review from the specialists' reports."""
    merged = rank(dedupe(f for r in reports for f in r.findings))
    placed = place(ctx, merged)
    previous = {p.fingerprint for p in ctx.previous}
    return Review(
        mode=mode,
        target=ctx.target,
        findings=tuple(_with_status(f, previous) for f in placed),
        resolved=tuple(resolved_since(ctx.previous, placed)),
        skipped=_unique_skips([*ctx.skipped, *(s for r in reports for s in r.skipped)]),
        agents=tuple(reports),
        notes=_unique(n for r in reports for n in r.notes),
        files_reviewed=len(ctx.files),
    )


def rank(findings: Iterable[Finding]) -> list[Finding]:
    """Order by severity, then confidence, then position."""
    return sorted(
        findings,
        key=lambda f: (severity_rank(f.severity), -f.confidence, f.path, f.line or 0, f.rule),
    )


def dedupe(findings: Iterable[Finding]) -> list[Finding]:
    """Collapse the same issue found twice into the best report, crediting the others."""
    kept: list[Finding] = []
    for finding in rank(findings):
        twin = next((i for i, k in enumerate(kept) if same_issue(k, finding)), None)
        if twin is None:
            kept.append(finding)
        else:
            kept[twin] = _credit(kept[twin], finding)
    return kept


def same_issue(a: Finding, b: Finding) -> bool:
    """Tell whether two findings describe one issue at one place."""
    if (a.path, a.line) != (b.path, b.line):
        return False
    if a.fingerprint == b.fingerprint or _canonical(a.rule) == _canonical(b.rule):
        return True
    if a.cwe is not None and _CWE_FAMILY.get(a.cwe, a.cwe) == _CWE_FAMILY.get(b.cwe or 0, b.cwe):
        return True
    return _words(a.title) == _words(b.title)


def _canonical(rule: str) -> str:
    """Map a rule onto the one id every tool implementing it shares."""
    m = _BANDIT.match(rule)
    return f"S{m.group(1)}" if m else _ALIASES.get(rule, rule)


def _words(title: str) -> str:
    """Normalise a title for comparison."""
    return _WORDS.sub(" ", title.lower()).strip()


def _credit(kept: Finding, other: Finding) -> Finding:
    """Record that `other` found the issue `kept` stands for."""
    who = other.source if other.agent == kept.agent else f"{other.agent}/{other.source}"
    credits = tuple(dict.fromkeys((*kept.also_found_by, who, *other.also_found_by)))
    return kept.model_copy(update={"also_found_by": credits})


def place(ctx: ReviewContext, findings: Sequence[Finding]) -> list[Finding]:
    """Decide inline or summary for each finding, in rank order, under the inline cap."""
    options, budget, out = ctx.options, ctx.options.max_inline_comments, []
    for f in findings:
        changed = ctx.diff.file(f.path)
        anchored = f.line is not None and changed is not None and changed.commentable(f.line)
        grave = at_least(f.severity, options.inline_min_severity)
        inline = anchored and grave and budget > 0
        budget -= int(inline)
        out.append(f.model_copy(update={"placement": "inline" if inline else "summary"}))
    return out


def _with_status(finding: Finding, previous: set[str]) -> Finding:
    """Mark a finding the last review already reported as still open."""
    return finding.model_copy(
        update={"status": "open" if finding.fingerprint in previous else "new"}
    )


def _unique_skips(skips: Iterable[Skipped]) -> tuple[Skipped, ...]:
    """Merge records of one path skipped for one reason by several tools."""
    tools: dict[tuple[str, str], list[str]] = {}
    for s in skips:
        tools.setdefault((s.path, s.reason), []).append(s.by)
    return tuple(
        Skipped(path=path, reason=reason, by=", ".join(dict.fromkeys(by)))
        for (path, reason), by in tools.items()
    )


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    """Drop repeated strings, keeping order."""
    return tuple(dict.fromkeys(items))


def resolved_since(
    previous: Sequence[PreviousFinding], findings: Sequence[Finding]
) -> list[PreviousFinding]:
    """Return the previous findings no longer reported."""
    current = {f.fingerprint for f in findings}
    return [p for p in previous if p.fingerprint not in current]
