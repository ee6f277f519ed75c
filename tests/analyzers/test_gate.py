"""The tool gate: GIL-bound analyzers start only after the tool analyzers have launched."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import ClassVar

import pytest

from agents.analyzers.base import scratch_tree
from agents.analyzers.gate import ToolGate, gated, tool_gate
from agents.model import AnalyzerResult, ReviewContext
from agents.orchestrator import convene
from agents.specialist import Specialist
from tests.helpers import context_from

pytestmark = pytest.mark.anyio
CTX = context_from({"a.py": "x = 1\n"})


@dataclass
class Log:
    events: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, event: str) -> None:
        with self.lock:
            self.events.append(event)


@dataclass(frozen=True)
class Tool:
    """Writes a scratch tree (which signals the launch), then records that it launched."""

    name: str
    log: Log
    spawns_process: ClassVar[bool] = True

    def run(self, ctx: ReviewContext) -> AnalyzerResult:
        with scratch_tree(ctx.files):
            self.log.add(f"{self.name} launched")
        return AnalyzerResult(tool=self.name)


@dataclass(frozen=True)
class Cpu:
    name: str
    log: Log

    def run(self, ctx: ReviewContext) -> AnalyzerResult:
        self.log.add(f"{self.name} started")
        return AnalyzerResult(tool=self.name)


async def test_cpu_bound_analyzers_start_after_every_tool_has_launched() -> None:
    log = Log()
    council = [
        Specialist(name="security", analyzers=(Cpu("secrets", log), Tool("bandit", log))),
        Specialist(name="style", analyzers=(Tool("ruff", log),)),
        Specialist(name="performance", analyzers=(Cpu("perf-ast", log), Tool("ruff-perf", log))),
    ]
    await convene(CTX, council)
    events = log.events
    last_tool = max(events.index(f"{t} launched") for t in ("bandit", "ruff", "ruff-perf"))
    first_cpu = min(events.index(f"{c} started") for c in ("secrets", "perf-ast"))
    assert last_tool < first_cpu, events


def test_a_tool_that_never_launches_still_opens_the_gate() -> None:
    gate = ToolGate(["ruff"], timeout_s=0.01)
    with gated("ruff", spawns=True):
        pass  # no Python files: ruff returned without spawning anything
    assert not gate.wait()  # a gate nobody installed stays shut until its timeout
    with tool_gate(["ruff"]) as installed, gated("ruff", spawns=True):
        pass
    assert installed.wait()


def test_an_empty_gate_is_open() -> None:
    assert ToolGate([]).wait()
