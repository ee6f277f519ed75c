"""Script the fake Anthropic server as the council's model: answers by who is asking."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.model import AgentName
from agents.prompts import ASSESS_RULES, ROLES, RULES, VERIFY_RULES
from tests.fakes.anthropic_api import RecordedRequest, Reply, ToolUse

Purpose = str  # "security" | "style" | "performance" | "test-coverage" | "verify" | "assess"
VerdictFn = Callable[[str], Mapping[str, Any]]


def purpose_of(record: RecordedRequest) -> Purpose:
    """Tell which council call a recorded request is, from its instructions."""
    system = record.system_text
    if system == VERIFY_RULES:
        return "verify"
    if system == ASSESS_RULES:
        return "assess"
    assert system == RULES, "a request with unknown instructions"
    tasks = _task_text(record)
    return next(agent for agent, role in ROLES.items() if tasks.startswith(role))


def _task_text(record: RecordedRequest) -> str:
    """Return the last (uncached) user block: the specialist's task."""
    content = (record.body or {})["messages"][-1]["content"]
    return str(content[-1]["text"])


def finding(path: str, line: int | None, severity: str = "major", **extra: Any) -> dict[str, Any]:
    """Return one model finding as the submit tool's input expects it."""
    return {
        "path": path,
        "line": line,
        "severity": severity,
        "confidence": extra.pop("confidence", 0.9),
        "title": extra.pop("title", f"model finding at {path}:{line}"),
        "body": extra.pop("body", "Explained by the model."),
        **extra,
    }


def keep_all(_claim: str) -> Mapping[str, Any]:
    """A verifier that confirms everything."""
    return {"keep": True, "reason": "confirmed"}


@dataclass
class CouncilScript:
    """Canned answers per specialist, a verifier and an assessment."""

    findings: Mapping[AgentName, Sequence[Mapping[str, Any]]] = field(default_factory=dict)
    verdict: VerdictFn = keep_all
    assessment: str = "Two problems need attention before merging."
    # Billed output tokens per call, or per purpose (the fake's latency follows them).
    output_tokens: int | Mapping[Purpose, int] | None = None
    calls: list[Purpose] = field(default_factory=list)

    def __call__(self, record: RecordedRequest) -> Reply:
        """Answer one request (the fake's handler)."""
        purpose = purpose_of(record)
        self.calls.append(purpose)
        if purpose == "verify":
            answer: Mapping[str, Any] = self.verdict(_task_text(record))
        elif purpose == "assess":
            answer = {"text": self.assessment}
        else:
            answer = {"findings": list(self.findings.get(purpose, []))}  # type: ignore[call-overload]
        tokens = self.output_tokens
        if isinstance(tokens, Mapping):
            tokens = tokens.get(purpose)
        return ToolUse("submit", dict(answer), output_tokens=tokens)


def specialist_requests(records: Sequence[RecordedRequest]) -> dict[Purpose, RecordedRequest]:
    """Map each specialist to its (last) recorded request."""
    return {p: r for r in records if (p := purpose_of(r)) in ROLES and r.path == "/v1/messages"}
