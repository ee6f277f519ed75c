"""Ruff analyzers: style under the repo's config, performance and security presets."""

from __future__ import annotations

import re

import pytest

from agents.analyzers.ruff import perf_ruff, security_ruff, style_ruff, target_version
from agents.analyzers.ruff_fix import fix_suggestion
from agents.analyzers.ruff_output import RuffDiagnostic, RuffEdit, RuffFix, RuffLocation
from agents.analyzers.ruff_rules import perf_severity, security_severity, style_severity
from agents.model import Finding, fingerprint
from tests.helpers import context_from

UNUSED_IMPORT = "import os\nimport sys\n\nprint(sys.argv)\n"


def by_rule(findings: tuple[Finding, ...], rule: str) -> list[Finding]:
    return [f for f in findings if f.rule == rule]


def test_style_reports_unused_import_with_a_deleting_suggestion() -> None:
    ctx = context_from({"pkg/mod.py": UNUSED_IMPORT})
    result = style_ruff().run(ctx)
    [finding] = by_rule(result.findings, "F401")
    assert (finding.agent, finding.category, finding.severity) == ("style", "style", "minor")
    assert (finding.path, finding.line, finding.source) == ("pkg/mod.py", 1, "ruff:F401")
    assert finding.title == "`os` imported but unused"
    assert "https://docs.astral.sh/ruff/rules/unused-import" in finding.body
    # Ruff's fix removes the whole line: an empty suggestion deletes it.
    assert finding.suggestion == ""
    assert finding.fingerprint == fingerprint("style", "F401", "pkg/mod.py", "import os")


def test_fix_on_part_of_a_line_becomes_the_rewritten_line() -> None:
    source = "from typing import List\n\n\ndef f(x: List[int]) -> List[int]:\n    return x\n"
    result = style_ruff().run(context_from({"a.py": source}))
    [finding] = by_rule(result.findings, "UP006")
    # Both occurrences on the line are one finding, and its suggestion fixes both.
    assert finding.line == 4
    assert finding.suggestion == "def f(x: list[int]) -> list[int]:"
    assert "1 more on this line" in finding.title


def test_fix_keeps_crlf_line_endings_and_counts_columns_in_characters() -> None:
    source = "import sys, os\r\nx = 'é😀'; y = x == None\r\nprint(sys, os, y)\r\n"
    result = style_ruff().run(context_from({"a.py": source}))
    [split] = by_rule(result.findings, "E401")
    assert split.suggestion == "import sys\r\nimport os"
    [none_cmp] = by_rule(result.findings, "E711")
    assert none_cmp.suggestion == "x = 'é😀'; y = x is None"
    assert "unsafe" in none_cmp.body


def diag(row: int, end_row: int, *edits: tuple[int, int, int, int, str]) -> RuffDiagnostic:
    """Build a ruff diagnostic as ruff's JSON would describe it."""
    return RuffDiagnostic(
        code="X1",
        message="m",
        filename="/tmp/a.py",
        location=RuffLocation(row=row, column=1),
        end_location=RuffLocation(row=end_row, column=2),
        fix=RuffFix(
            edits=tuple(
                RuffEdit(
                    content=c,
                    location=RuffLocation(row=r1, column=c1),
                    end_location=RuffLocation(row=r2, column=c2),
                )
                for r1, c1, r2, c2, c in edits
            )
        ),
    )


TEXT = "a = 1\nb = 2\nc = 3\n"


@pytest.mark.parametrize(
    ("diagnostic", "expected"),
    [
        (diag(2, 2, (2, 5, 2, 6, "20")), "b = 20"),
        # An edit on another line than the finding's: no suggestion.
        (diag(2, 2, (3, 5, 3, 6, "30")), None),
        # An edit that swallows the line break joins two lines: not expressible.
        (diag(2, 2, (2, 6, 3, 1, "")), None),
        # Deleting the line including its break: delete the lines.
        (diag(2, 2, (2, 1, 3, 1, "")), ""),
        # A fix that inserts lines keeps them.
        (diag(2, 2, (2, 1, 2, 1, "import x\n")), "import x\nb = 2"),
        # Multi-line findings cover all their lines.
        (diag(1, 2, (1, 5, 1, 6, "10"), (2, 5, 2, 6, "20")), "a = 10\nb = 20"),
        # Overlapping edits cannot both apply.
        (diag(2, 2, (2, 1, 2, 4, "x"), (2, 3, 2, 6, "y")), None),
    ],
)
def test_fix_suggestion_only_when_the_edits_fit_the_lines(
    diagnostic: RuffDiagnostic, expected: str | None
) -> None:
    assert fix_suggestion(TEXT, diagnostic) == expected


def test_fix_suggestion_on_last_line_without_final_newline() -> None:
    assert fix_suggestion("a = 1\nb = 2", diag(2, 2, (2, 5, 2, 6, "20"))) == "b = 20"


def test_syntax_error_is_one_major_finding_per_file() -> None:
    result = style_ruff().run(context_from({"bad.py": "def f(:\n    pass\n\ndef g(:\n"}))
    assert [f.rule for f in result.findings] == ["invalid-syntax"]
    [finding] = result.findings
    assert finding.severity == "major"
    assert finding.title.startswith("Syntax error: ")
    assert finding.source == "ruff:invalid-syntax"


def test_newest_python_syntax_parses() -> None:
    source = (
        "type Alias = list[int]\n\n\n"
        "def first[T = int](xs: list[T]) -> T:\n"  # PEP 696 (3.13)
        "    return xs[0]\n\n\n"
        "class Box[T]:\n"
        "    item: T\n"
    )
    result = style_ruff().run(context_from({"new.py": source}))
    assert not [f for f in result.findings if f.rule == "invalid-syntax"]
    assert not result.skipped


def test_non_python_files_are_skipped() -> None:
    ctx = context_from({"README.md": "# hi\n", "a.py": "x = 1\n"})
    for analyzer in (style_ruff(), perf_ruff()):
        result = analyzer.run(ctx)
        [skip] = result.skipped
        assert (skip.path, skip.reason, skip.by) == ("README.md", "not Python", analyzer.name)


def test_default_rules_apply_without_repo_config() -> None:
    source = "def f(items=[]):\n    return items\n"
    result = style_ruff().run(context_from({"a.py": source}))
    [finding] = by_rule(result.findings, "B006")
    assert finding.severity == "minor"
    assert any("default rules" in note for note in result.notes)


OTHER_SPECIALISTS = (
    "import subprocess\nimport time\n\n\n"
    "async def handler(xs, cmd):\n"
    "    time.sleep(1)\n"
    "    out = []\n"
    "    for x in xs:\n"
    "        out.append(x * 2)\n"
    "    subprocess.call(cmd, shell=True)\n"
    "    return out\n"
)


def test_style_honours_repo_config_but_never_reports_other_specialists_rules() -> None:
    config = {"pyproject.toml": '[tool.ruff.lint]\nselect = ["ALL"]\n'}
    result = style_ruff().run(context_from({"a.py": OTHER_SPECIALISTS}, config_files=config))
    rules = {f.rule for f in result.findings}
    # ALL is in force (docstring and annotation rules fire) ...
    assert {"D103", "ANN001"} <= rules
    # ... except what performance and security own.
    assert not {r for r in rules if re.match(r"PERF|ASYNC|S\d", r)}
    assert any("pyproject.toml" in note for note in result.notes)


def test_repo_config_selection_replaces_the_default() -> None:
    config = {"ruff.toml": 'line-length = 20\n[lint]\nselect = ["E501"]\n'}
    source = "import os\nvalue = 'a rather long line of code'\n"
    result = style_ruff().run(context_from({"a.py": source}, config_files=config))
    assert [f.rule for f in result.findings] == ["E501"]


def test_repo_exclusions_are_honoured() -> None:
    config = {"pyproject.toml": '[tool.ruff]\nextend-exclude = ["migrations"]\n'}
    files = {"migrations/0001_initial.py": UNUSED_IMPORT, "app.py": UNUSED_IMPORT}
    result = style_ruff().run(context_from(files, config_files=config))
    assert {f.path for f in result.findings} == {"app.py"}


def test_config_in_a_subdirectory_governs_only_that_subtree() -> None:
    config = {"backend/ruff.toml": '[lint]\nselect = ["E711"]\n'}
    source = "import os\nx = 1\ny = x == None\n"
    ctx = context_from({"backend/a.py": source, "web/b.py": source}, config_files=config)
    rules = {(f.path, f.rule) for f in style_ruff().run(ctx).findings}
    assert rules == {("backend/a.py", "E711"), ("web/b.py", "F401"), ("web/b.py", "E711")}


def test_unusable_repo_config_falls_back_to_the_default_rules() -> None:
    config = {"ruff.toml": '[lint]\nselect = ["NOT-A-RULE"]\n'}
    result = style_ruff().run(context_from({"a.py": UNUSED_IMPORT}, config_files=config))
    assert by_rule(result.findings, "F401")
    assert any("could not be used" in note for note in result.notes)


SORTED_IMPORTS = "import os\n\nimport requests\n\nimport mypkg\n\nprint(os, requests, mypkg)\n"


@pytest.mark.parametrize(("repo_files", "flagged"), [(("mypkg/__init__.py",), False), ((), True)])
def test_first_party_packages_are_recognised_from_the_repo_layout(
    repo_files: tuple[str, ...], flagged: bool
) -> None:
    config = {"pyproject.toml": '[tool.ruff.lint]\nselect = ["I"]\n'}
    ctx = context_from(
        {"app/main.py": SORTED_IMPORTS},
        config_files=config,
        repo_files=("app/main.py", *repo_files),
    )
    assert bool(by_rule(style_ruff().run(ctx).findings, "I001")) is flagged


def test_perf_ruff_reports_performance_rules_only() -> None:
    source = OTHER_SPECIALISTS + "\n\ndef any_big(xs):\n    return any([x > 1 for x in xs])\n"
    result = perf_ruff().run(context_from({"a.py": source}))
    rules = {f.rule for f in result.findings}
    assert {"ASYNC251", "PERF401", "C419"} <= rules
    assert all(f.agent == "performance" and f.source == f"ruff:{f.rule}" for f in result.findings)
    assert not rules & {"S602", "F401", "E501"}
    [blocking] = by_rule(result.findings, "ASYNC251")
    assert blocking.severity == "major"


SQL = (
    "import sqlite3\n\n\n"
    "def find(db: sqlite3.Connection, name: str) -> None:\n"
    '    db.execute(f"SELECT * FROM users WHERE name = {name}")\n'
)


def test_security_ruff_covers_only_the_given_paths() -> None:
    ctx = context_from({"a.py": SQL, "b.py": SQL, "c.md": "x\n"})
    result = security_ruff(["a.py"]).run(ctx)
    [finding] = result.findings
    assert (finding.path, finding.rule, finding.source) == ("a.py", "S608", "ruff:S608")
    assert (finding.agent, finding.severity, finding.cwe) == ("security", "major", 89)
    # Files outside its paths are someone else's: not reported as skipped either.
    assert result.skipped == ()


def test_unparseable_file_is_skipped_by_analyzers_that_do_not_own_syntax() -> None:
    result = security_ruff().run(context_from({"bad.py": "def f(:\n"}))
    [skip] = result.skipped
    assert skip.path == "bad.py"
    assert skip.reason.startswith("ruff could not parse it")
    assert result.findings == ()


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("invalid-syntax", "major"),
        ("F821", "major"),
        ("F811", "major"),
        ("F632", "major"),
        ("F706", "major"),
        ("F401", "minor"),
        ("F841", "minor"),
        ("B006", "minor"),
        ("E711", "nit"),
        ("I001", "nit"),
        ("UP006", "nit"),
        ("SIM108", "nit"),
        ("D103", "nit"),
    ],
)
def test_style_severity_table(code: str, expected: str) -> None:
    assert style_severity(code)[0] == expected


def test_perf_and_security_tables() -> None:
    assert perf_severity("ASYNC230")[0] == "major"
    assert perf_severity("PERF401")[0] == "nit"
    assert perf_severity("C419")[0] == "minor"
    assert security_severity("S608")[0] == "major"
    assert security_severity("S602")[0] == "major"
    assert security_severity("S101")[0] == "nit"
    assert security_severity("S105")[0] == "minor"


@pytest.mark.parametrize(
    ("requires", "expected"),
    [(">=3.10", "py310"), (">= 3.12, <4", "py312"), ("~=3.9", None), (">=3.30", "py314")],
)
def test_target_version_from_requires_python(requires: str, expected: str | None) -> None:
    pyproject = f'[project]\nname = "x"\nrequires-python = "{requires}"\n'
    assert target_version({"pyproject.toml": pyproject}) == expected


def test_target_version_is_unknown_without_pyproject() -> None:
    assert target_version({}) is None
    assert target_version({"pyproject.toml": "not [valid toml"}) is None
