"""Where a review's time goes: each analyzer run alone, then its place in a parallel review.

For each size: every analyzer of the default council timed alone (sequentially, warm),
then one parallel `convene` with each analyzer wrapped to record when it started and
finished and how much CPU its thread used, and every tool subprocess (bandit, ruff)
recorded with its own start and end. An analyzer that takes far longer in the parallel
review than alone is waiting, for the GIL or for a core.

Then a what-if: the same parallel review with the pure-Python analyzers held back until
the tool subprocesses have been launched (what starting the tools first would give).

    .venv/bin/python benchmarks/analyzers.py [--sizes medium,large] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from unittest import mock

import anyio
from common import machine, machine_line, review_context, table, write_json
from prgen import SIZES, generate

from agents.analyzers.base import Analyzer
from agents.council import default_council
from agents.model import AnalyzerResult, ReviewContext
from agents.orchestrator import convene
from agents.specialist import Specialist


@dataclass(frozen=True)
class Event:
    """Something that ran during the review, in seconds since the review started."""

    label: str
    start_s: float
    end_s: float
    cpu_s: float | None = None  # the analyzer thread's own CPU time

    @property
    def duration_s(self) -> float:
        """Return the wall time it took."""
        return self.end_s - self.start_s


# Pure-Python analyzers: they hold the GIL in the review's own process.
GIL_BOUND = frozenset({"detect-secrets", "perf-ast", "test-map"})
# Analyzers that launch a tool subprocess (one each, when there is Python to check).
LAUNCHERS = frozenset({"bandit", "ruff", "ruff-perf"})
HOLD_LIMIT_S = 30.0


@dataclass
class Recorder:
    """Collects events against one origin, and tells when the tools have all launched."""

    origin: float = 0.0
    events: list[Event] = field(default_factory=list)
    expected_launches: int = 0
    launches: int = 0
    launched: threading.Event = field(default_factory=threading.Event)

    def launch(self) -> None:
        """Count one tool subprocess launched."""
        self.launches += 1
        if self.launches >= self.expected_launches:
            self.launched.set()

    def now(self) -> float:
        """Return seconds since the origin."""
        return time.perf_counter() - self.origin


@dataclass(frozen=True)
class Timed:
    """An analyzer that records its run on a Recorder."""

    inner: Analyzer
    recorder: Recorder

    @property
    def name(self) -> str:
        """Return the wrapped analyzer's name."""
        return self.inner.name

    def run(self, ctx: ReviewContext) -> AnalyzerResult:
        """Run the wrapped analyzer, recording wall and thread CPU time."""
        start, cpu = self.recorder.now(), time.thread_time()
        try:
            return self.inner.run(ctx)
        finally:
            used = time.thread_time() - cpu
            self.recorder.events.append(Event(self.name, start, self.recorder.now(), used))


@dataclass(frozen=True)
class Held:
    """What-if: an analyzer that starts only once the tool subprocesses have launched."""

    inner: Analyzer
    recorder: Recorder

    @property
    def name(self) -> str:
        """Return the wrapped analyzer's name."""
        return self.inner.name

    def run(self, ctx: ReviewContext) -> AnalyzerResult:
        """Wait for the launches (bounded), then run the wrapped analyzer."""
        self.recorder.launched.wait(HOLD_LIMIT_S)
        return self.inner.run(ctx)


@contextmanager
def recording_subprocesses(recorder: Recorder) -> Iterator[None]:
    """Record every `subprocess.run` (bandit, ruff) while the block runs."""
    real = subprocess.run

    def run(args: Sequence[str], *rest: Any, **kwargs: Any) -> Any:
        start = recorder.now()
        recorder.launch()
        try:
            return real(args, *rest, **kwargs)
        finally:
            recorder.events.append(Event(f"  {_tool(args)} process", start, recorder.now()))

    with mock.patch("subprocess.run", run):
        yield


def _tool(args: Sequence[str]) -> str:
    """Name the tool a command line runs."""
    if "bandit" in args:
        return "bandit"
    return Path(str(args[0])).name


def alone_ms(ctx: ReviewContext, council: Sequence[Specialist], runs: int) -> dict[str, float]:
    """Time each analyzer on its own, warm, median of `runs`."""
    result = {}
    for specialist in council:
        for analyzer in specialist.analyzers:
            analyzer.run(ctx)
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                analyzer.run(ctx)
                times.append(time.perf_counter() - start)
            result[analyzer.name] = statistics.median(times) * 1000
    return result


def timeline(
    ctx: ReviewContext, council: Sequence[Specialist], *, hold: bool = False
) -> tuple[float, list[Event]]:
    """Run one parallel review with every analyzer and subprocess recorded."""
    recorder = Recorder()
    wrapped = [
        replace(s, analyzers=tuple(_wrap(a, recorder, hold) for a in s.analyzers)) for s in council
    ]
    launchers = sum(a.name in LAUNCHERS for s in council for a in s.analyzers)
    with recording_subprocesses(recorder):
        for _ in range(2):  # a warm-up, then the measured run
            recorder.events.clear()
            recorder.launched.clear()
            recorder.launches, recorder.expected_launches = 0, launchers
            recorder.origin = time.perf_counter()
            review = anyio.run(convene, ctx, wrapped)
    return review.duration_ms, sorted(recorder.events, key=lambda e: e.start_s)


def _wrap(analyzer: Analyzer, recorder: Recorder, hold: bool) -> Analyzer:
    """Time an analyzer, holding it back first when it is GIL-bound and `hold` is set."""
    inner = Held(analyzer, recorder) if hold and analyzer.name in GIL_BOUND else analyzer
    return Timed(inner, recorder)


def timeline_table(events: Sequence[Event], alone: dict[str, float]) -> str:
    """Render the timeline with each analyzer's alone time and slowdown."""
    rows = []
    for e in events:
        solo = alone.get(e.label)
        ratio = f"{e.duration_s * 1000 / solo:.1f}x" if solo and solo >= 1 else ""
        rows.append(
            [
                e.label,
                f"{e.start_s * 1000:.0f}",
                f"{e.end_s * 1000:.0f}",
                f"{e.duration_s * 1000:.0f}",
                "" if e.cpu_s is None else f"{e.cpu_s * 1000:.0f}",
                "" if solo is None else f"{solo:.0f}",
                ratio,
            ]
        )
    headers = ["analyzer / process", "start ms", "end ms", "took ms", "thread CPU ms"]
    return table([*headers, "alone ms", "slowdown"], rows)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="medium,large", help="comma-separated sizes")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per analyzer alone")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    """Time the analyzers of each size alone and in a parallel review."""
    args = parse_args(argv)
    info = machine()
    print(machine_line(info))
    data: dict[str, object] = {"machine": info}
    with tempfile.TemporaryDirectory(prefix="pr-council-bench-") as tmp:
        for size in args.sizes.split(","):
            if size not in SIZES:
                raise SystemExit(f"unknown size: {size}")
            ctx = review_context(generate(size, Path(tmp) / size, args.seed).root)
            alone = alone_ms(ctx, default_council(), args.runs)
            review_ms, events = timeline(ctx, default_council())
            held_ms, held = timeline(ctx, default_council(), hold=True)
            print(f"\n## {size}: analyzers alone (median of {args.runs}) vs one parallel review")
            print(f"\nparallel review: {review_ms:.0f} ms; analyzers alone, summed: ", end="")
            print(f"{sum(alone.values()):.0f} ms\n")
            print(timeline_table(events, alone))
            print(f"\nwhat-if, tool subprocesses launched first: review {held_ms:.0f} ms\n")
            print(timeline_table(held, alone))
            data[size] = {
                "review_ms": review_ms,
                "alone_ms": alone,
                "timeline": events,
                "launch_first": {"review_ms": held_ms, "timeline": held},
            }
    print(f"\nwrote {write_json('analyzers', data)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
