"""Tests for the summary comment, inline comment bodies and the JSON report."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, get_args

import pytest

from agents.model import (
    AgentName,
    AgentReport,
    AgentStatus,
    Finding,
    Mode,
    PreviousFinding,
    Review,
    Severity,
    Skipped,
    Span,
    fingerprint,
)
from agents.render import (
    COMMENT_LIMIT,
    SUMMARY_BUDGET,
    SUMMARY_MARKER,
    fingerprint_marker,
    parse_fingerprint_marker,
    render_inline_comment,
    render_json,
    render_markdown,
    render_sarif,
)
from agents.sarif import render_sarif as sarif_render_sarif

GOLDEN = Path(__file__).parent / "data" / "summary-golden.md"
ZWJ = "\u200d"


def make_finding(n: int = 0, **fields: Any) -> Finding:
    """Build a finding with sensible defaults; `fields` override them."""
    base: dict[str, Any] = {
        "agent": "security",
        "category": "security",
        "severity": "major",
        "confidence": 0.8,
        "path": f"src/module_{n}.py",
        "line": 10 + n,
        "title": f"Problem number {n}",
        "body": f"Explanation of problem {n}.",
        "rule": "B602",
        "source": "bandit:B602",
    }
    base.update(fields)
    base.setdefault(
        "fingerprint", fingerprint(base["category"], base["rule"], base["path"], f"line {n}")
    )
    return Finding(**base)


def make_review(**fields: Any) -> Review:
    base: dict[str, Any] = {"mode": "parallel", "target": "octo/repo#7"}
    base.update(fields)
    return Review(**base)


def agents_ok(*names: AgentName) -> tuple[AgentReport, ...]:
    return tuple(AgentReport(agent=n, status="ok", end_ms=100.0) for n in names)


def outside_code(markdown: str) -> list[str]:
    """Return the lines of `markdown` that are not inside a fenced code block."""
    lines: list[str] = []
    fence = ""
    for line in markdown.splitlines():
        match = re.match(r"^ {0,3}(`{3,}|~{3,})(.*)$", line)
        if fence:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                fence = "" if not match.group(2).strip() else fence
        elif match:
            fence = match.group(1)
        else:
            lines.append(line)
    assert not fence, "a code fence was left open"
    return lines


def representative_review() -> Review:
    sql = make_finding(
        1,
        severity="critical",
        confidence=0.95,
        path="app/db.py",
        line=42,
        end_line=44,
        title="SQL query built with string formatting",
        body="User input reaches `cursor.execute` unescaped.",
        suggestion='cursor.execute("SELECT * FROM t WHERE id = %s", (uid,))\n',
        rule="B608",
        source="bandit:B608",
        cwe=89,
        placement="inline",
        also_found_by=("style", "ruff:S608"),
    )
    loop = make_finding(
        2,
        agent="performance",
        category="performance",
        severity="minor",
        path="app/report.py",
        line=7,
        title="List built in a loop; use a comprehension",
        rule="PERF401",
        source="ruff:PERF401",
        status="open",
    )
    tests = make_finding(
        3,
        agent="test-coverage",
        category="test-coverage",
        severity="major",
        path="app/billing.py",
        line=None,
        title="No test covers this new module",
        body="",
        rule="untested-module",
        source="test-map",
    )
    nit = make_finding(
        4,
        agent="style",
        category="style",
        severity="nit",
        path="app/util.py",
        line=3,
        title="Unused import `os`",
        rule="F401",
        source="ruff:F401",
        confidence=1.0,
    )
    return make_review(
        findings=(sql, tests, loop, nit),
        resolved=(
            PreviousFinding(fingerprint="0f", title="Hard-coded password", path="app/cfg.py"),
        ),
        skipped=(Skipped(path="poetry.lock", reason="lock file"),),
        agents=(
            AgentReport(
                agent="security",
                status="ok",
                findings=(sql,),
                tools=("bandit", "detect-secrets", "llm"),
                start_ms=2.0,
                end_ms=1450.0,
                input_tokens=12_345,
                output_tokens=678,
                cost_usd=0.0123,
            ),
            AgentReport(agent="style", status="ok", findings=(nit,), tools=("ruff",), end_ms=300.0),
            AgentReport(
                agent="performance",
                status="timed_out",
                error="deadline of 30 s exceeded",
                start_ms=2.0,
                end_ms=30002.0,
            ),
            AgentReport(agent="test-coverage", status="ok", findings=(tests,), end_ms=820.0),
        ),
        trace=(
            Span(name="security", status="ok", start_ms=2.0, end_ms=1450.0),
            Span(name="style", status="ok", start_ms=2.0, end_ms=300.0),
            Span(name="performance", status="timed_out", start_ms=2.0, end_ms=30002.0),
            Span(name="test-coverage", status="ok", start_ms=2.0, end_ms=820.0),
            Span(name="synthesis", status="ok", start_ms=30002.0, end_ms=30050.0),
        ),
        notes=("diff coverage: 80%",),
        assessment="One injection risk needs fixing before merge; the rest is minor.",
        duration_ms=30050.0,
        files_reviewed=5,
    )


# --- structure -------------------------------------------------------------------------


def test_summary_starts_with_the_hidden_marker_and_a_verdict() -> None:
    text = render_markdown(representative_review())
    lines = text.splitlines()
    assert lines[0] == SUMMARY_MARKER
    assert lines[2] == "### 🔴 pr-council: 4 findings (1 critical, 1 major, 1 minor, 1 nit)"


def test_counts_table_has_every_severity() -> None:
    text = render_markdown(representative_review())
    assert "| 🔴 Critical | 🟠 Major | 🟡 Minor | ⚪ Nit |" in text
    assert "| 1 | 1 | 1 | 1 |" in text
    assert "🆕 3 new · 🔁 1 still open · ✅ 1 resolved" in text


def test_findings_are_grouped_gravest_first() -> None:
    text = render_markdown(representative_review())
    positions = [
        text.index("#### 🔴 Critical (1)"),
        text.index("#### 🟠 Major (1)"),
        text.index("#### 🟡 Minor (1)"),
        text.index("<details><summary>⚪ Nit (1)</summary>"),
    ]
    assert positions == sorted(positions)
    assert text.index("SQL query built") < text.index("No test covers") < text.index("List built")


def test_nits_are_collapsed() -> None:
    text = render_markdown(representative_review())
    nits = text.split("<details><summary>⚪ Nit (1)</summary>", 1)[1]
    assert nits.index("Unused import") < nits.index("</details>")


@pytest.mark.parametrize(
    ("line", "end_line", "expected"),
    [
        (12, None, "`a/b.py:12`"),
        (12, 15, "`a/b.py:12-15`"),
        (None, None, "`a/b.py`"),
        (12, 12, "`a/b.py:12`"),
    ],
)
def test_location_reference(line: int | None, end_line: int | None, expected: str) -> None:
    finding = make_finding(path="a/b.py", line=line, end_line=end_line)
    assert f"**{expected}**" in render_markdown(make_review(findings=(finding,)))


def test_finding_credits_its_sources_and_confidence() -> None:
    text = render_markdown(representative_review())
    line = next(ln for ln in text.splitlines() if ln.startswith("<sub>🆕 new · 💬 inline"))
    assert "found by **security** via `bandit:B608`" in line
    assert "also `style`, `ruff:S608`" in line
    assert "confidence 95%" in line
    assert "[CWE-89](https://cwe.mitre.org/data/definitions/89.html)" in line


def test_open_findings_are_marked_still_open() -> None:
    text = render_markdown(representative_review())
    block = text.split("List built in a loop; use a comprehension\\\n", 1)[1]
    assert block.startswith("<sub>🔁 still open")


def test_rule_is_shown_when_the_source_does_not_name_it() -> None:
    text = render_markdown(representative_review())
    assert "via `test-map` · rule `untested-module`" in text
    assert "rule `B608`" not in text


def test_assessment_notes_resolved_and_skipped_sections() -> None:
    text = render_markdown(representative_review())
    assert "One injection risk needs fixing before merge" in text
    assert (
        "#### ✅ Resolved since the last review (1)\n\n- Hard-coded password — `app/cfg.py` (was minor)"
        in text
    )
    assert "#### 🙈 Not reviewed (1)\n\n- `poetry.lock` — lock file (council)" in text
    assert "#### 📝 Notes\n\n- diff coverage: 80%" in text


def test_long_skipped_list_is_collapsed_and_capped() -> None:
    skipped = tuple(Skipped(path=f"vendor/f{i}.js", reason="vendored") for i in range(40))
    text = render_markdown(make_review(skipped=skipped))
    section = text.split("<details><summary>🙈 Not reviewed (40)</summary>", 1)[1]
    section = section.split("</details>", 1)[0]
    assert section.count("\n- `vendor/") == 25
    assert "- … and 15 more" in section


def test_failed_specialist_is_called_out() -> None:
    text = render_markdown(representative_review())
    assert "> [!WARNING]" in text
    assert "> - the **performance** specialist timed out: deadline of 30 s exceeded" in text


def test_clean_pr_gets_a_short_summary() -> None:
    review = make_review(agents=agents_ok("security", "style", "test-coverage"), files_reviewed=2)
    text = render_markdown(review)
    visible = text.split("<details>", 1)[0].strip().splitlines()
    assert visible == [
        SUMMARY_MARKER,
        "",
        "### ✅ pr-council: no findings",
        "",
        "Reviewed 2 files with the security, style and test-coverage specialists.",
    ]
    assert "| 🔴 Critical" not in text


def test_clean_pr_names_skipped_specialists() -> None:
    agents = (*agents_ok("security"), AgentReport(agent="performance", status="skipped"))
    text = render_markdown(make_review(agents=agents, files_reviewed=1))
    assert "Reviewed 1 file with the security specialist (performance skipped)." in text


# --- trace -----------------------------------------------------------------------------


def _gantt(text: str) -> list[str]:
    block = text.split("```mermaid\n", 1)[1].split("\n```", 1)[0]
    return block.splitlines()


def test_trace_is_collapsed_with_a_row_per_specialist() -> None:
    text = render_markdown(representative_review())
    trace = text.split("<details><summary>🔎 Trace: parallel mode, 30.1 s, $0.0123</summary>", 1)[1]
    assert trace.rstrip().endswith("</details>")
    assert (
        "| security | ✅ ok | 1.4 s | 1 | 12,345 / 678 | $0.0123 | bandit, detect-secrets, llm | — |"
        in trace
    )
    assert (
        "| performance | ⏱️ timed out | 30.0 s | 0 | — | — | — | deadline of 30 s exceeded |"
        in trace
    )
    assert "Total: 30.1 s wall time · cost $0.0123 · mode `parallel`" in trace


def test_gantt_has_one_bar_per_span_in_milliseconds() -> None:
    review = representative_review()
    lines = _gantt(render_markdown(review))
    assert lines[:4] == [
        "gantt",
        "    title Review fan-out",
        "    dateFormat x",
        "    axisFormat %S.%L",
    ]
    bars = [ln for ln in lines if re.fullmatch(r"    \S.* :(crit, )?s\d+, \d+, \d+", ln)]
    assert len(bars) == len(review.trace)
    assert "    security :s0, 0, 1448" in bars
    assert "    performance :crit, s2, 0, 30000" in bars
    assert "    synthesis :s4, 30000, 30048" in bars


def test_gantt_task_names_cannot_break_mermaid() -> None:
    spans = (
        Span(name="llm: verify #1; x", status="failed", start_ms=0, end_ms=0),
        Span(name="", status="ok", start_ms=0, end_ms=5),
    )
    lines = _gantt(render_markdown(make_review(trace=spans)))
    assert "    llm_ verify _1_ x :crit, s0, 0, 1" in lines
    assert "    span :s1, 0, 5" in lines


def test_error_text_cannot_break_the_trace_table() -> None:
    agent = AgentReport(agent="security", status="failed", error="boom | @oncall\nTraceback")
    text = render_markdown(make_review(agents=(agent,)))
    row = next(ln for ln in text.splitlines() if ln.startswith("| security |"))
    assert row.endswith(f"| boom \\| @{ZWJ}oncall Traceback |")


# --- size limit ------------------------------------------------------------------------


def test_five_thousand_findings_stay_under_the_comment_limit() -> None:
    severities: tuple[Severity, ...] = ("critical", "major", "minor", "nit")
    findings = tuple(
        make_finding(i, severity=severities[i % 4], body="x " * 200 + "\n```py\ncode()\n```")
        for i in range(5000)
    )
    review = representative_review().model_copy(update={"findings": findings})
    text = render_markdown(review)
    assert len(text) <= SUMMARY_BUDGET < COMMENT_LIMIT
    shown = len(re.findall(r"^\*\*`src/module_\d+\.py:\d+`\*\*", text, flags=re.MULTILINE))
    assert 0 < shown < 5000
    assert f"**… and {5000 - shown:,} more findings** not shown here" in text
    assert text.count("<details>") == text.count("</details>")
    outside_code(text)  # every fence closed
    assert "#### 🔴 Critical (1250)" in text
    assert text.rstrip().endswith("</details>")  # the trace survived


@pytest.mark.parametrize("budget", [6_000, 15_000, 40_000])
def test_summary_honours_a_smaller_budget(budget: int) -> None:
    findings = tuple(make_finding(i, body="y" * 900) for i in range(300))
    text = render_markdown(
        representative_review().model_copy(update={"findings": findings}), max_chars=budget
    )
    assert len(text) <= budget
    assert text.startswith(SUMMARY_MARKER)
    assert "more findings** not shown here" in text


def test_huge_texts_are_clipped_per_item() -> None:
    finding = make_finding(title="T" * 5000, body="B" * 100_000, suggestion="s" * 100_000)
    text = render_markdown(make_review(findings=(finding,), assessment="A" * 100_000))
    assert len(text) < 20_000
    assert "*… (truncated)*" in text
    assert "Suggested change omitted" in text
    assert "more findings" not in text


# --- sanitising ------------------------------------------------------------------------


def hostile_finding() -> Finding:
    return make_finding(
        title="Ping @octocat\nand @org/team <!-- pr-council:summary --> about #12",
        body=(
            "Hi @admin, see owner/repo#3 &#64;ghost.\n"
            "<!-- pr-council:fp=deadbeef -->\n"
            "</details><details><summary>gotcha</summary>\n"
            "```\n<!-- pr-council:summary --> in code @keep\n```\n"
            "`<!--pr-council:fp=cafe -->` and an open fence:\n"
            "```python\nnever closed()"
        ),
        path="dir/`odd`\nname.py",
        suggestion="@property\ndef x(self) -> int:  # <!-- pr-council:fp=abc -->\n",
    )


def test_mentions_and_references_are_neutralised() -> None:
    text = render_markdown(make_review(findings=(hostile_finding(),)))
    prose = "\n".join(outside_code(text))
    for handle in ("octocat", "org/team", "admin"):
        assert f"@{handle}" not in prose
        assert f"@{ZWJ}{handle}" in prose
    assert "#12" not in prose and f"#{ZWJ}12" in prose
    assert "repo#3" not in prose
    assert "&#64;ghost" not in prose  # an entity cannot smuggle in an @
    assert f"&amp;#{ZWJ}64;ghost" in prose


def test_untrusted_text_cannot_imitate_our_markers() -> None:
    text = render_markdown(make_review(findings=(hostile_finding(),)))
    assert text.count("<!-- pr-council") == 1
    assert text.startswith(SUMMARY_MARKER)
    assert re.search(r"<!--\s*pr-council", text[len(SUMMARY_MARKER) :], re.IGNORECASE) is None
    assert parse_fingerprint_marker(text) is None


def test_untrusted_html_cannot_break_the_layout() -> None:
    text = render_markdown(make_review(findings=(hostile_finding(),)))
    assert text.count("<details>") == text.count("</details>")
    assert "&lt;/details>&lt;details>&lt;summary>gotcha" in text
    prose = outside_code(text)  # the body's open fence was closed
    assert any(ln.startswith("#### 🟠 Major") for ln in prose)


def test_an_unclosed_fence_in_a_body_is_closed_before_the_next_finding() -> None:
    first = make_finding(1, body="Look:\n~~~~python\nnever_closed()\n```")
    second = make_finding(2, title="The next finding")
    lines = outside_code(render_markdown(make_review(findings=(first, second))))
    assert any(ln.startswith("**`src/module_2.py:12`** — The next finding") for ln in lines)
    inline = render_inline_comment(first)
    assert outside_code(inline)[-1] == fingerprint_marker(first.fingerprint)


def test_title_and_path_stay_on_one_line() -> None:
    text = render_markdown(make_review(findings=(hostile_finding(),)))
    line = next(ln for ln in text.splitlines() if ln.startswith("**"))
    assert line.startswith("**``dir/`odd` name.py:10``** — Ping @")
    assert line.endswith("about #\u200d12\\")


def test_code_keeps_its_text() -> None:
    text = render_markdown(make_review(findings=(hostile_finding(),)))
    assert "\n@property\ndef x(self) -> int:" in text  # a decorator is not a mention
    assert "in code @keep" in text


@pytest.mark.parametrize(
    ("suggestion", "fence"),
    [("x = 1\n", "```"), ("s = '```'\n", "````"), ("````\n", "`````"), ("", "```")],
)
def test_suggestion_fence_outlasts_backticks_inside(suggestion: str, fence: str) -> None:
    text = render_markdown(make_review(findings=(make_finding(suggestion=suggestion),)))
    expected = f"{fence}suggestion\n{suggestion}{fence}"
    assert expected in text


def test_blank_line_suggestion_is_kept() -> None:
    text = render_markdown(make_review(findings=(make_finding(suggestion="\n"),)))
    assert "```suggestion\n\n```" in text


# --- inline comments -------------------------------------------------------------------


def test_inline_comment_has_label_body_suggestion_credit_and_marker() -> None:
    finding = representative_review().findings[0]
    text = render_inline_comment(finding)
    parts = text.split("\n\n")
    assert parts[0] == "🔴 **Critical** · SQL query built with string formatting"
    assert parts[1] == "User input reaches `cursor.execute` unescaped."
    assert parts[2].startswith("```suggestion\ncursor.execute(")
    assert parts[3].startswith("<sub>pr-council · found by **security** via `bandit:B608`")
    assert parts[-1] == fingerprint_marker(finding.fingerprint)


def test_inline_comment_marker_round_trips() -> None:
    finding = hostile_finding()
    text = render_inline_comment(finding)
    assert parse_fingerprint_marker(text) == finding.fingerprint
    assert text.count("<!-- pr-council") == 1


def test_fingerprint_marker_round_trip_and_rejects_junk() -> None:
    assert fingerprint_marker("0123abcdef") == "<!-- pr-council:fp=0123abcdef -->"
    assert parse_fingerprint_marker("text\n<!-- pr-council:fp=0123abcdef -->") == "0123abcdef"
    assert parse_fingerprint_marker("no marker here") is None
    assert parse_fingerprint_marker("<!-- pr-council:fp= -->") is None
    with pytest.raises(ValueError, match="not a usable fingerprint"):
        fingerprint_marker("x --> <b>")


# --- golden ----------------------------------------------------------------------------


def test_summary_matches_the_golden_file() -> None:
    text = render_markdown(representative_review())
    if os.environ.get("PR_COUNCIL_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8")


# --- JSON ------------------------------------------------------------------------------

FINDING_KEYS: dict[str, Any] = {
    "fingerprint": str,
    "agent": str,
    "category": str,
    "severity": str,
    "confidence": float,
    "path": str,
    "line": (int, type(None)),
    "end_line": (int, type(None)),
    "title": str,
    "body": str,
    "suggestion": (str, type(None)),
    "rule": str,
    "source": str,
    "cwe": (int, type(None)),
    "placement": (str, type(None)),
    "also_found_by": list,
    "status": str,
}
AGENT_KEYS: dict[str, Any] = {
    "name": str,
    "status": str,
    "duration_ms": (int, float),
    "finding_count": int,
    "input_tokens": int,
    "output_tokens": int,
    "cost_usd": (int, float),
    "error": (str, type(None)),
    "notes": list,
    "tools": list,
}
TOP_KEYS: dict[str, Any] = {
    "schema_version": int,
    "mode": str,
    "target": str,
    "findings": list,
    "resolved": list,
    "skipped": list,
    "agents": list,
    "summary_markdown": str,
    "duration_ms": (int, float),
    "cost_usd": (int, float),
    "notes": list,
    "trace": list,
}


def assert_typed(obj: dict[str, Any], keys: dict[str, Any]) -> None:
    for key, kind in keys.items():
        assert key in obj, key
        assert isinstance(obj[key], kind), (key, obj[key])
        assert not isinstance(obj[key], bool), key


def test_json_has_every_documented_key_typed_as_documented() -> None:
    review = representative_review()
    doc = json.loads(render_json(review))
    assert_typed(doc, TOP_KEYS)
    assert doc["schema_version"] == 1
    assert doc["mode"] in get_args(Mode)
    assert len(doc["findings"]) == len(review.findings)
    for finding in doc["findings"]:
        assert list(finding) == list(FINDING_KEYS)
        assert_typed(finding, FINDING_KEYS)
    for agent in doc["agents"]:
        assert list(agent) == list(AGENT_KEYS)
        assert_typed(agent, AGENT_KEYS)
        assert agent["status"] in get_args(AgentStatus)
    for skipped in doc["skipped"]:
        assert list(skipped) == ["path", "reason", "by"]
    for resolved in doc["resolved"]:
        assert list(resolved) == ["fingerprint", "title", "path", "severity"]
    for span in doc["trace"]:
        assert list(span) == ["name", "status", "start_ms", "end_ms"]


def test_json_values_and_stable_layout() -> None:
    review = representative_review()
    text = render_json(review)
    doc = json.loads(text)
    assert text.startswith('{\n  "schema_version": 1,\n  "mode": "parallel",')
    assert list(doc)[: len(TOP_KEYS)] == list(TOP_KEYS)
    assert doc["summary_markdown"] == render_markdown(review)
    assert doc["cost_usd"] == pytest.approx(0.0123)
    assert doc["duration_ms"] == 30050.0
    assert doc["agents"][0]["finding_count"] == 1
    assert doc["agents"][0]["duration_ms"] == 1448.0
    assert doc["agents"][2]["status"] == "timed_out"
    assert doc["agents"][2]["error"] == "deadline of 30 s exceeded"
    assert Finding.model_validate(doc["findings"][0]) == review.findings[0]
    assert render_json(review) == text  # deterministic


def test_json_of_an_empty_review() -> None:
    doc = json.loads(render_json(make_review()))
    assert doc["findings"] == [] and doc["agents"] == [] and doc["cost_usd"] == 0
    assert doc["summary_markdown"].startswith(SUMMARY_MARKER)


def test_render_reexports_sarif() -> None:
    assert render_sarif is sarif_render_sarif
