"""The review engine's data: findings, reports, the review context and the review."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Severity = Literal["critical", "major", "minor", "nit"]
Category = Literal["security", "style", "performance", "test-coverage"]
AgentName = Category
AgentStatus = Literal["ok", "failed", "timed_out", "skipped"]
# Whether a specialist's model pass ran: off (no key, --offline), ok, or unavailable.
ModelStatus = Literal["off", "ok", "unavailable"]
Mode = Literal["parallel", "sequential", "adaptive"]
Placement = Literal["inline", "summary"]
DiffFilter = Literal["added", "diff_context", "file"]
FindingStatus = Literal["new", "open"]
FileStatus = Literal["added", "modified", "deleted", "renamed"]

SEVERITIES: tuple[Severity, ...] = ("critical", "major", "minor", "nit")
AGENTS: tuple[AgentName, ...] = ("security", "style", "performance", "test-coverage")


def severity_rank(severity: Severity) -> int:
    """Return 0 for critical up to 3 for nit."""
    return SEVERITIES.index(severity)


def at_least(severity: Severity, threshold: Severity) -> bool:
    """Tell whether `severity` is as grave as `threshold` or graver."""
    return severity_rank(severity) <= severity_rank(threshold)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


_SPACE = re.compile(r"\s+")
# Python, ruff and bandit count lines at \n, \r\n and \r only; str.splitlines() also
# breaks at form feeds and \u2028, which would shift line numbers and fingerprints.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def normalise_code(text: str) -> str:
    """Collapse whitespace so a re-indented line keeps its fingerprint."""
    return _SPACE.sub(" ", text).strip()


def fingerprint(category: Category, rule: str, path: str, line_text: str) -> str:
    """Derive a finding's identity from what it is and where, not from its line number."""
    key = "\x1f".join((category, rule, path, normalise_code(line_text)))
    return hashlib.sha256(key.encode()).hexdigest()[:16]


class Finding(_Frozen):
    """One problem a specialist found, with where it came from."""

    fingerprint: str
    agent: AgentName
    category: Category
    severity: Severity
    confidence: float = Field(ge=0.0, le=1.0)
    path: str
    line: int | None = Field(default=None, ge=1)
    end_line: int | None = Field(default=None, ge=1)
    title: str
    body: str = ""
    # Replacement text for lines line..end_line; "" deletes them, None means no suggestion.
    suggestion: str | None = None
    rule: str
    source: str
    cwe: int | None = None
    placement: Placement | None = None
    # Other specialists or tools that reported the same issue (synthesis credits them).
    also_found_by: tuple[str, ...] = ()
    status: FindingStatus = "new"


class Skipped(_Frozen):
    """A file or part the review did not cover, and why."""

    path: str
    reason: str
    by: str = "council"


class AnalyzerResult(_Frozen):
    """What one deterministic tool produced."""

    tool: str
    findings: tuple[Finding, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    notes: tuple[str, ...] = ()


class AgentReport(_Frozen):
    """What one specialist returned, with its cost and timing."""

    agent: AgentName
    status: AgentStatus
    findings: tuple[Finding, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    error: str | None = None
    notes: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()
    start_ms: float = 0.0
    end_ms: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    model: ModelStatus = "off"

    @property
    def duration_ms(self) -> float:
        """Return wall time spent by this specialist."""
        return max(0.0, self.end_ms - self.start_ms)


class Hunk(_Frozen):
    """One hunk header's ranges."""

    source_start: int
    source_length: int
    target_start: int
    target_length: int
    section: str = ""


class ChangedFile(_Frozen):
    """One file of a diff, with the lines a reviewer may comment on."""

    path: str
    old_path: str | None = None
    status: FileStatus = "modified"
    binary: bool = False
    has_patch: bool = True
    hunks: tuple[Hunk, ...] = ()
    added: frozenset[int] = frozenset()
    removed: frozenset[int] = frozenset()
    context: frozenset[int] = frozenset()

    def commentable(self, line: int, side: Literal["RIGHT", "LEFT"] = "RIGHT") -> bool:
        """Tell whether GitHub accepts a review comment on this line of this side."""
        if side == "LEFT":
            return line in self.removed
        return line in self.added or line in self.context

    def in_scope(self, line: int | None, scope: DiffFilter) -> bool:
        """Tell whether a finding on `line` passes the diff filter `scope`."""
        if line is None or scope == "file":
            return True
        if scope == "added":
            return line in self.added
        return self.commentable(line)


class Diff(_Frozen):
    """A parsed unified diff."""

    files: tuple[ChangedFile, ...] = ()

    def file(self, path: str) -> ChangedFile | None:
        """Return the changed file at `path` (head side), if any."""
        return next((f for f in self.files if f.path == path), None)

    @property
    def changed_lines(self) -> int:
        """Count added plus removed lines."""
        return sum(len(f.added) + len(f.removed) for f in self.files)


class PathInstruction(_Frozen):
    """Extra reviewer guidance for files matching a glob."""

    path: str
    instructions: str


DEFAULT_IGNORE: tuple[str, ...] = (
    "**/*.lock",
    "**/package-lock.json",
    "**/pnpm-lock.yaml",
    "**/yarn.lock",
    "**/poetry.lock",
    "**/Cargo.lock",
    "**/go.sum",
    "**/vendor/**",
    "**/third_party/**",
    "**/node_modules/**",
    "**/*.min.js",
    "**/*.min.css",
    "**/*_pb2.py",
    "**/*_pb2_grpc.py",
    "**/*.generated.*",
    "**/generated/**",
)


class ReviewOptions(_Frozen):
    """The part of a repository's configuration the engine itself obeys."""

    specialists: tuple[AgentName, ...] = AGENTS
    ignore: tuple[str, ...] = DEFAULT_IGNORE
    filter: DiffFilter = "added"
    inline_min_severity: Severity = "minor"
    max_inline_comments: int = Field(default=10, ge=0, le=50)
    instructions: tuple[PathInstruction, ...] = ()


class PreviousFinding(_Frozen):
    """A finding from the last review of the same pull request."""

    fingerprint: str
    title: str = ""
    path: str = ""
    severity: Severity = "minor"


class ReviewContext(_Frozen):
    """Everything a specialist may look at: plain data, no clients."""

    target: str
    title: str = ""
    body: str = ""
    diff: Diff
    # Head-side text of changed text files; absent for deleted, binary or undecodable files.
    files: dict[str, str] = Field(default_factory=dict)
    # Every path in the repository at head, for mapping sources to tests.
    repo_files: tuple[str, ...] = ()
    # Text of test files at head (changed or not), for the test-coverage specialist.
    test_sources: dict[str, str] = Field(default_factory=dict)
    # Tool configuration of the reviewed repository at head (pyproject.toml, ruff.toml, ...).
    config_files: dict[str, str] = Field(default_factory=dict)
    coverage_report: str | None = None
    options: ReviewOptions = ReviewOptions()
    previous: tuple[PreviousFinding, ...] = ()
    # Parts left out before the council ran (ignored globs, binaries, unreadable files).
    skipped: tuple[Skipped, ...] = ()

    def line_text(self, path: str, line: int | None) -> str:
        """Return the head text of `path` at `line`, or '' when unknown."""
        text = self.files.get(path)
        if text is None or line is None:
            return ""
        lines = _LINE_BREAK.split(text)
        return lines[line - 1] if 0 < line <= len(lines) else ""


class Span(_Frozen):
    """One timed step of a review, for the trace."""

    name: str
    status: AgentStatus
    start_ms: float
    end_ms: float


class ModelStep(_Frozen):
    """A model-backed synthesis step (verification, assessment): what it did and cost."""

    name: str
    detail: str = ""
    checked: int = 0
    rejected: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


class Review(_Frozen):
    """The council's one review of one change."""

    schema_version: Literal[1] = 1
    mode: Mode
    target: str
    findings: tuple[Finding, ...] = ()
    resolved: tuple[PreviousFinding, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    agents: tuple[AgentReport, ...] = ()
    trace: tuple[Span, ...] = ()
    notes: tuple[str, ...] = ()
    assessment: str = ""
    duration_ms: float = 0.0
    files_reviewed: int = 0
    # Model calls made by synthesis itself (verification, assessment).
    synthesis_cost_usd: float = 0.0
    model_steps: tuple[ModelStep, ...] = ()

    @property
    def cost_usd(self) -> float:
        """Return the summed cost of every model call of the review."""
        return sum(a.cost_usd for a in self.agents) + self.synthesis_cost_usd

    @property
    def inline(self) -> tuple[Finding, ...]:
        """Return the findings placed as inline comments."""
        return tuple(f for f in self.findings if f.placement == "inline")

    def highest(self) -> Severity | None:
        """Return the gravest severity found, if any."""
        return min((f.severity for f in self.findings), key=severity_rank, default=None)


def count_by_severity(findings: Sequence[Finding]) -> dict[Severity, int]:
    """Count findings per severity, every severity present."""
    return {s: sum(1 for f in findings if f.severity == s) for s in SEVERITIES}
