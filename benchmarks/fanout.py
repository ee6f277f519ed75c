"""Fan-out overhead: `convene` in parallel vs sequential mode on a real review context.

Part 1: four scripted council members of EQUAL simulated latency L (each awaits
anyio.sleep(L), then returns a few findings), so the ideal parallel wall time is
L + synthesis and the ideal sequential one 4 L + synthesis.
Part 2: the real default council (CPU- and subprocess-bound analyzers) in both modes.

    .venv/bin/python benchmarks/fanout.py [--latencies 0.1,0.5,1.0] [--runs 5] [--size medium]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
from common import Stats, machine, machine_line, review_context, table, write_json
from prgen import SIZES, generate

from agents.analyzers.base import make_finding
from agents.council import default_council
from agents.model import (
    AGENTS,
    AgentName,
    AgentReport,
    Finding,
    Mode,
    Review,
    ReviewContext,
    Severity,
)
from agents.orchestrator import Reviewer, convene

TARGET_RATIO = 1.10
FINDINGS_PER_MEMBER = 5
SEVERITIES: tuple[Severity, ...] = ("major", "minor", "minor", "nit", "critical")
MODES: tuple[Mode, ...] = ("parallel", "sequential")


@dataclass(frozen=True)
class ScriptedReviewer:
    """A council member that 'thinks' for a fixed time, then reports fixed findings."""

    name: AgentName
    latency_s: float
    findings: tuple[Finding, ...]

    def idle_reason(self, ctx: ReviewContext) -> str | None:
        """Always has something to review."""
        return None

    async def review(self, ctx: ReviewContext, prior: Sequence[Finding] = ()) -> AgentReport:
        """Wait the simulated latency, then report."""
        await anyio.sleep(self.latency_s)
        return AgentReport(
            agent=self.name, status="ok", findings=self.findings, tools=("scripted",)
        )


def anchors(ctx: ReviewContext, count: int) -> list[tuple[str, int]]:
    """Pick `count` added lines of changed Python files, spread over the files."""
    lines = [(f.path, n) for f in ctx.diff.files if f.path.endswith(".py") for n in sorted(f.added)]
    step = max(1, len(lines) // count)
    return lines[::step][:count]


def scripted_council(ctx: ReviewContext, latency_s: float) -> list[ScriptedReviewer]:
    """Build four members whose findings overlap a little, so synthesis de-duplicates."""
    spots = anchors(ctx, FINDINGS_PER_MEMBER * len(AGENTS))
    council = []
    for i, name in enumerate(AGENTS):
        # Every member reports the first spot too: a four-way duplicate for synthesis to merge.
        mine = [spots[0], *spots[i * FINDINGS_PER_MEMBER + 1 : (i + 1) * FINDINGS_PER_MEMBER]]
        found = tuple(_finding(ctx, name, k, path, line) for k, (path, line) in enumerate(mine))
        council.append(ScriptedReviewer(name, latency_s, found))
    return council


def _finding(ctx: ReviewContext, agent: AgentName, k: int, path: str, line: int) -> Finding:
    """Build one scripted finding."""
    return make_finding(
        ctx,
        agent=agent,
        severity=SEVERITIES[k % len(SEVERITIES)],
        confidence=0.5 + 0.1 * k,
        path=path,
        line=line,
        title=f"Scripted {agent} finding {k}" if k else "Shared scripted finding",
        rule=f"bench-{k}" if k else "bench-shared",
        source=f"bench:{agent}",
        body="A finding from the fan-out benchmark.",
    )


# --- measuring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One convene: wall time and the trace's figures, in seconds."""

    wall_s: float
    agents_s: dict[str, float]
    synthesis_s: float

    @property
    def slowest_s(self) -> float:
        """Return the slowest specialist's duration."""
        return max(self.agents_s.values())

    @property
    def sum_s(self) -> float:
        """Return the summed specialists' durations."""
        return sum(self.agents_s.values())


def timed(ctx: ReviewContext, council: Sequence[Reviewer], mode: Mode) -> Run:
    """Run convene once and read its trace."""

    async def go() -> tuple[float, Review]:
        start = time.perf_counter()
        review = await convene(ctx, council, mode=mode)
        return time.perf_counter() - start, review

    wall, review = anyio.run(go)
    spans = {s.name: (s.end_ms - s.start_ms) / 1000 for s in review.trace}
    synthesis = spans.pop("synthesis")
    return Run(wall, spans, synthesis)


def repeat(ctx: ReviewContext, council: Sequence[Reviewer], mode: Mode, runs: int) -> list[Run]:
    """Run convene `runs` times after one warm-up."""
    timed(ctx, council, mode)
    return [timed(ctx, council, mode) for _ in range(runs)]


def summary(runs: Sequence[Run]) -> dict[str, Stats]:
    """Summarise wall, slowest, summed and synthesis durations."""
    return {
        "wall": Stats.of([r.wall_s for r in runs]),
        "slowest": Stats.of([r.slowest_s for r in runs]),
        "sum": Stats.of([r.sum_s for r in runs]),
        "synthesis": Stats.of([r.synthesis_s for r in runs]),
        "ratio": Stats.of([r.wall_s / (r.slowest_s + r.synthesis_s) for r in runs]),
    }


# --- output -------------------------------------------------------------------------------------

Results = dict[float, dict[Mode, list[Run]]]


def median_wall(runs: Sequence[Run]) -> float:
    """Return the median wall time."""
    return statistics.median(r.wall_s for r in runs)


def ideal_s(mode: Mode, runs: Sequence[Run]) -> float:
    """Return the ideal wall time: the critical path in parallel, the sum in sequential."""
    s = summary(runs)
    work = s["slowest"] if mode == "parallel" else s["sum"]
    return work.median + s["synthesis"].median


def scripted_rows(results: Results) -> list[list[object]]:
    """Rows of the scripted table: one per latency and mode."""
    rows: list[list[object]] = []
    for latency, modes in results.items():
        par = median_wall(modes["parallel"])
        for mode, runs in modes.items():
            s = summary(runs)
            rows.append(
                [
                    f"{latency:g}",
                    mode,
                    s["wall"].fmt(digits=3),
                    f"{s['slowest'].median:.3f}",
                    f"{s['synthesis'].median * 1000:.1f}",
                    f"{median_wall(runs) / ideal_s(mode, runs):.3f}",
                    f"{median_wall(runs) / par:.2f}x",
                ]
            )
    return rows


def real_rows(real: dict[Mode, list[Run]]) -> list[list[object]]:
    """Rows of the real-council table: one per mode."""
    par = median_wall(real["parallel"])
    rows: list[list[object]] = []
    for mode, runs in real.items():
        s = summary(runs)
        agents = [statistics.median(r.agents_s[a] for r in runs) for a in AGENTS]
        rows.append(
            [
                mode,
                s["wall"].fmt(digits=3),
                *(f"{a:.3f}" for a in agents),
                f"{s['synthesis'].median * 1000:.1f}",
                f"{ideal_s(mode, runs):.3f}",
                f"{median_wall(runs) / ideal_s(mode, runs):.2f}",
                f"{median_wall(runs) / par:.2f}x",
            ]
        )
    return rows


def contention_line(real: dict[Mode, list[Run]]) -> str:
    """Compare the parallel wall time with the critical path measured without contention."""
    seq = summary(real["sequential"])
    alone = seq["slowest"].median + seq["synthesis"].median
    par = median_wall(real["parallel"])
    return (
        f"parallel wall / (slowest specialist run alone + synthesis) = {par:.3f} / {alone:.3f}"
        f" = {par / alone:.2f}; sequential / parallel = {median_wall(real['sequential']) / par:.2f}x"
    )


def verdicts(results: Results) -> list[str]:
    """Say whether every latency met the overhead target."""
    lines = []
    for latency, modes in results.items():
        ratio = summary(modes["parallel"])["ratio"]
        ok = "MET" if ratio.max <= TARGET_RATIO else "MISSED"
        speed = median_wall(modes["sequential"]) / median_wall(modes["parallel"])
        lines.append(
            f"target: L={latency:g} s parallel / (slowest + synthesis) <= {TARGET_RATIO}: {ok} "
            f"(median {ratio.median:.3f}, worst {ratio.max:.3f}); sequential/parallel {speed:.2f}x"
        )
    return lines


def print_tables(size: str, scripted: Results, real: dict[Mode, list[Run]]) -> None:
    """Print the scripted and real-council tables and the verdicts."""
    print(f"\n## Scripted council: 4 members x L s each, on the {size} PR's context\n")
    headers = ["L s", "mode", "wall s median (min-max)", "slowest s", "synthesis ms"]
    print(table([*headers, "wall / ideal", "vs parallel"], scripted_rows(scripted)))
    print("  ideal = slowest + synthesis (parallel); sum of members + synthesis (sequential)")
    print(f"\n## Real default council on the {size} PR (seconds, median)\n")
    headers = ["mode", "wall s median (min-max)", *AGENTS, "synthesis ms", "ideal s"]
    print(table([*headers, "wall / ideal", "vs parallel"], real_rows(real)))
    print(f"  {contention_line(real)}")
    print("", *verdicts(scripted), sep="\n")


def as_json(size: str, scripted: Results, real: dict[Mode, list[Run]]) -> dict[str, object]:
    """Return the figures for benchmarks/out/fanout.json."""
    return {
        "size": size,
        "scripted": {
            str(k): {m: summary(v) for m, v in modes.items()} for k, modes in scripted.items()
        },
        "real": {
            m: summary(v) | {"agents_s": {a: Stats.of([r.agents_s[a] for r in v]) for a in AGENTS}}
            for m, v in real.items()
        },
        "contention": contention_line(real),
        "verdicts": verdicts(scripted),
    }


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latencies", default="0.1,0.5,1.0", help="simulated latencies, seconds")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per case (after a warm-up)")
    parser.add_argument("--size", default="medium", choices=list(SIZES), help="generated PR size")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    """Measure scripted and real fan-out and print the tables."""
    args = parse_args(argv)
    info = machine()
    scripted: Results = {}
    with tempfile.TemporaryDirectory(prefix="pr-council-bench-") as tmp:
        pr = generate(args.size, Path(tmp) / args.size, args.seed)
        ctx = review_context(pr.root)
        log(f"context: {args.size} PR, {pr.files_changed} files, {pr.lines_changed} lines")
        for latency in (float(x) for x in args.latencies.split(",")):
            council = scripted_council(ctx, latency)
            scripted[latency] = {m: repeat(ctx, council, m, args.runs) for m in MODES}
            log(f"scripted L={latency:g} s done")
        real = {m: repeat(ctx, default_council(), m, args.runs) for m in MODES}
    print(machine_line(info))
    print_tables(args.size, scripted, real)
    path = write_json(f"fanout-{args.size}", {"machine": info} | as_json(args.size, scripted, real))
    print(f"\nwrote {path}")
    return 0


def log(line: str) -> None:
    """Report progress on stderr."""
    print(line, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
