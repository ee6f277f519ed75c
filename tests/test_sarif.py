"""Tests for the SARIF 2.1.0 output: schema-valid and within code scanning's rules."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest

from agents.model import Finding, Review, fingerprint
from agents.sarif import FINGERPRINT_KEY, MAX_RUNS, SARIF_SCHEMA_URI, render_sarif, tool_of

SCHEMA = Path(__file__).parent / "data" / "sarif-schema-2.1.0.json"


@cache
def validator() -> jsonschema.Draft4Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(
        schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER
    )


def make_finding(n: int = 0, **fields: Any) -> Finding:
    base: dict[str, Any] = {
        "agent": "security",
        "category": "security",
        "severity": "major",
        "confidence": 0.8,
        "path": f"src/m{n}.py",
        "line": 5 + n,
        "title": f"Issue {n}",
        "body": f"Why issue {n} matters.",
        "rule": f"R{n}",
        "source": f"bandit:R{n}",
    }
    base.update(fields)
    base.setdefault(
        "fingerprint", fingerprint(base["category"], base["rule"], base["path"], str(n))
    )
    return Finding(**base)


def full_review() -> Review:
    findings = (
        make_finding(
            1,
            severity="critical",
            rule="B608",
            source="bandit:B608",
            cwe=89,
            confidence=0.95,
            suggestion='cur.execute("SELECT %s", (x,))\n',
            end_line=8,
        ),
        make_finding(
            2,
            severity="major",
            rule="B105",
            source="detect-secrets:KeywordDetector",
            cwe=798,
            line=None,
        ),
        make_finding(
            3,
            agent="style",
            category="style",
            severity="minor",
            rule="E711",
            source="ruff:E711",
            suggestion="if x is None:\n",
            confidence=1.0,
        ),
        make_finding(
            4,
            agent="style",
            category="style",
            severity="nit",
            rule="F401",
            source="ruff:F401",
            line=None,
        ),
        make_finding(
            5,
            agent="performance",
            category="performance",
            severity="minor",
            rule="PERF-LOOP-CONCAT",
            source="perf-ast:PERF-LOOP-CONCAT",
            path="pkg/with space/ünï.py",
        ),
        make_finding(
            6,
            agent="test-coverage",
            category="test-coverage",
            severity="major",
            rule="untested",
            source="test-map",
            line=None,
            body="",
        ),
        make_finding(
            7,
            agent="test-coverage",
            category="test-coverage",
            severity="minor",
            rule="uncovered-lines",
            source="diff-coverage",
            end_line=20,
        ),
        make_finding(
            8,
            severity="critical",
            rule="sql-injection",
            source="llm:claude-sonnet-4-5",
            cwe=89,
            also_found_by=("bandit:B608",),
            status="open",
            placement="inline",
        ),
        make_finding(9, severity="nit", rule="", source="", path="./docs/readme.md"),
        make_finding(
            10, severity="minor", rule="B608", source="bandit:B608", cwe=89, confidence=0.4
        ),
    )
    return Review(mode="parallel", target="octo/repo#7", findings=findings)


def sarif(review: Review) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(render_sarif(review))
    validator().validate(doc)
    return doc


def runs_by_tool(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {run["tool"]["driver"]["name"]: run for run in doc["runs"]}


def result_for(doc: dict[str, Any], fp: str) -> dict[str, Any]:
    results = [r for run in doc["runs"] for r in run["results"]]
    return next(r for r in results if r["partialFingerprints"][FINGERPRINT_KEY] == fp)


def rule_of(run: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    rule: dict[str, Any] = run["tool"]["driver"]["rules"][result["ruleIndex"]]
    return rule


def test_full_review_validates_against_the_official_schema() -> None:
    doc = sarif(full_review())
    assert doc["version"] == "2.1.0"
    assert doc["$schema"] == SARIF_SCHEMA_URI
    assert sum(len(run["results"]) for run in doc["runs"]) == 10


def test_empty_review_is_a_valid_log_with_one_empty_run() -> None:
    doc = sarif(Review(mode="parallel", target="t"))
    assert doc["runs"] == [{"tool": {"driver": {"name": "pr-council", "rules": []}}, "results": []}]


def test_the_schema_rejects_a_broken_log() -> None:
    # Guards the guard: the vendored schema really constrains the output.
    doc = json.loads(render_sarif(full_review()))
    del doc["runs"][0]["results"][0]["message"]
    with pytest.raises(jsonschema.ValidationError):
        validator().validate(doc)


def test_one_run_per_source_tool() -> None:
    runs = runs_by_tool(sarif(full_review()))
    assert list(runs) == [
        "bandit",
        "detect-secrets",
        "ruff",
        "perf-ast",
        "test-map",
        "diff-coverage",
        "llm",
        "pr-council",
    ]
    assert runs["bandit"]["tool"]["driver"]["informationUri"] == "https://bandit.readthedocs.io/"
    assert runs["ruff"]["tool"]["driver"]["informationUri"] == "https://docs.astral.sh/ruff/"
    assert "informationUri" not in runs["perf-ast"]["tool"]["driver"]
    assert runs["bandit"]["conversion"]["tool"]["driver"]["name"] == "pr-council"
    assert "conversion" not in runs["pr-council"]
    assert [r["ruleId"] for r in runs["bandit"]["results"]] == ["B608", "B608"]
    assert len(runs["bandit"]["tool"]["driver"]["rules"]) == 1  # one rule, shared by both


def test_tool_is_the_source_before_the_colon() -> None:
    assert tool_of(make_finding(source="ruff:PERF401")) == "ruff"
    assert tool_of(make_finding(source="llm:claude-sonnet-4-5")) == "llm"
    assert tool_of(make_finding(source="test-map")) == "test-map"
    assert tool_of(make_finding(source="")) == "pr-council"


@pytest.mark.parametrize(
    ("severity", "level"),
    [("critical", "error"), ("major", "error"), ("minor", "warning"), ("nit", "note")],
)
def test_levels_follow_severity(severity: str, level: str) -> None:
    finding = make_finding(severity=severity)
    assert (
        result_for(
            sarif(Review(mode="parallel", target="t", findings=(finding,))), finding.fingerprint
        )["level"]
        == level
    )


def test_results_carry_what_code_scanning_requires() -> None:
    doc = sarif(full_review())
    for run in doc["runs"]:
        rules = run["tool"]["driver"]["rules"]
        assert len({r["id"] for r in rules}) == len(rules)
        for result in run["results"]:
            assert result["ruleId"] == rule_of(run, result)["id"]
            assert result["message"]["text"].strip()
            assert len(result["locations"]) == 1
            physical = result["locations"][0]["physicalLocation"]
            uri = physical["artifactLocation"]["uri"]
            assert uri and not urlsplit(uri).scheme and not uri.startswith("/")
            assert physical["region"]["startLine"] >= 1
            assert result["partialFingerprints"][FINGERPRINT_KEY]
        for rule in rules:
            assert rule["shortDescription"]["text"] and rule["help"]["text"]
            assert len(rule["properties"]["tags"]) <= 20


def test_security_rules_are_ranked_and_tagged() -> None:
    doc = sarif(full_review())
    bandit = runs_by_tool(doc)["bandit"]
    rule = next(r for r in bandit["tool"]["driver"]["rules"] if r["id"] == "B608")
    assert rule["properties"]["security-severity"] == "9.5"  # gravest of its findings
    assert rule["properties"]["tags"][0] == "security"
    assert "external/cwe/cwe-89" in rule["properties"]["tags"]
    assert rule["properties"]["problem.severity"] == "error"
    assert rule["properties"]["precision"] == "very-high"
    assert rule["helpUri"] == "https://cwe.mitre.org/data/definitions/89.html"
    secret = runs_by_tool(doc)["detect-secrets"]["tool"]["driver"]["rules"][0]
    assert secret["properties"]["security-severity"] == "8.0"
    assert "external/cwe/cwe-798" in secret["properties"]["tags"]


def test_non_security_rules_have_no_security_severity() -> None:
    ruff = runs_by_tool(sarif(full_review()))["ruff"]
    for rule in ruff["tool"]["driver"]["rules"]:
        assert "security-severity" not in rule["properties"]
        assert "security" not in rule["properties"]["tags"]
        assert "style" in rule["properties"]["tags"]
    nit = next(r for r in ruff["tool"]["driver"]["rules"] if r["id"] == "F401")
    assert nit["properties"]["problem.severity"] == "recommendation"


def test_regions_lines_and_file_level_findings() -> None:
    review = full_review()
    doc = sarif(review)
    ranged = result_for(doc, review.findings[0].fingerprint)
    assert ranged["locations"][0]["physicalLocation"]["region"] == {"startLine": 6, "endLine": 8}
    single = result_for(doc, review.findings[2].fingerprint)
    assert single["locations"][0]["physicalLocation"]["region"] == {"startLine": 8}
    whole = result_for(doc, review.findings[1].fingerprint)
    assert whole["locations"][0]["physicalLocation"]["region"] == {"startLine": 1}
    assert whole["properties"]["fileLevel"] is True
    assert single["properties"]["fileLevel"] is False


def test_uris_are_repo_relative_and_encoded() -> None:
    review = full_review()
    doc = sarif(review)
    odd = result_for(doc, review.findings[4].fingerprint)
    assert (
        odd["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        == "pkg/with%20space/%C3%BCn%C3%AF.py"
    )
    dotted = result_for(doc, review.findings[8].fingerprint)
    assert dotted["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "docs/readme.md"


def test_suggestions_become_fixes() -> None:
    review = full_review()
    doc = sarif(review)
    fixed = result_for(doc, review.findings[0].fingerprint)
    replacement = fixed["fixes"][0]["artifactChanges"][0]["replacements"][0]
    assert replacement["deletedRegion"] == {"startLine": 6, "endLine": 8}
    assert replacement["insertedContent"]["text"] == 'cur.execute("SELECT %s", (x,))'
    assert "fixes" not in result_for(doc, review.findings[1].fingerprint)


def test_result_properties_keep_provenance() -> None:
    review = full_review()
    props = result_for(sarif(review), review.findings[7].fingerprint)["properties"]
    assert props == {
        "severity": "critical",
        "confidence": 0.8,
        "agent": "security",
        "category": "security",
        "source": "llm:claude-sonnet-4-5",
        "status": "open",
        "placement": "inline",
        "alsoFoundBy": ["bandit:B608"],
        "cwe": 89,
        "fileLevel": False,
    }


def test_rule_without_an_id_gets_a_stable_fallback() -> None:
    review = full_review()
    doc = sarif(review)
    result = result_for(doc, review.findings[8].fingerprint)
    assert result["ruleId"] == "pr-council/security"


def test_run_count_stays_within_the_upload_limit() -> None:
    findings = tuple(make_finding(i, source=f"tool{i}:X") for i in range(MAX_RUNS + 5))
    doc = sarif(Review(mode="parallel", target="t", findings=findings))
    assert len(doc["runs"]) == MAX_RUNS
    assert sum(len(run["results"]) for run in doc["runs"]) == len(findings)
    assert len(runs_by_tool(doc)["pr-council"]["results"]) == 6


def test_findings_without_a_path_are_counted_not_emitted() -> None:
    findings = (make_finding(1), make_finding(2, path=""))
    doc = sarif(Review(mode="parallel", target="t", findings=findings))
    assert sum(len(run["results"]) for run in doc["runs"]) == 1
    assert doc["properties"] == {"unlocatedFindings": 1}
