"""Ruff: one runner, one generic analyzer, and the style, performance and security presets."""

from __future__ import annotations

import functools
import json
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import ClassVar

from pydantic import TypeAdapter, ValidationError

from agents.analyzers.base import (
    ToolError,
    is_python,
    make_finding,
    relative,
    run_tool,
    scratch_tree,
)
from agents.analyzers.ruff_fix import fix_suggestion
from agents.analyzers.ruff_output import RuffDiagnostic
from agents.analyzers.ruff_rules import (
    DEFAULT_STYLE_IGNORE,
    DEFAULT_STYLE_SELECT,
    PERF_SELECT,
    SECURITY_CWE,
    SECURITY_SELECT,
    STYLE_NEVER,
    SeverityFn,
    perf_severity,
    security_severity,
    style_severity,
)
from agents.model import AgentName, AnalyzerResult, Finding, ReviewContext, Skipped

RUFF_TIMEOUT_S = 60.0

_MIN_MINOR, _MAX_MINOR = 7, 14

# --- Running ruff.

_DIAGNOSTICS = TypeAdapter(list[RuffDiagnostic])


class RuffError(ToolError):
    """Ruff did not run or did not produce a report."""


@functools.cache
def ruff_binary() -> str:
    """Locate the ruff binary installed with the `ruff` package."""
    from ruff.__main__ import find_ruff_bin  # type: ignore[import-untyped]

    return str(find_ruff_bin())


def run_ruff(
    root: Path, paths: Sequence[str], args: Sequence[str], timeout: float = RUFF_TIMEOUT_S
) -> list[RuffDiagnostic]:
    """Run `ruff check` on `paths` under `root`; raise RuffError when it fails."""
    try:
        binary = ruff_binary()
    except OSError as exc:  # find_ruff_bin raises FileNotFoundError without a binary
        raise RuffError(f"ruff could not be started: {exc}") from exc
    command = [binary, "check", "--output-format", "json", "--no-cache", "--exit-zero"]
    command += ["--no-fix", *args, "--", *paths]
    out = run_tool("ruff", command, cwd=root, timeout=timeout, error=RuffError)
    try:
        return _DIAGNOSTICS.validate_json(out)
    except ValidationError as exc:
        raise RuffError("ruff's JSON report was not readable") from exc


# --- The repository's configuration.


def target_version(config_files: Mapping[str, str]) -> str | None:
    """Derive ruff's target version from the root pyproject's `requires-python`."""
    data = _toml(config_files.get("pyproject.toml", ""))
    project = data.get("project")
    spec = project.get("requires-python") if isinstance(project, dict) else None
    match = re.search(r">=?\s*3\.(\d+)", spec) if isinstance(spec, str) else None
    if match is None:
        return None
    return f"py3{min(max(int(match.group(1)), _MIN_MINOR), _MAX_MINOR)}"


def _toml(text: str) -> dict[str, object]:
    """Parse TOML, {} when it is not valid."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return {}


def is_ruff_config(path: str, text: str) -> bool:
    """Tell whether a repository file configures ruff."""
    name = PurePosixPath(path).name
    if name in ("ruff.toml", ".ruff.toml"):
        return True
    tool = _toml(text).get("tool") if name == "pyproject.toml" else None
    return isinstance(tool, dict) and "ruff" in tool


def ruff_configs(config_files: Mapping[str, str]) -> list[str]:
    """Return the repository's ruff configuration files."""
    return sorted(p for p, t in config_files.items() if is_ruff_config(p, t))


def default_config(config_files: Mapping[str, str]) -> str:
    """Render pr-council's default style rules as a `ruff.toml`."""
    version = target_version(config_files)
    # A JSON array of strings is also a TOML array.
    lines = [f'target-version = "{version}"'] if version else []
    lines += ["[lint]", f"select = {json.dumps(DEFAULT_STYLE_SELECT)}"]
    lines.append(f"ignore = {json.dumps(DEFAULT_STYLE_IGNORE)}")
    return "\n".join(lines) + "\n"


def safe_path(path: str) -> bool:
    """Tell whether a repo path stays inside the repository (diff paths are untrusted)."""
    parts = PurePosixPath(path).parts
    return bool(parts) and not PurePosixPath(path).is_absolute() and ".." not in parts


def _mirror_layout(root: Path, repo_files: Iterable[str]) -> None:
    """Recreate the repo's top two levels so ruff tells first-party imports from third-party."""
    dirs: set[tuple[str, ...]] = set()
    modules: set[tuple[str, ...]] = set()
    for rel in filter(safe_path, repo_files):
        parts = PurePosixPath(rel).parts
        dirs.update(parts[:depth] for depth in (1, 2) if len(parts) > depth)
        if len(parts) <= 2 and is_python(rel):
            modules.add(parts)
    for parts in dirs:
        root.joinpath(*parts).mkdir(parents=True, exist_ok=True)
    for parts in modules:
        # Empty placeholders are never linted: ruff only gets the changed files' paths.
        if not root.joinpath(*parts).exists():
            root.joinpath(*parts).touch()


# --- The analyzer.


@dataclass(frozen=True)
class _Run:
    """What one ruff invocation returned (keyed by repo path), and under which configuration."""

    diagnostics: list[tuple[str, RuffDiagnostic]]
    notes: tuple[str, ...] = ()


def _run_in(
    root: Path, paths: Sequence[str], args: Sequence[str]
) -> list[tuple[str, RuffDiagnostic]]:
    """Run ruff and key each diagnostic by its repo-relative path."""
    # Paths that escape the tree were never written (scratch_tree refuses them).
    present = [p for p in paths if safe_path(p) and (root / p).is_file()]
    if not present:
        return []
    keyed = [(relative(root, d.filename), d) for d in run_ruff(root, present, args)]
    wanted = set(present)
    return [(p, d) for p, d in keyed if p in wanted]


@dataclass(frozen=True)
class RuffAnalyzer:
    """Ruff with one rule selection, reporting for one specialist."""

    # Spawns a tool subprocess: starts before the GIL-bound analyzers (analyzers/gate.py).
    spawns_process: ClassVar[bool] = True

    name: str
    agent: AgentName
    # Codes or prefixes; None means "the repository's config, else our default".
    select: tuple[str, ...] | None
    severity: SeverityFn
    honour_config: bool = False
    # Rule selectors this analyzer never reports (other specialists own them).
    ignore: tuple[str, ...] = ()
    # Restrict the run to these paths (None: every changed Python file).
    paths: frozenset[str] | None = None
    # Report parse errors as findings (else the file goes to `skipped`).
    report_syntax_errors: bool = False
    cwe: Mapping[str, int] | None = None

    def run(self, ctx: ReviewContext) -> AnalyzerResult:
        """Run ruff once on every Python file in scope."""
        targets = sorted(p for p in ctx.files if is_python(p) and self._in_scope(p))
        skipped = self._not_python(ctx)
        if not targets:
            return AnalyzerResult(tool=self.name, skipped=skipped)
        try:
            run = self._check(ctx, targets)
        except RuffError as exc:
            failed = tuple(Skipped(path=p, reason=str(exc), by=self.name) for p in targets)
            return AnalyzerResult(tool=self.name, skipped=skipped + failed, notes=(str(exc),))
        findings, unparsed = self._findings(ctx, run.diagnostics)
        return AnalyzerResult(
            tool=self.name, findings=findings, skipped=skipped + unparsed, notes=run.notes
        )

    def _in_scope(self, path: str) -> bool:
        """Tell whether this analyzer was asked to look at `path`."""
        return self.paths is None or path in self.paths

    def _not_python(self, ctx: ReviewContext) -> tuple[Skipped, ...]:
        """List changed files ruff cannot read (only when covering the whole change)."""
        if self.paths is not None:
            return ()
        others = sorted(p for p in ctx.files if not is_python(p))
        return tuple(Skipped(path=p, reason="not Python", by=self.name) for p in others)

    def _check(self, ctx: ReviewContext, targets: list[str]) -> _Run:
        """Run ruff in a scratch tree, with the repository's config when asked."""
        sources = {p: ctx.files[p] for p in targets}
        if not self.honour_config:
            with scratch_tree(sources) as root:
                return _Run(_run_in(root, targets, self._isolated_args(ctx)))
        with scratch_tree({**self._configs(ctx), **sources}) as root:
            _mirror_layout(root, ctx.repo_files)
            return self._check_configured(ctx, root, targets)

    def _check_configured(self, ctx: ReviewContext, root: Path, paths: list[str]) -> _Run:
        """Run under the repository's config; fall back to our default if ruff rejects it."""
        configs = ruff_configs(ctx.config_files)
        try:
            diagnostics = _run_in(root, paths, self._configured_args())
        except RuffError as exc:
            if not configs:
                raise
            # Ruff's own message may quote files outside the tree, so it is not repeated.
            note = (
                f"the repository's ruff configuration could not be used ({exc}); "
                "used the default rules instead"
            )
            return _Run(_run_in(root, paths, self._isolated_args(ctx)), (note,))
        if configs:
            note = f"ruff used the repository's configuration: {', '.join(configs)}"
        else:
            rules = ", ".join(self.select or DEFAULT_STYLE_SELECT)
            note = f"no ruff configuration in the repository; used the default rules ({rules})"
        return _Run(diagnostics, (note,))

    def _configs(self, ctx: ReviewContext) -> dict[str, str]:
        """Return the TOML files to write, plus our default when the root has no ruff config."""
        # Every TOML file goes in: a ruff config may `extend` one with any name.
        files = {p: t for p, t in ctx.config_files.items() if p.endswith(".toml")}
        if not any("/" not in p for p in ruff_configs(ctx.config_files)):
            # Also shields the run from any ruff config above the scratch directory.
            files["ruff.toml"] = default_config(ctx.config_files)
        return files

    def _configured_args(self) -> list[str]:
        """Arguments that layer our needs on top of the repository's config."""
        args = ["--force-exclude"]
        if self.select is not None:
            args += ["--select", ",".join(self.select)]
        if self.ignore:
            args += ["--ignore", ",".join(self.ignore)]
        return args

    def _isolated_args(self, ctx: ReviewContext) -> list[str]:
        """Arguments for a run that ignores every configuration file."""
        ignore = self.ignore + (DEFAULT_STYLE_IGNORE if self.select is None else ())
        args = ["--isolated", "--select", ",".join(self.select or DEFAULT_STYLE_SELECT)]
        if ignore:
            args += ["--ignore", ",".join(ignore)]
        version = target_version(ctx.config_files)
        return args + (["--target-version", version] if version else [])

    def _findings(
        self, ctx: ReviewContext, diagnostics: list[tuple[str, RuffDiagnostic]]
    ) -> tuple[tuple[Finding, ...], tuple[Skipped, ...]]:
        """Turn diagnostics into findings; each unparseable file into one finding or skip."""
        # One finding per rule and line: the same rule twice on a line would share a
        # fingerprint, and one suggestion must carry both fixes.
        groups: dict[tuple[str, str, int], list[RuffDiagnostic]] = {}
        broken: dict[str, RuffDiagnostic] = {}
        for path, diag in diagnostics:
            if diag.is_syntax_error:
                # Later parse errors in a file are mostly fallout of the first.
                broken.setdefault(path, diag)
            else:
                groups.setdefault((path, diag.rule, diag.location.row), []).append(diag)
        findings = [self._finding(ctx, key[0], group) for key, group in groups.items()]
        if self.report_syntax_errors:
            findings += [self._finding(ctx, p, [d]) for p, d in sorted(broken.items())]
            return tuple(findings), ()
        skipped = tuple(
            Skipped(path=p, reason=f"ruff could not parse it: {d.message}", by=self.name)
            for p, d in sorted(broken.items())
        )
        return tuple(findings), skipped

    def _finding(self, ctx: ReviewContext, path: str, diags: Sequence[RuffDiagnostic]) -> Finding:
        """Build one finding from the diagnostics of one rule on one line."""
        first = diags[0]
        severity, confidence = self.severity(first.rule)
        return make_finding(
            ctx,
            agent=self.agent,
            severity=severity,
            confidence=confidence,
            path=path,
            line=first.location.row,
            end_line=max(d.end_location.row for d in diags),
            title=_title(diags),
            rule=first.rule,
            source=f"ruff:{first.rule}",
            body=_body(diags),
            suggestion=fix_suggestion(ctx.files[path], *diags),
            cwe=(self.cwe or {}).get(first.rule),
        )


def _title(diags: Sequence[RuffDiagnostic]) -> str:
    """Return ruff's message, saying when the rule fired more than once on the line."""
    first = diags[0]
    title = f"Syntax error: {first.message}" if first.is_syntax_error else first.message
    return title + (f" (and {len(diags) - 1} more on this line)" if len(diags) > 1 else "")


def _body(diags: Sequence[RuffDiagnostic]) -> str:
    """Explain the diagnostics: the rule, its documentation, and the fixes ruff offers."""
    first = diags[0]
    if first.is_syntax_error:
        return "Ruff could not parse this file: Python will refuse it (at least the targeted one)."
    label = f"`{first.rule}`" + (f" ({first.name})" if first.name else "")
    lines = [f"Ruff rule [{label}]({first.url})." if first.url else f"Ruff rule {label}."]
    messages = list(dict.fromkeys(d.message for d in diags))
    if len(messages) > 1:
        lines.append("\n".join(f"- {m}" for m in messages))
    fixes = [d.fix for d in diags if d.fix and d.fix.message]
    if fixes:
        unsafe = any(f.applicability == "unsafe" for f in fixes)
        caution = " Ruff marks this fix unsafe: check that behaviour is kept." if unsafe else ""
        what = "; ".join(dict.fromkeys(str(f.message) for f in fixes))
        lines.append(f"Fix: {what}.{caution}")
    return "\n\n".join(lines)


def style_ruff() -> RuffAnalyzer:
    """Ruff for the style specialist, under the reviewed repository's own configuration."""
    return RuffAnalyzer(
        name="ruff",
        agent="style",
        select=None,
        severity=style_severity,
        honour_config=True,
        ignore=STYLE_NEVER,
        report_syntax_errors=True,
    )


def perf_ruff() -> RuffAnalyzer:
    """Ruff's performance rules for the performance specialist."""
    return RuffAnalyzer(
        name="ruff-perf", agent="performance", select=PERF_SELECT, severity=perf_severity
    )


def security_ruff(paths: Iterable[str] | None = None) -> RuffAnalyzer:
    """Ruff's flake8-bandit rules for the security specialist, on `paths` (None: all)."""
    return RuffAnalyzer(
        name="ruff-security",
        agent="security",
        select=SECURITY_SELECT,
        severity=security_severity,
        paths=None if paths is None else frozenset(paths),
        cwe=SECURITY_CWE,
    )
