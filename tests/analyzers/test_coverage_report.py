"""Coverage reports (Cobertura XML, LCOV) and the diff-coverage analyzer."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

import pytest

from agents.analyzers.coverage import (
    CoverageAnalyzer,
    CoverageData,
    CoverageError,
    FileCoverage,
    match_files,
    parse_coverage,
    uncovered_runs,
)
from agents.model import AnalyzerResult
from tests.helpers import context_from

PRICING_BASE = """def price(amount):
    return amount
"""

# Line numbers matter: the runner calls price(10) and shipping(20), so lines 4 and 6
# (the discount branch) and 13 (light parcels) never run; 3 and 5 are not statements.
PRICING_HEAD = """def price(amount, discount=0):
    if discount:
        # apply the discount
        amount = amount * (100 - discount) / 100

        amount = round(amount, 2)
    return amount


def shipping(weight):
    if weight > 10:
        return 5
    return 0
"""

RUNNER = """import sys

sys.path.insert(0, "src")
from shop.pricing import price, shipping

price(10)
shipping(20)
"""

PATH = "src/shop/pricing.py"


@pytest.fixture(scope="module")
def real_reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Measure the runner with coverage.py and return its XML and LCOV reports."""
    root = tmp_path_factory.mktemp("measured")
    (root / "src/shop").mkdir(parents=True)
    (root / "src/shop/__init__.py").write_text("")
    (root / PATH).write_text(PRICING_HEAD)
    (root / "runner.py").write_text(RUNNER)
    # Keep an outer coverage run (if any) from steering the measured one.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE")}
    for args in (
        ["run", "--source=src", "runner.py"],
        ["xml", "-o", "cov.xml"],
        ["lcov", "-o", "cov.lcov"],
    ):
        subprocess.run(
            [sys.executable, "-m", "coverage", *args],
            cwd=root,
            env=env,
            check=True,
            capture_output=True,
        )
    return {"xml": (root / "cov.xml").read_text(), "lcov": (root / "cov.lcov").read_text()}


def analyze(
    head: Mapping[str, str | None], base: dict[str, str] | None, report: str | None
) -> AnalyzerResult:
    """Run the analyzer on a change with `report` as the coverage report."""
    return CoverageAnalyzer().run(context_from(head, base, coverage_report=report))


@pytest.mark.parametrize("kind", ["xml", "lcov"])
def test_real_coverage_py_report_gives_exact_uncovered_runs(
    real_reports: dict[str, str], kind: str
) -> None:
    result = analyze({PATH: PRICING_HEAD}, {PATH: PRICING_BASE}, real_reports[kind])
    runs = [(f.line, f.end_line, f.title) for f in result.findings]
    assert runs == [
        (4, 6, "Lines 4\u20136 are not covered by tests"),
        (13, None, "Line 13 is not covered by tests"),
    ]
    assert {(f.rule, f.severity, f.confidence, f.path) for f in result.findings} == {
        ("uncovered-lines", "minor", 0.95, PATH)
    }
    # Added coverable lines: 1, 2, 4, 6, 10, 11, 12, 13 (line 7 is unchanged context).
    assert result.notes == ("diff coverage: 62.5% (5 of 8 changed coverable lines covered)",)
    assert result.skipped == ()


@pytest.mark.parametrize("kind", ["xml", "lcov"])
def test_both_real_formats_parse_to_the_same_lines(real_reports: dict[str, str], kind: str) -> None:
    data = parse_coverage(real_reports[kind])
    assert data.format == ("cobertura" if kind == "xml" else "lcov")
    files = {f.path: dict(f.lines) for f in data.files}
    assert files[PATH] == {1: 1, 2: 1, 4: 0, 6: 0, 7: 1, 10: 1, 11: 1, 12: 1, 13: 0}
    assert files["src/shop/__init__.py"] == {}


def test_no_report_gives_an_empty_result() -> None:
    result = analyze({PATH: PRICING_HEAD}, {PATH: PRICING_BASE}, None)
    assert result == AnalyzerResult(tool="diff-coverage")


LCOV_ABSOLUTE = """TN:
SF:/home/runner/work/shop/shop/src/shop/pricing.py
DA:1,1
DA:2,0
DA:3,0
end_of_record
SF:/home/runner/work/shop/shop/src/shop/other.py
DA:1,0
end_of_record
"""


def test_absolute_lcov_paths_match_by_path_suffix() -> None:
    head = {PATH: "def f(x):\n    y = x\n    return y\n", "src/shop/untested.py": "X = 1\n"}
    result = analyze(head, None, LCOV_ABSOLUTE)
    assert [(f.path, f.line, f.end_line) for f in result.findings] == [(PATH, 2, 3)]
    assert result.notes == ("diff coverage: 33.3% (1 of 3 changed coverable lines covered)",)
    assert [(s.path, s.reason, s.by) for s in result.skipped] == [
        ("src/shop/untested.py", "not in the coverage report", "diff-coverage")
    ]


COBERTURA_SRC_ROOT = """<?xml version="1.0" ?>
<!DOCTYPE coverage SYSTEM "http://cobertura.sourceforge.net/xml/coverage-04.dtd">
<coverage version="1" line-rate="0.5">
  <sources><source>/ci/checkout/src</source></sources>
  <packages><package name="shop"><classes>
    <class name="pricing.py" filename="shop/pricing.py">
      <methods><method name="f"><lines><line number="2" hits="0"/></lines></method></methods>
      <lines><line number="1" hits="3"/><line number="2" hits="0"/><line number="3" hits="1"/></lines>
    </class>
    <class name="util.py" filename="shop/util.py">
      <lines><line number="1" hits="0"/></lines>
    </class>
  </classes></package></packages>
</coverage>
"""


def test_cobertura_paths_relative_to_a_source_root_match_the_src_layout() -> None:
    head = {PATH: "def f(x):\n    y = x\n    return y\n"}
    result = analyze(head, None, COBERTURA_SRC_ROOT)
    assert [(f.line, f.end_line, f.title) for f in result.findings] == [
        (2, None, "Line 2 is not covered by tests")
    ]
    assert result.notes == ("diff coverage: 66.7% (2 of 3 changed coverable lines covered)",)


def test_the_source_root_decides_between_two_files_of_one_name() -> None:
    data = parse_coverage(COBERTURA_SRC_ROOT)
    assert data.sources == ("/ci/checkout/src",)
    matched = match_files(["src/shop/util.py", "lib/shop/util.py", "util.py"], data)
    assert {p: f.path for p, f in matched.items()} == {"src/shop/util.py": "shop/util.py"}


def test_an_ambiguous_match_is_not_guessed() -> None:
    data = CoverageData(
        format="lcov",
        files=(FileCoverage("a/util.py", {1: 0}), FileCoverage("b/util.py", {1: 1})),
    )
    assert match_files(["c/util.py"], data) == {}
    assert set(match_files(["x/a/util.py", "b/util.py"], data)) == {"x/a/util.py", "b/util.py"}


def test_a_basename_must_match_whole() -> None:
    data = CoverageData(format="lcov", files=(FileCoverage("src/myutil.py", {1: 0}),))
    assert match_files(["src/util.py"], data) == {}


def test_windows_paths_in_a_report_are_matched() -> None:
    data = parse_coverage("SF:C:\\work\\shop\\src\\shop\\pricing.py\nDA:1,0\nend_of_record\n")
    assert list(match_files([PATH], data)) == [PATH]


def test_lcov_checksums_and_other_records_are_accepted() -> None:
    text = "TN:unit\nSF:a.py\nFN:1,f\nFNDA:1,f\nDA:1,1,abc123\nDA:2,0\nBRDA:2,0,0,-\nLF:2\nLH:1\nend_of_record"
    assert parse_coverage(text).files == (FileCoverage("a.py", {1: 1, 2: 0}),)


def test_a_line_reported_twice_counts_as_covered_if_either_ran() -> None:
    text = "SF:a.py\nDA:1,0\nend_of_record\nSF:a.py\nDA:1,2\nend_of_record\n"
    assert parse_coverage(text).files == (FileCoverage("a.py", {1: 2}),)


def test_a_run_spans_blank_lines_but_breaks_at_covered_and_unchanged_lines() -> None:
    lines = {1: 0, 3: 0, 4: 1, 5: 0, 6: 0, 8: 0, 9: 0}
    # 2 is blank (bridged); 4 ran (break); 7 is unchanged (break); 10 is blank (not included).
    added = [1, 2, 3, 4, 5, 6, 8, 9, 10]
    assert uncovered_runs(added, lines) == [(1, 3), (5, 6), (8, 9)]


def test_all_covered_change_reports_100_percent_and_no_findings() -> None:
    report = "SF:a.py\nDA:1,1\nDA:2,4\nend_of_record\n"
    result = analyze({"a.py": "x = 1\ny = 2\n"}, None, report)
    assert result.findings == ()
    assert result.notes == ("diff coverage: 100.0% (2 of 2 changed coverable lines covered)",)


def test_a_single_missed_line_never_rounds_up_to_100_percent() -> None:
    report = "SF:a.py\n" + "".join(f"DA:{n},{0 if n == 1 else 1}\n" for n in range(1, 2001))
    head = {"a.py": "".join(f"x{n} = {n}\n" for n in range(1, 2001))}
    result = analyze(head, None, report + "end_of_record\n")
    assert result.notes == ("diff coverage: 99.9% (1999 of 2000 changed coverable lines covered)",)


def test_changed_lines_absent_from_the_report_give_no_percentage() -> None:
    base = {"a.py": "\n\n\n\nx = 5\n"}
    result = analyze({"a.py": "# comment\n\n\n\nx = 5\n"}, base, "SF:a.py\nDA:5,0\nend_of_record\n")
    assert result.findings == ()
    assert result.notes == ("diff coverage: no changed lines are coverable in the report",)


def test_non_python_and_test_files_missing_from_the_report_are_not_listed() -> None:
    head = {"web/app.ts": "x\n", "tests/test_a.py": "def test(): pass\n", "b.py": "y = 1\n"}
    result = analyze(head, None, "SF:a.py\nDA:1,0\nend_of_record\n")
    assert [s.path for s in result.skipped] == ["b.py"]
    assert result.notes == (
        "diff coverage: none of the changed source files is in the coverage report",
    )


XML_BOMB = """<?xml version="1.0"?>
<!DOCTYPE coverage [
  <!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
  <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
  <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
  <!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
]>
<coverage><sources><source>&d;</source></sources></coverage>
"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE coverage [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<coverage><sources><source>&secret;</source></sources></coverage>
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("  \n\t\n", "empty"),
        ("this is not a coverage report\nat all\n", "unrecognised"),
        ('{"meta": {"version": "7"}, "files": {}}', "JSON"),
        ("<coverage><packages><package><classes><class filename='a.py'>", "malformed XML"),
        ("<html><body>404</body></html>", "not a Cobertura"),
        (XML_BOMB, "declares an entity"),
        (EXTERNAL_ENTITY, "declares an entity"),
        ("<coverage><packages><class filename='a.py'><line number='x' hits='1'/>", "<line>"),
        ("<coverage>&undefined;</coverage>", "malformed XML"),
        ("SF:a.py\nDA:1\nend_of_record\n", "malformed DA"),
        ("DA:1,1\nSF:a.py\n", "outside a record"),
        ("SF:a.py\nDA:1,1\nrm -rf /\n", "not an LCOV record"),
    ],
)
def test_bad_reports_raise_coverage_error(text: str, message: str) -> None:
    with pytest.raises(CoverageError, match=message):
        parse_coverage(text)


@pytest.mark.parametrize("text", ["garbage", XML_BOMB, "<coverage><packages>"])
def test_the_analyzer_turns_a_bad_report_into_a_note(text: str) -> None:
    result = analyze({PATH: PRICING_HEAD}, {PATH: PRICING_BASE}, text)
    assert (result.findings, result.skipped) == ((), ())
    assert len(result.notes) == 1
    assert result.notes[0].startswith("coverage report not used: ")


def test_a_truncated_real_report_is_an_error(real_reports: dict[str, str]) -> None:
    text = real_reports["xml"]
    with pytest.raises(CoverageError, match="malformed XML"):
        parse_coverage(text[: len(text) // 2])


def test_a_report_from_another_revision_is_not_trusted() -> None:
    result = analyze({"a.py": "x = 1\n"}, None, "SF:a.py\nDA:1,0\nDA:40,0\nend_of_record\n")
    assert result.findings == ()
    assert [(s.path, s.reason) for s in result.skipped] == [
        ("a.py", "the coverage report does not match this revision (it measures line 40)")
    ]
    assert result.notes == ()


def test_a_deleted_file_is_ignored() -> None:
    result = analyze(
        {PATH: None}, {PATH: PRICING_BASE}, "SF:src/shop/pricing.py\nDA:1,0\nend_of_record\n"
    )
    assert (result.findings, result.skipped, result.notes) == ((), (), ())
