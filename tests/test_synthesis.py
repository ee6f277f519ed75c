"""De-duplication, placement, the inline cap, ranking and re-review status."""

from __future__ import annotations

from agents.model import (
    AgentName,
    AgentReport,
    Finding,
    PreviousFinding,
    ReviewOptions,
    Severity,
    Skipped,
)
from agents.synthesis import dedupe, rank, synthesize
from tests.helpers import context_from

BASE = {"app.py": "".join(f"line{i} = {i}\n" for i in range(1, 41))}
HEAD = {
    "app.py": BASE["app.py"]
    .replace("line10 = 10", "line10 = 'changed'")
    .replace("line30 = 30", "line30 = 'changed'")
}
CTX = context_from(HEAD, BASE)  # lines 10 and 30 added; 7-13 and 27-33 commentable


def f(
    line: int | None,
    severity: Severity = "major",
    *,
    agent: AgentName = "security",
    rule: str = "S1",
    source: str = "bandit:B1",
    confidence: float = 0.8,
    cwe: int | None = None,
    title: str = "a problem",
) -> Finding:
    return Finding(
        fingerprint=f"{rule}-{line}-{source}",
        agent=agent,
        category=agent,
        severity=severity,
        confidence=confidence,
        path="app.py",
        line=line,
        title=title,
        rule=rule,
        source=source,
        cwe=cwe,
    )


def report(*findings: Finding, agent: AgentName = "security") -> AgentReport:
    return AgentReport(agent=agent, status="ok", findings=findings)


def test_bandit_and_ruff_reporting_the_same_rule_become_one_finding_crediting_both() -> None:
    bandit = f(10, "critical", rule="B608", source="bandit:B608", confidence=0.6)
    ruff = f(10, "major", rule="S608", source="ruff:S608", confidence=0.9)
    [kept] = dedupe([ruff, bandit])
    assert kept.source == "bandit:B608"  # graver severity wins over confidence
    assert kept.also_found_by == ("ruff:S608",)


def test_same_issue_from_two_specialists_credits_the_other_specialist() -> None:
    perf = f(
        10,
        agent="performance",
        rule="PCA008",
        source="perf-ast:PCA008",
        title="Blocking call time.sleep in async def",
    )
    ruff = f(10, "minor", agent="performance", rule="ASYNC251", source="ruff:ASYNC251", title="x")
    sec = f(
        10,
        agent="security",
        rule="X",
        source="llm:m",
        title="Blocking call time.sleep in async def!",
    )
    [kept] = dedupe([perf, ruff, sec])
    assert kept.also_found_by == ("security/llm:m", "ruff:ASYNC251")


def test_hard_coded_password_and_hard_coded_credential_are_one_issue() -> None:
    bandit = f(10, "minor", rule="B105", source="bandit:B105", cwe=259)
    secret = f(
        10, "critical", rule="secret-keyword", source="detect-secrets:secret-keyword", cwe=798
    )
    assert len(dedupe([bandit, secret])) == 1


def test_different_lines_or_rules_stay_separate() -> None:
    assert (
        len(
            dedupe(
                [f(10, rule="A", title="x"), f(30, rule="A", title="x"), f(10, rule="B", title="y")]
            )
        )
        == 3
    )


def test_rank_orders_by_severity_then_confidence() -> None:
    ranked = rank(
        [
            f(1, "minor", rule="a"),
            f(2, "critical", confidence=0.5, rule="b"),
            f(3, "critical", confidence=0.9, rule="c"),
        ]
    )
    assert [x.rule for x in ranked] == ["c", "b", "a"]


def test_placement_puts_out_of_diff_and_file_level_findings_in_the_summary() -> None:
    review = synthesize(
        CTX, [report(f(10, rule="in"), f(20, rule="out"), f(None, rule="file"))], mode="parallel"
    )
    placement = {x.rule: x.placement for x in review.findings}
    assert placement == {"in": "inline", "out": "summary", "file": "summary"}


def test_nits_stay_out_of_inline_comments_by_default() -> None:
    review = synthesize(
        CTX, [report(f(10, "nit", rule="n"), f(30, "minor", rule="m"))], mode="parallel"
    )
    assert {x.rule: x.placement for x in review.findings} == {"n": "summary", "m": "inline"}


def test_inline_cap_keeps_the_gravest_findings_inline() -> None:
    ctx = CTX.model_copy(update={"options": ReviewOptions(max_inline_comments=2)})
    findings = [
        f(10, "minor", rule="m1"),
        f(30, "critical", rule="c"),
        f(11, "major", rule="M"),
        f(12, "minor", rule="m2"),
    ]
    review = synthesize(ctx, [report(*findings)], mode="parallel")
    assert [x.rule for x in review.inline] == ["c", "M"]
    assert [x.rule for x in review.findings] == ["c", "M", "m1", "m2"]


def test_previous_fingerprints_mark_open_new_and_resolved() -> None:
    still, fixed = (
        f(10, rule="still"),
        PreviousFinding(fingerprint="gone", title="old issue", path="app.py"),
    )
    ctx = CTX.model_copy(
        update={"previous": (PreviousFinding(fingerprint=still.fingerprint), fixed)}
    )
    review = synthesize(ctx, [report(still, f(30, rule="fresh"))], mode="parallel")
    assert {x.rule: x.status for x in review.findings} == {"still": "open", "fresh": "new"}
    assert review.resolved == (fixed,)


def test_failed_specialists_are_kept_in_the_review() -> None:
    failed = AgentReport(agent="style", status="failed", error="boom")
    review = synthesize(CTX, [report(f(10)), failed], mode="parallel")
    assert [a.status for a in review.agents] == ["ok", "failed"]


def test_one_path_skipped_by_several_tools_for_one_reason_is_listed_once() -> None:
    reports = [
        AgentReport(
            agent="style",
            status="ok",
            skipped=(Skipped(path="README.md", reason="not Python", by="ruff"),),
        ),
        AgentReport(
            agent="performance",
            status="ok",
            skipped=(
                Skipped(path="README.md", reason="not Python", by="ruff-perf"),
                Skipped(path="x.py", reason="could not parse", by="perf-ast"),
            ),
        ),
    ]
    review = synthesize(CTX, reports, mode="parallel")
    assert review.skipped == (
        Skipped(path="README.md", reason="not Python", by="ruff, ruff-perf"),
        Skipped(path="x.py", reason="could not parse", by="perf-ast"),
    )
