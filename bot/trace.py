"""The review trace as JSON, for `--trace FILE` (DESIGN.md §3 provenance)."""

from __future__ import annotations

from pydantic import BaseModel

from agents.model import Mode, ModelStep, Review, Span
from agents.render import JsonAgent, json_agent


class _AgentTrace(JsonAgent):
    """A specialist's JSON report line, plus when it started and ended."""

    start_ms: float
    end_ms: float


class _Trace(BaseModel):
    mode: Mode
    target: str
    duration_ms: float
    cost_usd: float
    agents: list[_AgentTrace]
    spans: list[Span]
    model_steps: list[ModelStep]


def render_trace(review: Review) -> str:
    """Return the trace: per specialist status, timing, tokens and cost; totals; mode."""
    agents = [
        _AgentTrace(
            **json_agent(a).model_dump(), start_ms=round(a.start_ms, 1), end_ms=round(a.end_ms, 1)
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
        model_steps=list(review.model_steps),
    )
    return trace.model_dump_json(indent=2) + "\n"
