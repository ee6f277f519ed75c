"""Render a Review as the summary comment, inline comment bodies and the JSON report."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from agents.markdown import code_span, plain, sanitise_block, suggestion_block, table_cell
from agents.model import (
    SEVERITIES,
    AgentReport,
    AgentStatus,
    Finding,
    Mode,
    ModelStep,
    PreviousFinding,
    Review,
    Severity,
    Skipped,
    Span,
    count_by_severity,
)
from agents.sarif import render_sarif

__all__ = [
    "COMMENT_LIMIT",
    "SUMMARY_BUDGET",
    "SUMMARY_MARKER",
    "JsonAgent",
    "JsonReport",
    "fingerprint_marker",
    "json_report",
    "parse_fingerprint_marker",
    "render_inline_comment",
    "render_json",
    "render_markdown",
    "render_sarif",
]

SUMMARY_MARKER = "<!-- pr-council:summary -->"
# GitHub rejects an issue or review comment body over 65,536 characters ("body is too long").
COMMENT_LIMIT = 65_536
# Default size of the summary: leaves room for the GitHub layer to append a note.
SUMMARY_BUDGET = 60_000

# Per-item caps, so no single untrusted text can eat the whole comment.
_TITLE_CHARS = 200
_BODY_CHARS = 2_500
_ASSESSMENT_CHARS = 3_000
_SUGGESTION_CHARS = 6_000
_LIST_ITEMS = 25
_SPANS = 40
_COLLAPSE_OVER = 5

_EMOJI: dict[Severity, str] = {"critical": "🔴", "major": "🟠", "minor": "🟡", "nit": "⚪"}
_WORDS: dict[AgentStatus, str] = {
    "ok": "ok",
    "failed": "failed",
    "timed_out": "timed out",
    "skipped": "skipped",
}
_STATUS: dict[AgentStatus, str] = {
    "ok": "✅ ok",
    "failed": "❌ failed",
    "timed_out": "⏱️ timed out",
    "skipped": "⏭️ skipped",
}

# --- markers ---------------------------------------------------------------------------

_FP_MARKER = re.compile(r"<!-- pr-council:fp=([A-Za-z0-9_.-]{1,128}) -->")


def fingerprint_marker(fp: str) -> str:
    """Return the hidden marker that identifies an inline comment by its finding."""
    marker = f"<!-- pr-council:fp={fp} -->"
    if not _FP_MARKER.fullmatch(marker):
        raise ValueError(f"not a usable fingerprint: {fp!r}")
    return marker


def parse_fingerprint_marker(text: str) -> str | None:
    """Return the fingerprint in a comment body's hidden marker, if it has one."""
    match = _FP_MARKER.search(text)
    return match.group(1) if match else None


# --- findings --------------------------------------------------------------------------


def _location(finding: Finding) -> str:
    if finding.line is None:
        return finding.path
    if finding.end_line and finding.end_line > finding.line:
        return f"{finding.path}:{finding.line}-{finding.end_line}"
    return f"{finding.path}:{finding.line}"


def _title(text: str) -> str:
    return plain(text, _TITLE_CHARS) or "(untitled)"


def _suggestion(text: str) -> str:
    """Return a ```suggestion block, or a note when it is too long for a comment."""
    if len(text) > _SUGGESTION_CHARS:
        return "*Suggested change omitted: too long for a comment; see the JSON report.*"
    return suggestion_block(text)


def _credit(finding: Finding) -> list[str]:
    parts = [f"found by **{finding.agent}** via {code_span(finding.source)}"]
    if finding.rule and finding.rule not in finding.source:
        parts.append(f"rule {code_span(finding.rule)}")
    if finding.also_found_by:
        parts.append("also " + ", ".join(code_span(s) for s in finding.also_found_by[:10]))
    parts.append(f"confidence {finding.confidence:.0%}")
    if finding.cwe:
        url = f"https://cwe.mitre.org/data/definitions/{finding.cwe}.html"
        parts.append(f"[CWE-{finding.cwe}]({url})")
    return parts


def _finding_md(finding: Finding) -> str:
    status = "🆕 new" if finding.status == "new" else "🔁 still open"
    meta = [status, *(["💬 inline"] if finding.placement == "inline" else []), *_credit(finding)]
    parts = [
        f"**{code_span(_location(finding))}** — {_title(finding.title)}\\\n<sub>{' · '.join(meta)}</sub>"
    ]
    if finding.body.strip():
        parts.append(sanitise_block(finding.body, _BODY_CHARS))
    if finding.suggestion is not None:
        parts.append(_suggestion(finding.suggestion))
    return "\n\n".join(parts)


def render_inline_comment(finding: Finding) -> str:
    """Render the body of one inline review comment, ending in its fingerprint marker."""
    label = f"{_EMOJI[finding.severity]} **{finding.severity.capitalize()}**"
    parts = [f"{label} · {_title(finding.title)}"]
    if finding.body.strip():
        parts.append(sanitise_block(finding.body, _BODY_CHARS))
    if finding.suggestion is not None:
        parts.append(_suggestion(finding.suggestion))
    parts.append(f"<sub>pr-council · {' · '.join(_credit(finding))}</sub>")
    parts.append(fingerprint_marker(finding.fingerprint))
    return "\n\n".join(parts)


def _groups(findings: Sequence[Finding]) -> list[tuple[str, str, list[str]]]:
    """Return (opener, closer, finding blocks) per severity present, gravest first."""
    groups: list[tuple[str, str, list[str]]] = []
    for severity in SEVERITIES:
        blocks = [_finding_md(f) for f in findings if f.severity == severity]
        if not blocks:
            continue
        title = f"{_EMOJI[severity]} {severity.capitalize()} ({len(blocks)})"
        if severity == "nit":
            groups.append((f"<details><summary>{title}</summary>", "</details>", blocks))
        else:
            groups.append((f"#### {title}", "", blocks))
    return groups


def _findings_section(findings: Sequence[Finding], budget: int) -> str:
    """Render findings by severity, stopping whole findings short of `budget`."""
    omitted = len(findings)
    more = _more_findings(omitted)
    out: list[str] = []
    used = len(more) + 2
    for opener, closer, blocks in _groups(findings):
        taken = _fit(blocks, budget - used - len(opener) - len(closer) - 4)
        if not taken:
            break
        out.append("\n\n".join([opener, *taken, *([closer] if closer else [])]))
        used += len(out[-1]) + 2
        omitted -= len(taken)
        if len(taken) < len(blocks):
            break
    return "\n\n".join([*out, *([_more_findings(omitted)] if omitted else [])])


def _fit(blocks: Sequence[str], budget: int) -> list[str]:
    taken: list[str] = []
    for block in blocks:
        budget -= len(block) + 2
        if budget < 0:
            break
        taken.append(block)
    return taken


def _more_findings(count: int) -> str:
    return (
        f"> **… and {count:,} more findings** not shown here (comment size limit): "
        "see the check run or the JSON report."
    )


# --- summary sections ------------------------------------------------------------------


def _verdict(review: Review) -> str:
    counts = count_by_severity(review.findings)
    gravest = review.highest()
    if gravest is None:
        return "### ✅ pr-council: no findings"
    detail = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    total = len(review.findings)
    return f"### {_EMOJI[gravest]} pr-council: {total} finding{'s' * (total != 1)} ({detail})"


def _counts(review: Review) -> str:
    counts = count_by_severity(review.findings)
    header = " | ".join(f"{_EMOJI[s]} {s.capitalize()}" for s in SEVERITIES)
    values = " | ".join(str(counts[s]) for s in SEVERITIES)
    fresh = sum(1 for f in review.findings if f.status == "new")
    status = f"🆕 {fresh} new · 🔁 {len(review.findings) - fresh} still open"
    if review.resolved:
        status += f" · ✅ {len(review.resolved)} resolved"
    return f"| {header} |\n|:-:|:-:|:-:|:-:|\n| {values} |\n\n{status}"


def _coverage(review: Review) -> str:
    ran = [a.agent for a in review.agents if a.status != "skipped"]
    skipped = [a.agent for a in review.agents if a.status == "skipped"]
    files = f"{review.files_reviewed} file{'s' * (review.files_reviewed != 1)}"
    line = f"Reviewed {files}" if review.files_reviewed else "Reviewed the change"
    line += f" with the {_and(ran)} specialist{'s' * (len(ran) != 1)}" if ran else ""
    return line + (f" ({_and(skipped)} skipped)." if skipped else ".")


def _and(words: Sequence[str]) -> str:
    return ", ".join(words[:-1]) + f" and {words[-1]}" if len(words) > 1 else "".join(words)


def _failures(review: Review) -> str:
    broken = [a for a in review.agents if a.status in ("failed", "timed_out")]
    if not broken:
        return ""
    lines = ["> [!WARNING]", "> This review is incomplete:"]
    for agent in broken:
        why = f": {plain(agent.error, 200)}" if agent.error else ""
        lines.append(f"> - the **{agent.agent}** specialist {_WORDS[agent.status]}{why}")
    return "\n".join(lines)


def _model_gaps(review: Review) -> str:
    """Say in one line per cause which specialists reviewed without their model pass."""
    causes: dict[str, list[str]] = {}
    for agent in review.agents:
        if agent.model == "unavailable":
            causes.setdefault(agent.error or "model pass unavailable", []).append(agent.agent)
    return "\n\n".join(
        f"⚠️ {plain(cause, 200)} — analyzer findings only from {_and(names)}."
        for cause, names in causes.items()
    )


def _head(review: Review) -> str:
    parts = [
        SUMMARY_MARKER,
        _verdict(review),
        _coverage(review),
        _failures(review),
        _model_gaps(review),
    ]
    if review.findings:
        parts.append(_counts(review))
    if review.assessment.strip():
        parts.append(sanitise_block(review.assessment, _ASSESSMENT_CHARS))
    return "\n\n".join(p for p in parts if p)


def _listing(title: str, items: Sequence[str], total: int, collapse: bool) -> str:
    lines = [f"- {item}" for item in items[:_LIST_ITEMS]]
    if total > _LIST_ITEMS:
        lines.append(f"- … and {total - _LIST_ITEMS:,} more")
    if collapse:
        return f"<details><summary>{title}</summary>\n\n" + "\n".join(lines) + "\n\n</details>"
    return f"#### {title}\n\n" + "\n".join(lines)


def _resolved(resolved: Sequence[PreviousFinding]) -> str:
    if not resolved:
        return ""
    items = [
        f"{_title(p.title)} — {code_span(p.path) or '(no path)'} (was {p.severity})"
        for p in resolved[:_LIST_ITEMS]
    ]
    title = f"✅ Resolved since the last review ({len(resolved)})"
    return _listing(title, items, len(resolved), collapse=False)


def _skipped(skipped: Sequence[Skipped]) -> str:
    """List files nobody reviewed, then (collapsed) files only some tools passed over."""
    whole = [s for s in skipped if s.by == "council"]
    partial = [s for s in skipped if s.by != "council"]
    sections = [
        _skip_list(f"🙈 Not reviewed ({len(whole)})", whole, len(whole) > _COLLAPSE_OVER),
        _skip_list(f"🧰 Passed over by some tools ({len(partial)})", partial, True),
    ]
    return "\n\n".join(s for s in sections if s)


def _skip_list(title: str, skipped: Sequence[Skipped], collapse: bool) -> str:
    if not skipped:
        return ""
    items = [
        f"{code_span(s.path) or '(whole change)'} — {plain(s.reason, 200)} ({plain(s.by, 40)})"
        for s in skipped[:_LIST_ITEMS]
    ]
    return _listing(title, items, len(skipped), collapse=collapse)


def _notes(notes: Sequence[str]) -> str:
    if not notes:
        return ""
    return _listing("📝 Notes", [plain(n) for n in notes[:_LIST_ITEMS]], len(notes), False)


# --- trace -----------------------------------------------------------------------------


def _duration(ms: float) -> str:
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def _cost(usd: float) -> str:
    return f"${usd:.4f}" if usd else "—"


def _agent_row(agent: AgentReport) -> str:
    tokens = f"{agent.input_tokens:,} / {agent.output_tokens:,}" if agent.input_tokens else "—"
    cells = [
        agent.agent,
        _STATUS[agent.status],
        _duration(agent.duration_ms),
        str(len(agent.findings)),
        tokens,
        _cost(agent.cost_usd),
        table_cell(", ".join(agent.tools)) or "—",
        table_cell(agent.error or "") or "—",
    ]
    return "| " + " | ".join(cells) + " |"


def _agent_table(agents: Sequence[AgentReport]) -> str:
    header = (
        "| Specialist | Status | Duration | Findings | Tokens in / out | Cost | Tools | Error |"
    )
    rule = "|---|---|--:|--:|--:|--:|---|---|"
    return "\n".join([header, rule, *(_agent_row(a) for a in agents)])


def _step_line(step: ModelStep) -> str:
    tokens = f"{step.input_tokens:,} / {step.output_tokens:,} tokens"
    detail = plain(step.detail, 200) or "—"
    return f"Synthesis · {step.name}: {detail} · {tokens} · {_cost(step.cost_usd)}"


def _task_name(span: Span) -> str:
    # Mermaid reads ':' as the start of task data and '#' / ';' as syntax.
    return re.sub(r"[^A-Za-z0-9 _./-]", "_", span.name)[:60].strip() or "span"


def _gantt(spans: Sequence[Span]) -> str:
    """Return a mermaid gantt chart of the spans, in milliseconds from the first start."""
    if not spans:
        return ""
    shown = spans[:_SPANS]
    origin = min(s.start_ms for s in shown)
    total = max(s.end_ms for s in shown) - origin
    lines = [
        "```mermaid",
        "gantt",
        "    title Review fan-out",
        "    dateFormat x",
        f"    axisFormat {'%S.%L' if total < 60_000 else '%M:%S'}",
        "    todayMarker off",
        "    section council",
    ]
    for i, span in enumerate(shown):
        start = round(span.start_ms - origin)
        end = max(start + 1, round(span.end_ms - origin))
        tag = "crit, " if span.status in ("failed", "timed_out") else ""
        lines.append(f"    {_task_name(span)} :{tag}s{i}, {start}, {end}")
    return "\n".join([*lines, "```"])


def _trace(review: Review) -> str:
    if not review.agents and not review.trace:
        return ""
    cost = f", {_cost(review.cost_usd)}" if review.cost_usd else ""
    summary = f"🔎 Trace: {review.mode} mode, {_duration(review.duration_ms)}{cost}"
    parts = [f"<details><summary>{summary}</summary>"]
    if review.agents:
        parts.append(_agent_table(review.agents))
    parts += [_step_line(step) for step in review.model_steps]
    parts.append(
        f"Total: {_duration(review.duration_ms)} wall time · cost {_cost(review.cost_usd)} · mode `{review.mode}`"
    )
    if len(review.trace) > _SPANS:
        parts.append(f"Showing the first {_SPANS} of {len(review.trace)} spans.")
    parts += [p for p in (_gantt(review.trace),) if p]
    return "\n\n".join([*parts, "</details>"])


def render_markdown(review: Review, *, max_chars: int = SUMMARY_BUDGET) -> str:
    """Render the summary comment, at most `max_chars` characters long."""
    head = _head(review)
    tail = [
        s
        for s in (
            _resolved(review.resolved),
            _skipped(review.skipped),
            _notes(review.notes),
            _trace(review),
        )
        if s
    ]
    reserve = len(_more_findings(len(review.findings))) + 64
    # Drop the least useful sections (trace first) before losing every finding.
    while tail and len(head) + sum(len(s) + 2 for s in tail) + reserve > max_chars:
        tail.pop()
    budget = max_chars - len(head) - sum(len(s) + 2 for s in tail) - 4
    findings = _findings_section(review.findings, budget) if review.findings else ""
    return "\n\n".join(p for p in (head, findings, *tail) if p) + "\n"


# --- JSON ------------------------------------------------------------------------------


class _Json(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class JsonAgent(_Json):
    """One specialist's line in the JSON report."""

    name: str
    status: AgentStatus
    duration_ms: float
    finding_count: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    error: str | None
    notes: tuple[str, ...]
    tools: tuple[str, ...]


class JsonReport(_Json):
    """The JSON report, DESIGN.md §8 (`--format json`)."""

    schema_version: Literal[1] = 1
    mode: Mode
    target: str
    findings: tuple[Finding, ...]
    resolved: tuple[PreviousFinding, ...]
    skipped: tuple[Skipped, ...]
    agents: tuple[JsonAgent, ...]
    summary_markdown: str
    duration_ms: float
    cost_usd: float
    notes: tuple[str, ...]
    trace: tuple[Span, ...]
    assessment: str
    files_reviewed: int
    model_steps: tuple[ModelStep, ...]


def json_agent(agent: AgentReport) -> JsonAgent:
    """Summarise one specialist for the JSON report and the trace."""
    return JsonAgent(
        name=agent.agent,
        status=agent.status,
        duration_ms=round(agent.duration_ms, 3),
        finding_count=len(agent.findings),
        input_tokens=agent.input_tokens,
        output_tokens=agent.output_tokens,
        cost_usd=round(agent.cost_usd, 6),
        error=agent.error,
        notes=agent.notes,
        tools=agent.tools,
    )


def json_report(review: Review) -> JsonReport:
    """Build the JSON report model for the review."""
    return JsonReport(
        mode=review.mode,
        target=review.target,
        findings=review.findings,
        resolved=review.resolved,
        skipped=review.skipped,
        agents=tuple(json_agent(a) for a in review.agents),
        summary_markdown=render_markdown(review),
        duration_ms=round(review.duration_ms, 3),
        cost_usd=round(review.cost_usd, 6),
        notes=review.notes,
        trace=review.trace,
        assessment=review.assessment,
        files_reviewed=review.files_reviewed,
        model_steps=review.model_steps,
    )


def render_json(review: Review) -> str:
    """Render the review as the §8 JSON report: stable key order, two-space indent."""
    return json_report(review).model_dump_json(indent=2) + "\n"
