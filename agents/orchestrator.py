"""Convene the council: route, fan out under deadlines, isolate faults, trace, synthesize."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import anyio

from agents.analyzers.gate import tool_gate
from agents.llm import LLM
from agents.model import (
    AgentName,
    AgentReport,
    Finding,
    Mode,
    ModelStep,
    Review,
    ReviewContext,
    Span,
)
from agents.synthesis import synthesize
from agents.verify import Outcome, assess, needs_check, verify

Phase = Literal["queued", "running", "done"]
ProgressHook = Callable[[AgentName, Phase, AgentReport | None], None]


class Reviewer(Protocol):
    """Anything that can sit on the council (a Specialist, or a test double)."""

    @property
    def name(self) -> AgentName:
        """Return the specialist's name."""
        ...

    def idle_reason(self, ctx: ReviewContext) -> str | None:
        """Return why there is nothing to review in `ctx`, or None."""
        ...

    async def review(self, ctx: ReviewContext, prior: Sequence[Finding] = ()) -> AgentReport:
        """Review the change."""
        ...


@dataclass(frozen=True)
class Budget:
    """Time limits for one review."""

    specialist_s: float = 120.0
    # Findings below this confidence (and every critical one) are re-checked by the model.
    verify_below: float = 0.6


def _no_progress(agent: AgentName, phase: Phase, report: AgentReport | None) -> None:
    """Ignore progress events."""


@dataclass
class _Clock:
    """Milliseconds since the review started."""

    origin: float

    def ms(self) -> float:
        """Return milliseconds elapsed."""
        return (time.perf_counter() - self.origin) * 1000.0


async def convene(
    ctx: ReviewContext,
    council: Sequence[Reviewer],
    *,
    mode: Mode = "parallel",
    budget: Budget = Budget(),
    progress: ProgressHook | None = None,
    llm: LLM | None = None,
) -> Review:
    """Run the council on `ctx` in `mode` and return the synthesized review."""
    clock = _Clock(time.perf_counter())
    progress = progress or _no_progress
    enabled = [r for r in council if r.name in ctx.options.specialists]
    for r in enabled:
        progress(r.name, "queued", None)
    if mode == "sequential":
        reports = await _sequential(ctx, enabled, budget, clock, progress)
    else:
        reports = await _parallel(
            ctx, enabled, budget, clock, progress, adaptive=mode == "adaptive"
        )
    reports += [_disabled(r.name, clock) for r in council if r not in enabled]
    start = clock.ms()
    review = synthesize(ctx, reports, mode=mode)
    spans = [*(_span(r) for r in reports if r.status != "skipped")]
    spans.append(Span(name="synthesis", status="ok", start_ms=start, end_ms=clock.ms()))
    if llm is not None and any(r.model == "ok" for r in reports):
        # When no specialist reached the model, synthesis would only fail the same way.
        review = await _model_synthesis(ctx, review, llm, budget, clock, spans)
    return review.model_copy(update={"trace": tuple(spans), "duration_ms": clock.ms()})


async def _model_synthesis(
    ctx: ReviewContext, review: Review, llm: LLM, budget: Budget, clock: _Clock, spans: list[Span]
) -> Review:
    """Verify doubtful and critical findings, then assess: sequential after the fan-out.

    In every mode, verification is an escalation: it runs only when a specialist
    reported a critical finding or one below the confidence threshold (DESIGN.md §3).
    """
    steps: list[ModelStep] = []
    if any(needs_check(f, budget.verify_below) for f in review.findings):
        start = clock.ms()
        checked = await verify(ctx, review, llm, budget.verify_below)
        spans.append(Span(name="verification", status="ok", start_ms=start, end_ms=clock.ms()))
        steps.append(_step("verification", checked))
        review = checked.review
    start = clock.ms()
    assessed = await assess(review, llm)
    spans.append(Span(name="assessment", status="ok", start_ms=start, end_ms=clock.ms()))
    steps.append(_step("assessment", assessed))
    cost = sum(s.cost_usd for s in steps)
    return assessed.review.model_copy(
        update={"synthesis_cost_usd": cost, "model_steps": tuple(steps)}
    )


def _step(name: str, outcome: Outcome) -> ModelStep:
    """Record what a model-backed synthesis step did, and its tokens and cost."""
    return ModelStep(
        name=name,
        detail=outcome.detail,
        checked=outcome.checked,
        rejected=outcome.rejected,
        input_tokens=outcome.usage.prompt_tokens,
        output_tokens=outcome.usage.output_tokens,
        cost_usd=outcome.cost_usd,
    )


async def _parallel(
    ctx: ReviewContext,
    council: Sequence[Reviewer],
    budget: Budget,
    clock: _Clock,
    progress: ProgressHook,
    *,
    adaptive: bool,
) -> list[AgentReport]:
    """Fan out in one task group; results keep the council's order."""
    reports: list[AgentReport | None] = [None] * len(council)
    idle = {r.name: r.idle_reason(ctx) if adaptive else None for r in council}

    async def one(i: int, reviewer: Reviewer) -> None:
        reason = idle[reviewer.name]
        if reason is not None:
            reports[i] = _skipped(reviewer.name, reason, clock)
            progress(reviewer.name, "done", reports[i])
            return
        reports[i] = await _isolated(reviewer, ctx, (), budget, clock, progress)

    tools = [t for r in council if idle[r.name] is None for t in getattr(r, "tool_names", ())]
    with tool_gate(tools):
        async with anyio.create_task_group() as tg:
            for i, reviewer in enumerate(council):
                tg.start_soon(one, i, reviewer)
    return [r for r in reports if r is not None]


async def _sequential(
    ctx: ReviewContext,
    council: Sequence[Reviewer],
    budget: Budget,
    clock: _Clock,
    progress: ProgressHook,
) -> list[AgentReport]:
    """Run one specialist after another, each seeing the findings before it."""
    reports: list[AgentReport] = []
    for reviewer in council:
        prior = tuple(f for r in reports for f in r.findings)
        reports.append(await _isolated(reviewer, ctx, prior, budget, clock, progress))
    return reports


async def _isolated(
    reviewer: Reviewer,
    ctx: ReviewContext,
    prior: Sequence[Finding],
    budget: Budget,
    clock: _Clock,
    progress: ProgressHook,
) -> AgentReport:
    """Run one specialist under its deadline; a crash or overrun becomes its status."""
    start = clock.ms()
    progress(reviewer.name, "running", None)
    try:
        with anyio.fail_after(budget.specialist_s):
            report = await reviewer.review(ctx, prior)
    except TimeoutError:
        report = AgentReport(
            agent=reviewer.name,
            status="timed_out",
            error=f"did not finish within its {budget.specialist_s:g} s deadline",
        )
    except Exception as exc:  # fault isolation: one specialist never sinks the review
        report = AgentReport(
            agent=reviewer.name, status="failed", error=f"{type(exc).__name__}: {exc}"
        )
    report = report.model_copy(update={"start_ms": start, "end_ms": clock.ms()})
    progress(reviewer.name, "done", report)
    return report


def _skipped(agent: AgentName, reason: str, clock: _Clock) -> AgentReport:
    """Record a specialist that routing left out, and why."""
    now = clock.ms()
    return AgentReport(agent=agent, status="skipped", error=reason, start_ms=now, end_ms=now)


def _disabled(agent: AgentName, clock: _Clock) -> AgentReport:
    """Record a specialist the repository's configuration turned off."""
    return _skipped(agent, "disabled by configuration", clock)


def _span(report: AgentReport) -> Span:
    """Turn a report's timing into a trace span."""
    return Span(
        name=report.agent, status=report.status, start_ms=report.start_ms, end_ms=report.end_ms
    )
