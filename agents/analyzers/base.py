"""What every analyzer shares: the protocol, finding construction, a scratch tree."""

from __future__ import annotations

import ast
import contextlib
import os
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Protocol

from agents.analyzers.gate import launching
from agents.model import (
    AgentName,
    AnalyzerResult,
    Category,
    Finding,
    ReviewContext,
    Severity,
    fingerprint,
)

PYTHON_SUFFIXES = frozenset({".py", ".pyi"})


class Analyzer(Protocol):
    """A deterministic tool run on the head contents of the changed files."""

    @property
    def name(self) -> str:
        """Return the tool's name, as used in sources and skip records."""
        ...

    def run(self, ctx: ReviewContext) -> AnalyzerResult:
        """Analyze the change; blocking, so the caller runs it in a worker thread."""
        ...


class ToolError(RuntimeError):
    """A tool subprocess did not run or did not produce a report; the message is one line."""


def run_tool(
    name: str, command: list[str], *, cwd: Path, timeout: float, error: type[ToolError] = ToolError
) -> str:
    """Run a tool's command and return its stdout; raise `error` saying what went wrong."""
    try:
        done = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise error(f"{name} timed out after {timeout:g} s") from exc
    except OSError as exc:
        raise error(f"{name} could not be started: {exc.strerror or exc}") from exc
    if done.returncode != 0:
        raise error(f"{name} exited with status {done.returncode}")
    return done.stdout


def is_python(path: str) -> bool:
    """Tell whether `path` names a Python source file."""
    return PurePosixPath(path).suffix in PYTHON_SUFFIXES


def make_finding(
    ctx: ReviewContext,
    *,
    agent: AgentName,
    severity: Severity,
    confidence: float,
    path: str,
    line: int | None,
    title: str,
    rule: str,
    source: str,
    body: str = "",
    end_line: int | None = None,
    suggestion: str | None = None,
    cwe: int | None = None,
    category: Category | None = None,
) -> Finding:
    """Build a Finding whose fingerprint comes from the flagged line's text at head."""
    cat: Category = category or agent
    return Finding(
        fingerprint=fingerprint(cat, rule, path, ctx.line_text(path, line)),
        agent=agent,
        category=cat,
        severity=severity,
        confidence=round(min(1.0, max(0.0, confidence)), 2),
        path=path,
        line=line,
        end_line=end_line if end_line and line and end_line > line else None,
        title=title,
        body=body,
        suggestion=suggestion,
        rule=rule,
        source=source,
        cwe=cwe,
    )


@contextlib.contextmanager
def scratch_tree(files: Mapping[str, str]) -> Iterator[Path]:
    """Write `files` (repo-relative path -> text) under a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="pr-council-") as tmp:
        root = Path(tmp)
        for rel, text in files.items():
            target = root / rel
            # Diff paths are untrusted: never write outside the scratch tree.
            if not _inside(root, target):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        launching()
        yield root


def _inside(root: Path, target: Path) -> bool:
    """Tell whether `target` resolves inside `root`."""
    return os.path.commonpath([root.resolve(), target.resolve()]) == str(root.resolve())


def relative(root: Path, reported: str) -> str:
    """Turn a tool's reported filename back into a repo-relative POSIX path."""
    path = Path(reported)
    if not path.is_absolute():
        path = root / path
    return path.resolve().relative_to(root.resolve()).as_posix()


# CPython before 3.12 keeps the AST constructor's recursion depth per interpreter, not per
# thread: two threads building ASTs at once can raise "SystemError: AST constructor
# recursion depth mismatch" (python/cpython#106905). Parsing holds the GIL anyway, so
# taking turns costs no parallelism.
_PARSE_LOCK = threading.Lock()


def parse_python(text: str, filename: str = "<unknown>") -> ast.Module:
    """Parse Python source, one thread at a time."""
    with _PARSE_LOCK:
        return ast.parse(text, filename=filename)
