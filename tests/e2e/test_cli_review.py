"""`pr-council review` on real git repositories, in every format, mode and exit path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.e2e.conftest import GitRepo, run_cli

DB_BASE = '''"""Database access."""

import sqlite3


def get_user(conn: sqlite3.Connection, user_id: int) -> tuple | None:
    """Fetch a user by id."""
    return conn.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
'''
DB_HEAD = (
    DB_BASE
    + '''

def find_users(conn: sqlite3.Connection, name: str) -> list[tuple]:
    """Find users by name."""
    query = f"SELECT * FROM users WHERE name = '{name}'"
    return conn.execute(query).fetchall()
'''
)
SETTINGS = '''"""Settings."""

AWS_ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
'''
NOTIFY = '''"""Notifications."""

import time


async def send_reminder(user_id: int) -> str:
    """Wait a little, then remind the user."""
    time.sleep(2)
    return f"reminded {user_id}"
'''
SYNC = '''"""Synchronise profiles from the directory service."""

import requests


def sync_profiles(user_ids: list[int]) -> list[dict]:
    """Fetch every profile."""
    profiles = []
    for user_id in user_ids:
        profiles.append(requests.get(f"https://directory.example/users/{user_id}", timeout=5).json())
    return profiles
'''
BILLING_BASE = '''"""Billing."""


def total(amounts: list[float]) -> float:
    """Sum amounts."""
    return sum(amounts)
'''
BILLING_HEAD = (
    BILLING_BASE
    + '''

def compute_invoice(amounts: list[float], tax_rate: float) -> float:
    """Total plus tax."""
    return round(total(amounts) * (1 + tax_rate), 2)
'''
)
TESTS_BASE = """from app.billing import total
from app.db import get_user


def test_total() -> None:
    assert total([1.0, 2.0]) == 3.0


def test_get_user_is_callable() -> None:
    assert callable(get_user)
"""
TESTS_HEAD = (
    TESTS_BASE
    + """

def test_new_entry_points_exist() -> None:
    from app.db import find_users
    from app.notify import send_reminder
    from app.sync import sync_profiles

    assert all(map(callable, (find_users, send_reminder, sync_profiles)))
"""
)
SECRET = "AKIAIOSFODNN7EXAMPLE"  # pragma: allowlist secret


@pytest.fixture
def risky(repo: GitRepo) -> GitRepo:
    """A feature branch adding an SQL injection, a secret, a blocking call, an N+1 and untested code."""
    repo.commit(
        {
            "app/__init__.py": "",
            "app/db.py": DB_BASE,
            "app/billing.py": BILLING_BASE,
            "tests/test_app.py": TESTS_BASE,
            "README.md": "# app\n",
        },
        "base",
    )
    repo.git("checkout", "-q", "-b", "feature")
    repo.commit(
        {
            "app/db.py": DB_HEAD,
            "app/settings.py": SETTINGS,
            "app/notify.py": NOTIFY,
            "app/sync.py": SYNC,
            "app/billing.py": BILLING_HEAD,
            "tests/test_app.py": TESTS_HEAD,
            "README.md": "# app\n\nNow with reminders.\n",
        },
        "feature",
    )
    return repo


def review_json(repo: GitRepo, *args: str) -> dict[str, Any]:
    proc = run_cli("review", str(repo.root), "--format", "json", *args)
    assert proc.returncode == 0, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def by_place(report: dict[str, Any]) -> dict[tuple[str, int | None], dict[str, Any]]:
    """Index findings by place, the gravest one winning where two share a line."""
    return {(f["path"], f["line"]): f for f in reversed(report["findings"])}


def test_json_review_reports_each_planted_problem_where_it_is(risky: GitRepo) -> None:
    report = review_json(risky)
    found = by_place(report)
    assert report["schema_version"] == 1 and report["mode"] == "parallel"

    sqli = found[("app/db.py", 13)]
    assert (sqli["category"], sqli["cwe"]) == ("security", 89)
    assert sqli["severity"] in ("major", "critical") and sqli["rule"] in ("B608", "S608")
    assert sqli["placement"] == "inline"

    secret = found[("app/settings.py", 3)]
    assert (secret["category"], secret["severity"], secret["cwe"]) == ("security", "critical", 798)
    assert secret["source"].startswith("detect-secrets:")

    blocking = found[("app/notify.py", 8)]
    assert (blocking["category"], blocking["severity"]) == ("performance", "major")
    assert "time.sleep" in blocking["title"]
    assert "ruff:ASYNC251" in blocking["also_found_by"]  # one finding, both tools credited

    n_plus_one = found[("app/sync.py", 10)]
    assert (n_plus_one["category"], n_plus_one["severity"]) == ("performance", "major")
    assert "N+1" in n_plus_one["title"]

    untested = found[("app/billing.py", 9)]
    assert (untested["category"], untested["severity"]) == ("test-coverage", "minor")
    assert "compute_invoice" in untested["title"]
    untested_names = [f["title"] for f in report["findings"] if f["rule"] == "untested-public-api"]
    assert len(untested_names) == 1  # the other new functions are referenced by a test

    assert [a["name"] for a in report["agents"]] == [
        "security",
        "style",
        "performance",
        "test-coverage",
    ]
    assert all(a["status"] == "ok" and a["duration_ms"] > 0 for a in report["agents"])
    assert all(len(f["fingerprint"]) == 16 for f in report["findings"])


def test_no_output_format_ever_contains_the_secret(risky: GitRepo, tmp_path: Path) -> None:
    for fmt in ("markdown", "json", "sarif"):
        proc = run_cli(
            "review", str(risky.root), "--format", fmt, "--trace", str(tmp_path / "t.json")
        )
        assert proc.returncode == 0, proc.stderr
        assert SECRET not in proc.stdout and SECRET not in proc.stderr
        assert SECRET not in (tmp_path / "t.json").read_text()


def test_markdown_review_reads_as_a_summary_comment(risky: GitRepo) -> None:
    proc = run_cli("review", str(risky.root))
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert text.startswith("<!-- pr-council:summary -->")
    assert "1 critical" in text and "app/db.py:13" in text and "app/settings.py:3" in text
    assert "Hard-coded AWS Access Key" in text
    assert "```mermaid" in text and "gantt" in text
    assert "analyzers only: no ANTHROPIC_API_KEY set" in text


def test_sarif_review_validates_and_has_one_run_per_tool(risky: GitRepo) -> None:
    proc = run_cli("review", str(risky.root), "--format", "sarif")
    assert proc.returncode == 0, proc.stderr
    log = json.loads(proc.stdout)
    schema = json.loads(
        (Path(__file__).parents[1] / "data" / "sarif-schema-2.1.0.json").read_text()
    )
    jsonschema.Draft7Validator(schema).validate(log)
    runs = {run["tool"]["driver"]["name"]: run for run in log["runs"]}
    assert {"bandit", "detect-secrets", "perf-ast", "test-map"} <= set(runs)
    [secret] = runs["detect-secrets"]["results"]
    assert secret["level"] == "error"
    region = secret["locations"][0]["physicalLocation"]
    assert (region["artifactLocation"]["uri"], region["region"]["startLine"]) == (
        "app/settings.py",
        3,
    )


def test_output_file_and_trace_file(risky: GitRepo, tmp_path: Path) -> None:
    out, trace = tmp_path / "review.json", tmp_path / "trace.json"
    proc = run_cli(
        "review", str(risky.root), "--format", "json", "--output", str(out), "--trace", str(trace)
    )
    assert proc.returncode == 0 and proc.stdout == ""
    assert json.loads(out.read_text())["findings"]
    spans = json.loads(trace.read_text())
    assert [a["name"] for a in spans["agents"]] == [
        "security",
        "style",
        "performance",
        "test-coverage",
    ]
    assert spans["mode"] == "parallel" and spans["duration_ms"] > 0
    assert {s["name"] for s in spans["spans"]} == {
        "security",
        "style",
        "performance",
        "test-coverage",
        "synthesis",
    }


@pytest.mark.parametrize(("fail_on", "code"), [("critical", 1), ("nit", 1), ("never", 0)])
def test_fail_on_sets_the_exit_code(risky: GitRepo, fail_on: str, code: int) -> None:
    assert run_cli("review", str(risky.root), "--fail-on", fail_on).returncode == code


def test_fail_on_defaults_to_the_repository_config(repo: GitRepo) -> None:
    repo.commit(
        {
            ".github/pr-council.yml": "fail_on: minor\n",
            "app/__init__.py": "",
            "tests/test_x.py": "def test_x() -> None:\n    assert True\n",
        }
    )
    repo.git("checkout", "-q", "-b", "feature")
    repo.commit({"app/api.py": "def handler(x: int) -> int:\n    return x + 1\n"})
    proc = run_cli("review", str(repo.root))
    assert proc.returncode == 1, proc.stderr  # an untested public function is minor
    assert run_cli("review", str(repo.root), "--fail-on", "major").returncode == 0


@pytest.mark.parametrize("mode", ["sequential", "adaptive"])
def test_other_modes_find_the_same_problems(risky: GitRepo, mode: str) -> None:
    parallel = {(f["path"], f["line"], f["rule"]) for f in review_json(risky)["findings"]}
    other = review_json(risky, "--mode", mode)
    assert other["mode"] == mode
    assert {(f["path"], f["line"], f["rule"]) for f in other["findings"]} == parallel


def test_adaptive_mode_skips_specialists_with_nothing_to_review(repo: GitRepo) -> None:
    repo.commit({"app.py": "x = 1\n", "docs/guide.md": "# Guide\n"})
    repo.git("checkout", "-q", "-b", "docs")
    repo.commit({"docs/guide.md": "# Guide\n\nHow to install.\n"})
    report = review_json(repo, "--mode", "adaptive")
    status = {a["name"]: (a["status"], a["error"]) for a in report["agents"]}
    assert status["security"] == ("ok", None)
    assert status["style"] == ("skipped", "no changed Python files")
    assert status["performance"][0] == "skipped" and status["test-coverage"][0] == "skipped"


def test_a_clean_refactor_has_no_major_or_critical_finding(repo: GitRepo) -> None:
    before = '''"""Stats."""


def mean(values: list[float]) -> float:
    """Average of values."""
    total = 0.0
    count = 0
    for v in values:
        total += v
        count += 1
    return total / count
'''
    after = '''"""Stats."""


def mean(values: list[float]) -> float:
    """Average of values."""
    if not values:
        raise ValueError("mean of no values")
    return sum(values) / len(values)
'''
    test = (
        "from stats import mean\n\n\ndef test_mean() -> None:\n    assert mean([1.0, 3.0]) == 2.0\n"
    )
    repo.commit({"stats.py": before, "tests/test_stats.py": test})
    repo.git("checkout", "-q", "-b", "refactor")
    repo.commit({"stats.py": after})
    report = review_json(repo)
    assert [f for f in report["findings"] if f["severity"] in ("critical", "major")] == []
    assert all(a["status"] == "ok" for a in report["agents"])


def test_review_of_a_diff_file_matches_the_review_of_the_range(
    risky: GitRepo, tmp_path: Path
) -> None:
    diff = tmp_path / "change.diff"
    diff.write_text(risky.git("diff", "main...feature"))
    via_range = {(f["path"], f["line"], f["rule"]) for f in review_json(risky)["findings"]}
    via_diff = review_json(risky, "--diff", str(diff))
    assert via_diff["target"] == "diff:change.diff"
    assert {(f["path"], f["line"], f["rule"]) for f in via_diff["findings"]} == via_range


def test_on_the_default_branch_the_last_commit_is_reviewed(risky: GitRepo) -> None:
    risky.git("checkout", "-q", "main")
    risky.git("merge", "-q", "--ff-only", "feature")
    report = review_json(risky)
    assert ("app/settings.py", 3) in by_place(report)


def test_newer_python_syntax_is_covered_by_ruff_and_the_skip_is_reported(repo: GitRepo) -> None:
    repo.commit({"app.py": "x = 1\n"})
    repo.git("checkout", "-q", "-b", "py312")
    modern = (
        "import sqlite3\n\ntype Row = tuple[str, ...]\n\n\n"
        "def find(conn: sqlite3.Connection, name: str) -> list[Row]:\n"
        "    return conn.execute(f\"SELECT * FROM t WHERE name = '{name}'\").fetchall()\n"
    )
    repo.commit({"modern.py": modern, "tests/test_modern.py": "from modern import find\n"})
    report = review_json(repo)
    sqli = by_place(report)[("modern.py", 7)]
    assert sqli["source"] == "ruff:S608" and sqli["category"] == "security"
    bandit_skip = [s for s in report["skipped"] if s["path"] == "modern.py" and "bandit" in s["by"]]
    assert bandit_skip and "ruff" in bandit_skip[0]["reason"]


def test_a_diff_with_non_utf8_bytes_is_reviewed(tmp_path: Path) -> None:
    (tmp_path / "legacy.py").write_bytes(
        "name = 'Jos\xe9'\npassword = 'hunter2hunter2'\n".encode("latin-1")
    )
    diff = (
        b"diff --git a/legacy.py b/legacy.py\n--- a/legacy.py\n+++ b/legacy.py\n@@ -1 +1,2 @@\n"
        b" name = 'Jos\xe9'\n+password = 'hunter2hunter2'\n"
    )
    proc = run_cli("review", str(tmp_path), "--diff", "-", "--format", "json", stdin=diff)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert {"path": "legacy.py", "reason": "not UTF-8 text", "by": "council"} in report["skipped"]
