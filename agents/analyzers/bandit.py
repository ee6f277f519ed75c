"""Bandit, with ruff's flake8-bandit rules covering the files bandit cannot parse."""

from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from agents.analyzers.base import (
    ToolError,
    is_python,
    make_finding,
    relative,
    run_tool,
    scratch_tree,
)
from agents.analyzers.ruff import safe_path, security_ruff
from agents.analyzers.test_map import is_test_path
from agents.model import AnalyzerResult, Finding, ReviewContext, Severity, Skipped

BANDIT_TIMEOUT_S = 120.0
COVERED_BY_RUFF = "bandit could not parse it (newer Python syntax?); covered by ruff's S rules"
UNPARSEABLE = "neither bandit nor ruff could parse it (syntax error?)"

BanditLevel = Literal["LOW", "MEDIUM", "HIGH", "UNDEFINED"]

CONFIDENCE: dict[BanditLevel, float] = {"HIGH": 0.9, "MEDIUM": 0.6, "LOW": 0.3, "UNDEFINED": 0.3}
# Low-severity checks that flag a construct, not a flaw (every `assert`, every
# subprocess call without a shell, and the B4xx imports of a risky module such as
# `subprocess` or `pickle`): nits, kept out of inline comments.
INFORMATIONAL: frozenset[str] = frozenset({"B101", "B603", "B607"})
# These messages quote the hard-coded password itself; it must not reach the review.
_QUOTES_SECRET: frozenset[str] = frozenset({"B105", "B106", "B107"})


def bandit_severity(test_id: str, severity: BanditLevel, confidence: BanditLevel) -> Severity:
    """Map bandit's severity and confidence onto ours."""
    if severity == "HIGH":
        return "critical" if confidence == "HIGH" else "major"
    if severity == "MEDIUM":
        return "major"
    if test_id in INFORMATIONAL or test_id.startswith("B4"):
        return "nit"
    return "minor"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class BanditCwe(_Model):
    """The CWE bandit attaches to an issue (0 when none)."""

    id: int = 0


class BanditIssue(_Model):
    """One entry of bandit's JSON `results`."""

    filename: str
    test_id: str
    issue_text: str
    issue_severity: BanditLevel
    issue_confidence: BanditLevel
    issue_cwe: BanditCwe | None = None
    line_number: int
    line_range: tuple[int, ...] = ()
    more_info: str = ""


class BanditFileError(_Model):
    """A file bandit could not analyze."""

    filename: str
    reason: str


class BanditReport(_Model):
    """Bandit's JSON report, the parts we use."""

    results: tuple[BanditIssue, ...] = ()
    errors: tuple[BanditFileError, ...] = ()


class BanditFailed(ToolError):
    """Bandit did not run or did not produce a report."""


def run_bandit(
    root: Path, paths: Sequence[str], args: Sequence[str] = (), timeout: float = BANDIT_TIMEOUT_S
) -> BanditReport:
    """Run bandit on `paths` under `root` in a subprocess; raise BanditFailed when it fails."""
    # A subprocess, not bandit's API: as fast (measured), and it frees the GIL for the
    # other specialists and isolates us from crashes and warnings on odd code.
    command = [sys.executable, "-m", "bandit", "-f", "json", "-q", "--exit-zero", *args]
    out = run_tool(
        "bandit", [*command, "--", *paths], cwd=root, timeout=timeout, error=BanditFailed
    )
    try:
        return BanditReport.model_validate_json(out)
    except ValidationError as exc:
        raise BanditFailed("bandit's JSON report was not readable") from exc


def bandit_config(config_files: Mapping[str, str]) -> str | None:
    """Return the root pyproject.toml text when it has a `[tool.bandit]` table."""
    text = config_files.get("pyproject.toml")
    if text is None:
        return None
    try:
        tool = tomllib.loads(text).get("tool")
    except tomllib.TOMLDecodeError:
        return None
    return text if isinstance(tool, dict) and "bandit" in tool else None


@dataclass(frozen=True)
class _Scan:
    """Bandit's issues keyed by repo path, the files it did not cover and why, and notes."""

    issues: list[tuple[str, BanditIssue]]
    unparsed: list[str]
    notes: tuple[str, ...] = ()
    # Why bandit missed `unparsed`, when bandit itself failed rather than the files.
    failure: str | None = None


@dataclass(frozen=True)
class BanditAnalyzer:
    """Bandit on the changed Python files, honouring `# nosec` and `[tool.bandit]`."""

    # Spawns a tool subprocess: starts before the GIL-bound analyzers (analyzers/gate.py).
    spawns_process: ClassVar[bool] = True

    name: str = "bandit"
    timeout: float = BANDIT_TIMEOUT_S

    def run(self, ctx: ReviewContext) -> AnalyzerResult:
        """Run bandit, then ruff's S rules on whatever bandit could not parse."""
        targets = sorted(p for p in ctx.files if is_python(p) and safe_path(p))
        others = sorted(p for p in ctx.files if not is_python(p))
        skipped = tuple(Skipped(path=p, reason="not Python", by=self.name) for p in others)
        if not targets:
            return AnalyzerResult(tool=self.name, skipped=skipped)
        scan = self._scan(ctx, targets)
        findings = tuple(self._finding(ctx, p, i) for p, i in scan.issues if _wanted(p, i))
        fallback = self._fallback(ctx, scan)
        return AnalyzerResult(
            tool=self.name,
            findings=findings + fallback.findings,
            skipped=skipped + fallback.skipped,
            notes=scan.notes + fallback.notes,
        )

    def _scan(self, ctx: ReviewContext, targets: list[str]) -> _Scan:
        """Run bandit in a scratch tree; a failed run hands every file to the fallback."""
        config = bandit_config(ctx.config_files)
        files = {p: ctx.files[p] for p in targets}
        if config:
            files["pyproject.toml"] = config
        with scratch_tree(files) as root:
            try:
                return self._scan_in(root, targets, config is not None)
            except BanditFailed as exc:
                return _Scan([], targets, failure=str(exc))

    def _scan_in(self, root: Path, targets: list[str], configured: bool) -> _Scan:
        """Run bandit under the repository's `[tool.bandit]`, or without it if bandit rejects it."""
        notes: tuple[str, ...] = ()
        try:
            report = run_bandit(
                root, targets, ["-c", "pyproject.toml"] if configured else [], self.timeout
            )
        except BanditFailed as exc:
            if not configured:
                raise
            notes = (f"the repository's [tool.bandit] configuration could not be used ({exc})",)
            report = run_bandit(root, targets, (), self.timeout)
        issues = [(relative(root, i.filename), i) for i in report.results]
        unparsed = sorted({relative(root, e.filename) for e in report.errors})
        return _Scan(issues, unparsed, notes)

    def _fallback(self, ctx: ReviewContext, scan: _Scan) -> AnalyzerResult:
        """Cover the files bandit missed with ruff's S rules, and say so."""
        if not scan.unparsed:
            return AnalyzerResult(tool=self.name)
        covered = security_ruff(scan.unparsed).run(ctx)
        missed = {s.path: s.reason for s in covered.skipped}
        covered_by_ruff = (
            f"{scan.failure}; covered by ruff's S rules" if scan.failure else COVERED_BY_RUFF
        )
        skipped = tuple(
            Skipped(path=p, reason=_missed(missed.get(p), covered_by_ruff), by=self.name)
            for p in scan.unparsed
        )
        count = len(scan.unparsed) - len(missed)
        note = f"ruff's S rules covered {count} file(s) bandit could not analyze"
        return AnalyzerResult(
            tool=self.name,
            findings=covered.findings,
            skipped=skipped,
            notes=(scan.failure, note) if scan.failure else (note,),
        )

    def _finding(self, ctx: ReviewContext, path: str, issue: BanditIssue) -> Finding:
        """Build one finding from one bandit issue."""
        cwe = issue.issue_cwe.id if issue.issue_cwe and issue.issue_cwe.id else None
        end = max(issue.line_range, default=issue.line_number)
        return make_finding(
            ctx,
            agent="security",
            severity=bandit_severity(issue.test_id, issue.issue_severity, issue.issue_confidence),
            confidence=CONFIDENCE[issue.issue_confidence],
            path=path,
            line=issue.line_number,
            end_line=end,
            title=_title(issue),
            rule=issue.test_id,
            source=f"bandit:{issue.test_id}",
            body=_body(issue),
            cwe=cwe,
        )


def _missed(ruff_reason: str | None, covered: str) -> str:
    """Say why bandit skipped a file and whether ruff covered it instead."""
    if ruff_reason is None:
        return covered
    if ruff_reason.startswith("ruff could not parse it"):
        return UNPARSEABLE
    return f"bandit could not analyze it, and ruff's S rules failed too: {ruff_reason}"


def _wanted(path: str, issue: BanditIssue) -> bool:
    """Drop `assert` warnings in tests, where asserting is the point."""
    return not (issue.test_id == "B101" and is_test_path(path))


def _title(issue: BanditIssue) -> str:
    """Return bandit's message, without any secret it quotes."""
    text = issue.issue_text.strip().rstrip(".")
    if issue.test_id in _QUOTES_SECRET:
        text = re.sub(r":\s*.*$", "", text)
    return text


def _body(issue: BanditIssue) -> str:
    """Explain the issue with bandit's ratings and documentation link."""
    rating = f"severity {issue.issue_severity.lower()}, confidence {issue.issue_confidence.lower()}"
    doc = f" See [{issue.test_id}]({issue.more_info})." if issue.more_info else ""
    nosec = f" If this is intended, mark the line `# nosec {issue.test_id}` with a reason."
    return f"Bandit {issue.test_id} ({rating}).{doc}{nosec}"
