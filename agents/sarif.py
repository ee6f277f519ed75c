"""Render a Review as a SARIF 2.1.0 log that GitHub code scanning accepts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from agents.model import Finding, Review, Severity, severity_rank

__all__ = ["COUNCIL_TOOL", "FINGERPRINT_KEY", "SARIF_SCHEMA_URI", "render_sarif", "tool_of"]

SARIF_SCHEMA_URI = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
COUNCIL_TOOL = "pr-council"
# SARIF §3.27.17 asks for versioned partialFingerprints keys; code scanning matches alerts by them.
FINGERPRINT_KEY = "prCouncilFingerprint/v1"
# "About code scanning limits on SARIF results": an upload is rejected over 20 runs per file,
# 25,000 results per run or 20 tags per rule.
MAX_RUNS = 20
MAX_RESULTS = 25_000
MAX_TAGS = 20

Level = Literal["error", "warning", "note"]
_LEVEL: dict[Severity, Level] = {
    "critical": "error",
    "major": "error",
    "minor": "warning",
    "nit": "note",
}
_PROBLEM: dict[Severity, str] = {
    "critical": "error",
    "major": "error",
    "minor": "warning",
    "nit": "recommendation",
}
# "SARIF support for code scanning": security-severity over 9.0 is critical, 7.0-8.9 high,
# 4.0-6.9 medium, 0.1-3.9 low; it only counts on rules tagged "security".
_SECURITY_SEVERITY: dict[Severity, str] = {
    "critical": "9.5",
    "major": "8.0",
    "minor": "5.5",
    "nit": "2.0",
}
_TOOLS: dict[str, tuple[str, str]] = {
    "bandit": ("Bandit", "https://bandit.readthedocs.io/"),
    "ruff": ("Ruff", "https://docs.astral.sh/ruff/"),
    "detect-secrets": ("detect-secrets", "https://github.com/Yelp/detect-secrets"),
    "llm": ("pr-council model reviewer (Claude)", "https://docs.anthropic.com/"),
}


class _Sarif(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )


class Message(_Sarif):
    text: str


class ArtifactLocation(_Sarif):
    uri: str


class Region(_Sarif):
    start_line: int
    end_line: int | None = None


class PhysicalLocation(_Sarif):
    artifact_location: ArtifactLocation
    region: Region


class Location(_Sarif):
    physical_location: PhysicalLocation


class ArtifactContent(_Sarif):
    text: str


class Replacement(_Sarif):
    deleted_region: Region
    inserted_content: ArtifactContent


class ArtifactChange(_Sarif):
    artifact_location: ArtifactLocation
    replacements: tuple[Replacement, ...]


class Fix(_Sarif):
    description: Message
    artifact_changes: tuple[ArtifactChange, ...]


class ResultProperties(_Sarif):
    severity: Severity
    confidence: float
    agent: str
    category: str
    source: str
    status: str
    placement: str | None = None
    also_found_by: tuple[str, ...] = ()
    cwe: int | None = None
    file_level: bool = False


class Result(_Sarif):
    rule_id: str
    rule_index: int
    level: Level
    message: Message
    locations: tuple[Location, ...]
    partial_fingerprints: dict[str, str]
    fixes: tuple[Fix, ...] | None = None
    properties: ResultProperties


class RuleProperties(_Sarif):
    tags: tuple[str, ...]
    precision: str
    problem_severity: str = Field(alias="problem.severity")
    security_severity: str | None = Field(default=None, alias="security-severity")


class Rule(_Sarif):
    id: str
    short_description: Message
    full_description: Message
    help: Message
    help_uri: str | None = None
    properties: RuleProperties


class Driver(_Sarif):
    name: str
    full_name: str | None = None
    information_uri: str | None = None
    rules: tuple[Rule, ...] | None = None


class Tool(_Sarif):
    driver: Driver


class Conversion(_Sarif):
    tool: Tool


class RunProperties(_Sarif):
    omitted_results: int = 0


class Run(_Sarif):
    tool: Tool
    conversion: Conversion | None = None
    results: tuple[Result, ...] = ()
    properties: RunProperties | None = None


class LogProperties(_Sarif):
    # Findings without a file path: code scanning rejects results without a location.
    unlocated_findings: int = 0


class SarifLog(_Sarif):
    schema_uri: str = Field(default=SARIF_SCHEMA_URI, alias="$schema")
    version: Literal["2.1.0"] = "2.1.0"
    runs: tuple[Run, ...]
    properties: LogProperties | None = None


def render_sarif(review: Review) -> str:
    """Render the review as a SARIF 2.1.0 log with one run per source tool."""
    return sarif_log(review).model_dump_json(exclude_none=True, indent=2) + "\n"


def sarif_log(review: Review) -> SarifLog:
    """Build the SARIF log model for the review."""
    # Code scanning needs a file for every result ("expected at least one location").
    located = [f for f in review.findings if _uri(f.path)]
    unlocated = len(review.findings) - len(located)
    by_tool = _group_by_tool(located)
    runs = tuple(_run(name, found) for name, found in by_tool.items())
    return SarifLog(
        runs=runs or (Run(tool=_tool(COUNCIL_TOOL, ())),),
        properties=LogProperties(unlocated_findings=unlocated) if unlocated else None,
    )


def tool_of(finding: Finding) -> str:
    """Return the tool that produced a finding: the part of its source before ':'."""
    return finding.source.split(":", 1)[0].strip().lower() or COUNCIL_TOOL


def _group_by_tool(findings: Sequence[Finding]) -> dict[str, list[Finding]]:
    groups: dict[str, list[Finding]] = {}
    for f in findings:
        name = tool_of(f)
        if name not in groups and len(groups) >= MAX_RUNS - 1 and name != COUNCIL_TOOL:
            name = COUNCIL_TOOL  # fold the tail into one run rather than be rejected
        groups.setdefault(name, []).append(f)
    return groups


def _run(name: str, findings: Sequence[Finding]) -> Run:
    kept = findings[:MAX_RESULTS]
    by_rule: dict[str, list[Finding]] = {}
    for f in kept:
        by_rule.setdefault(_rule_id(f), []).append(f)
    index = {rule_id: i for i, rule_id in enumerate(by_rule)}
    rules = tuple(_rule(rule_id, group) for rule_id, group in by_rule.items())
    omitted = len(findings) - len(kept)
    return Run(
        tool=_tool(name, rules),
        conversion=None if name == COUNCIL_TOOL else Conversion(tool=_tool(COUNCIL_TOOL, None)),
        results=tuple(_result(f, index[_rule_id(f)]) for f in kept),
        properties=RunProperties(omitted_results=omitted) if omitted else None,
    )


def _tool(name: str, rules: tuple[Rule, ...] | None) -> Tool:
    full_name, uri = _TOOLS.get(name, (None, None))
    return Tool(driver=Driver(name=name, full_name=full_name, information_uri=uri, rules=rules))


def _rule_id(finding: Finding) -> str:
    return finding.rule.strip() or f"{COUNCIL_TOOL}/{finding.category}"


def _rule(rule_id: str, findings: Sequence[Finding]) -> Rule:
    first = findings[0]
    gravest = min((f.severity for f in findings), key=severity_rank)
    security = any(f.category == "security" or f.cwe for f in findings)
    title = _one_line(first.title) or rule_id
    return Rule(
        id=rule_id,
        short_description=Message(text=title),
        full_description=Message(text=_text(first)),
        help=Message(text=_help(first)),
        help_uri=_cwe_uri(first.cwe) if first.cwe else None,
        properties=RuleProperties(
            tags=_tags(findings, security),
            precision=_precision(max(f.confidence for f in findings)),
            problem_severity=_PROBLEM[gravest],
            security_severity=_SECURITY_SEVERITY[gravest] if security else None,
        ),
    )


def _tags(findings: Sequence[Finding], security: bool) -> tuple[str, ...]:
    tags = ["security"] if security else []
    tags += [COUNCIL_TOOL, *sorted({f.category for f in findings} - {"security"})]
    tags += [f"external/cwe/cwe-{cwe}" for cwe in sorted({f.cwe for f in findings if f.cwe})]
    return tuple(tags[:MAX_TAGS])


def _precision(confidence: float) -> str:
    if confidence >= 0.9:
        return "very-high"
    if confidence >= 0.75:
        return "high"
    return "medium" if confidence >= 0.5 else "low"


def _result(finding: Finding, rule_index: int) -> Result:
    return Result(
        rule_id=_rule_id(finding),
        rule_index=rule_index,
        level=_LEVEL[finding.severity],
        message=Message(text=_text(finding)),
        locations=(Location(physical_location=_physical(finding)),),
        partial_fingerprints={FINGERPRINT_KEY: finding.fingerprint},
        fixes=_fixes(finding),
        properties=ResultProperties(
            severity=finding.severity,
            confidence=finding.confidence,
            agent=finding.agent,
            category=finding.category,
            source=finding.source,
            status=finding.status,
            placement=finding.placement,
            also_found_by=finding.also_found_by,
            cwe=finding.cwe,
            file_level=finding.line is None,
        ),
    )


def _physical(finding: Finding) -> PhysicalLocation:
    return PhysicalLocation(
        artifact_location=ArtifactLocation(uri=_uri(finding.path)), region=_region(finding)
    )


def _region(finding: Finding) -> Region:
    # "SARIF support for code scanning" lists region.startLine as required, so a file-level
    # finding points at line 1 (and says file_level in its properties).
    if finding.line is None:
        return Region(start_line=1)
    end = finding.end_line if finding.end_line and finding.end_line > finding.line else None
    return Region(start_line=finding.line, end_line=end)


def _fixes(finding: Finding) -> tuple[Fix, ...] | None:
    if finding.suggestion is None or finding.line is None:
        return None
    # A line-only region ends before the last newline (SARIF §3.30.5), so the text must too.
    text = finding.suggestion.removesuffix("\n")
    change = ArtifactChange(
        artifact_location=ArtifactLocation(uri=_uri(finding.path)),
        replacements=(
            Replacement(
                deleted_region=_region(finding), inserted_content=ArtifactContent(text=text)
            ),
        ),
    )
    return (
        Fix(description=Message(text="Apply the suggested change"), artifact_changes=(change,)),
    )


def _uri(path: str) -> str:
    # Code scanning wants a path relative to the repository root, as a URI reference.
    relative = path.strip().replace("\\", "/").removeprefix("./").lstrip("/")
    return quote(relative, safe="/")


def _text(finding: Finding) -> str:
    title = _one_line(finding.title) or _rule_id(finding)
    body = finding.body.strip()
    return f"{title}\n\n{body}" if body else title


def _help(finding: Finding) -> str:
    cwe = f"\n\nCWE-{finding.cwe}: {_cwe_uri(finding.cwe)}" if finding.cwe else ""
    return f"{_text(finding)}{cwe}\n\nReported by pr-council ({finding.agent} specialist, {finding.source})."


def _cwe_uri(cwe: int) -> str:
    return f"https://cwe.mitre.org/data/definitions/{cwe}.html"


def _one_line(text: str) -> str:
    return " ".join(text.split())
