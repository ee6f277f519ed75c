"""The review trace as JSON, for `--trace FILE` (DESIGN.md §3 provenance)."""

from __future__ import annotations

from pydantic import BaseModel

from agents.model import AgentStatus, Mode, Review, Span


class _AgentTrace(BaseModel):
    name: str
    status: AgentStatus
    start_ms: float
    end_ms: float
    duration_ms: float
    finding_count: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    error: str | None
    tools: list[str]


class _Trace(BaseModel):
    mode: Mode
    target: str
    duration_ms: float
    cost_usd: float
    agents: list[_AgentTrace]
    spans: list[Span]


def render_trace(review: Review) -> str:
    """Return the trace: per specialist status, timing, tokens and cost; totals; mode."""
    agents = [
        _AgentTrace(
            name=a.agent,
            status=a.status,
            start_ms=round(a.start_ms, 1),
            end_ms=round(a.end_ms, 1),
            duration_ms=round(a.duration_ms, 1),
            finding_count=len(a.findings),
            input_tokens=a.input_tokens,
            output_tokens=a.output_tokens,
            cost_usd=a.cost_usd,
            error=a.error,
            tools=list(a.tools),
        )
        for a in review.agents
    ]
    trace = _Trace(
        mode=review.mode,
        target=review.target,
        duration_ms=round(review.duration_ms, 1),
        cost_usd=review.cost_usd,
        agents=agents,
        spans=list(review.trace),
    )
    return trace.model_dump_json(indent=2) + "\n"
