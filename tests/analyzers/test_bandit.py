"""Bandit, and ruff's S rules covering files bandit cannot parse."""

from __future__ import annotations

import pytest

from agents.analyzers.bandit import (
    COVERED_BY_RUFF,
    UNPARSEABLE,
    BanditAnalyzer,
    BanditLevel,
    bandit_severity,
)
from agents.model import AnalyzerResult, Finding
from tests.helpers import context_from

PASSWORD = "s3cr3t-hunter2"  # pragma: allowlist secret

APP = f'''import sqlite3
import subprocess

DB_PASSWORD = "{PASSWORD}"


def find(db: sqlite3.Connection, name: str) -> None:
    db.execute(f"SELECT * FROM users WHERE name = '{{name}}'")


def run(user_command: str) -> None:
    subprocess.call(user_command, shell=True)
    subprocess.call(user_command, shell=True)  # nosec B602
'''

# PEP 695 syntax: Python 3.11's parser (and so bandit) rejects it.
NEW_SYNTAX = """import sqlite3

type Row = tuple[str, ...]


def find[T](db: sqlite3.Connection, name: T) -> None:
    db.execute(f"SELECT * FROM users WHERE name = '{name}'")
"""

FILES: dict[str, str | None] = {
    "app/db.py": APP,
    "app/new.py": NEW_SYNTAX,
    "app/broken.py": "def f(:\n",
    "tests/test_db.py": "def test_it() -> None:\n    assert 1 + 1 == 2\n",
    "docs/readme.md": "# Docs\n",
}


@pytest.fixture(scope="module")
def result() -> AnalyzerResult:
    return BanditAnalyzer().run(context_from(FILES))


def only(result: AnalyzerResult, path: str, rule: str) -> Finding:
    [finding] = [f for f in result.findings if f.path == path and f.rule == rule]
    return finding


def test_sql_injection_is_major_with_its_cwe(result: AnalyzerResult) -> None:
    finding = only(result, "app/db.py", "B608")
    assert (finding.line, finding.source, finding.cwe) == (8, "bandit:B608", 89)
    assert finding.severity in ("major", "critical")
    assert (finding.agent, finding.category) == ("security", "security")
    assert "SQL injection" in finding.title
    assert "https://bandit.readthedocs.io/" in finding.body


def test_shell_true_on_user_input_is_critical_and_nosec_is_honoured(
    result: AnalyzerResult,
) -> None:
    finding = only(result, "app/db.py", "B602")
    assert (finding.line, finding.severity, finding.confidence) == (12, "critical", 0.9)
    assert finding.cwe == 78


def test_hard_coded_password_title_does_not_quote_it(result: AnalyzerResult) -> None:
    finding = only(result, "app/db.py", "B105")
    assert finding.severity == "minor"
    assert PASSWORD not in finding.model_dump_json()


def test_informational_checks_are_nits_and_asserts_in_tests_are_dropped(
    result: AnalyzerResult,
) -> None:
    assert only(result, "app/db.py", "B404").severity == "nit"
    assert not [f for f in result.findings if f.path == "tests/test_db.py"]


def test_newer_syntax_is_covered_by_ruff_s_rules(result: AnalyzerResult) -> None:
    skip = next(s for s in result.skipped if s.path == "app/new.py")
    assert (skip.reason, skip.by) == (COVERED_BY_RUFF, "bandit")
    finding = only(result, "app/new.py", "S608")
    assert (finding.source, finding.agent, finding.cwe, finding.line) == (
        "ruff:S608",
        "security",
        89,
        7,
    )
    assert finding.severity == "major"
    assert any("covered 1 file" in note for note in result.notes)


def test_files_nobody_can_parse_and_non_python_files_are_skipped(result: AnalyzerResult) -> None:
    reasons = {s.path: s.reason for s in result.skipped}
    assert reasons["app/broken.py"] == UNPARSEABLE
    assert reasons["docs/readme.md"] == "not Python"
    assert not [f for f in result.findings if f.path == "app/broken.py"]


def test_repo_bandit_config_is_honoured() -> None:
    config = {"pyproject.toml": '[tool.bandit]\nskips = ["B608", "B404"]\n'}
    result = BanditAnalyzer().run(context_from({"app/db.py": APP}, config_files=config))
    rules = {f.rule for f in result.findings}
    assert "B602" in rules
    assert not rules & {"B608", "B404"}


def test_no_python_means_no_bandit_run() -> None:
    result = BanditAnalyzer().run(context_from({"a.txt": "hello\n"}))
    assert result.findings == ()
    assert [s.reason for s in result.skipped] == ["not Python"]


@pytest.mark.parametrize(
    ("test_id", "severity", "confidence", "expected"),
    [
        ("B602", "HIGH", "HIGH", "critical"),
        ("B324", "HIGH", "MEDIUM", "major"),
        ("B608", "MEDIUM", "LOW", "major"),
        ("B105", "LOW", "MEDIUM", "minor"),
        ("B101", "LOW", "HIGH", "nit"),
        ("B404", "LOW", "HIGH", "nit"),
        ("B413", "HIGH", "HIGH", "critical"),
    ],
)
def test_severity_mapping(
    test_id: str, severity: BanditLevel, confidence: BanditLevel, expected: str
) -> None:
    assert bandit_severity(test_id, severity, confidence) == expected


def test_a_failed_bandit_run_is_covered_by_ruff() -> None:
    # No Python starts within a millisecond: bandit always times out here.
    result = BanditAnalyzer(timeout=0.001).run(context_from({"app/db.py": APP}))
    assert only(result, "app/db.py", "S608").source == "ruff:S608"
    [skip] = result.skipped
    assert skip.reason == "bandit timed out after 0.001 s; covered by ruff's S rules"
