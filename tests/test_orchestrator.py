"""Fan-out, deadlines, fault isolation and modes, with scripted council members."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import anyio
import pytest

from agents.model import AgentName, AgentReport, Finding, ReviewContext, ReviewOptions
from agents.orchestrator import Budget, convene
from tests.helpers import context_from

pytestmark = pytest.mark.anyio

Behaviour = Callable[[ReviewContext, Sequence[Finding]], Awaitable[AgentReport]]


@dataclass
class Scripted:
    """A council member whose review is a given coroutine function."""

    name: AgentName
    behaviour: Behaviour
    idle: str | None = None

    def idle_reason(self, ctx: ReviewContext) -> str | None:
        return self.idle

    async def review(self, ctx: ReviewContext, prior: Sequence[Finding] = ()) -> AgentReport:
        return await self.behaviour(ctx, prior)


CTX = context_from({"app.py": "import os\nx = os.getcwd()\n"})


def finding(agent: AgentName, line: int = 2, rule: str = "R1") -> Finding:
    return Finding(
        fingerprint=f"{agent}-{rule}-{line}",
        agent=agent,
        category=agent,
        severity="major",
        confidence=0.8,
        path="app.py",
        line=line,
        title=f"{agent} {rule}",
        rule=rule,
        source=f"tool:{rule}",
    )


def returns(agent: AgentName, *findings: Finding) -> Behaviour:
    async def run(ctx: ReviewContext, prior: Sequence[Finding]) -> AgentReport:
        return AgentReport(agent=agent, status="ok", findings=findings)

    return run


async def raises(ctx: ReviewContext, prior: Sequence[Finding]) -> AgentReport:
    raise RuntimeError("analyzer exploded")


async def hangs(ctx: ReviewContext, prior: Sequence[Finding]) -> AgentReport:
    await anyio.sleep_forever()
    raise AssertionError("unreachable")


async def test_one_raising_and_one_hanging_specialist_do_not_sink_the_review() -> None:
    council = [
        Scripted("security", returns("security", finding("security", rule="S608"))),
        Scripted("style", raises),
        Scripted("performance", hangs),
        Scripted("test-coverage", returns("test-coverage", finding("test-coverage", rule="T1"))),
    ]
    review = await convene(CTX, council, budget=Budget(specialist_s=0.3))

    status = {a.agent: (a.status, a.error) for a in review.agents}
    assert status["security"] == ("ok", None)
    assert status["test-coverage"] == ("ok", None)
    assert status["style"] == ("failed", "RuntimeError: analyzer exploded")
    assert status["performance"][0] == "timed_out"
    assert "0.3 s deadline" in (status["performance"][1] or "")
    assert {f.rule for f in review.findings} == {"S608", "T1"}
    perf = next(s for s in review.trace if s.name == "performance")
    assert perf.status == "timed_out" and perf.end_ms - perf.start_ms >= 300


async def test_parallel_mode_runs_every_specialist_at_once() -> None:
    started = 0
    everyone_in = anyio.Event()

    def barrier(agent: AgentName) -> Behaviour:
        async def run(ctx: ReviewContext, prior: Sequence[Finding]) -> AgentReport:
            nonlocal started
            started += 1
            if started == 4:
                everyone_in.set()
            await everyone_in.wait()  # deadlocks (and times out) unless all four overlap
            return AgentReport(agent=agent, status="ok")

        return run

    names: list[AgentName] = ["security", "style", "performance", "test-coverage"]
    review = await convene(CTX, [Scripted(n, barrier(n)) for n in names], budget=Budget(2))
    assert [a.agent for a in review.agents] == names
    assert all(a.status == "ok" for a in review.agents)


async def test_sequential_mode_hands_each_specialist_the_findings_before_it() -> None:
    seen: dict[str, list[str]] = {}

    def recording(agent: AgentName) -> Behaviour:
        async def run(ctx: ReviewContext, prior: Sequence[Finding]) -> AgentReport:
            seen[agent] = [f.rule for f in prior]
            return AgentReport(agent=agent, status="ok", findings=(finding(agent, rule=agent),))

        return run

    council = [Scripted(n, recording(n)) for n in ("security", "style", "performance")]
    review = await convene(CTX, council, mode="sequential")
    assert seen == {"security": [], "style": ["security"], "performance": ["security", "style"]}
    spans = [s for s in review.trace if s.name != "synthesis"]
    assert all(a.end_ms <= b.start_ms for a, b in itertools.pairwise(spans))


async def test_adaptive_mode_skips_idle_specialists_and_says_why() -> None:
    council = [
        Scripted("security", returns("security")),
        Scripted("performance", raises, idle="no changed Python source outside tests"),
    ]
    review = await convene(CTX, council, mode="adaptive")
    perf = next(a for a in review.agents if a.agent == "performance")
    assert (perf.status, perf.error) == ("skipped", "no changed Python source outside tests")
    assert [s.name for s in review.trace] == ["security", "synthesis"]


async def test_parallel_mode_ignores_idle_reasons() -> None:
    council = [Scripted("performance", returns("performance"), idle="nothing")]
    review = await convene(CTX, council, mode="parallel")
    assert review.agents[0].status == "ok"


async def test_specialists_disabled_by_configuration_are_reported_skipped() -> None:
    ctx = CTX.model_copy(update={"options": ReviewOptions(specialists=("security",))})
    council = [Scripted("security", returns("security")), Scripted("style", raises)]
    review = await convene(ctx, council)
    assert [(a.agent, a.status, a.error) for a in review.agents] == [
        ("security", "ok", None),
        ("style", "skipped", "disabled by configuration"),
    ]


async def test_progress_hook_sees_every_phase_in_order() -> None:
    events: list[tuple[str, str]] = []
    council = [Scripted("security", returns("security")), Scripted("style", raises)]
    await convene(CTX, council, progress=lambda a, phase, r: events.append((a, phase)))
    for agent in ("security", "style"):
        phases = [p for a, p in events if a == agent]
        assert phases == ["queued", "running", "done"]
