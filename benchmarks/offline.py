"""Offline review cost: the real `pr-council review --offline` on generated pull requests.

For each size: wall time and peak memory of the console script (N runs after a warm-up),
finding counts, per-specialist durations from the JSON report, and the same review timed
in-process (git + build_context + run_review + render) to separate start-up from review.

    .venv/bin/python benchmarks/offline.py [--sizes small,medium,large] [--runs 5]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from common import Stats, local_change, machine, machine_line, table, write_json
from prgen import SIZES, GeneratedPr, generate

from agents.model import AGENTS
from agents.render import render_json
from bot.config import RepoConfig
from bot.pipeline import build_context, run_review

PR_COUNCIL = Path(sys.executable).with_name("pr-council")
TIME = shutil.which("time", path="/usr/bin:/bin")
TARGET_S = {"medium": 3.0}
SEVERITY_ORDER = ("critical", "major", "minor", "nit")


@dataclass(frozen=True)
class CliRun:
    """One run of the console script."""

    wall_s: float
    cpu_s: float  # user + system time of the whole process tree
    max_rss_kb: int  # the largest single process of the tree (wait4's ru_maxrss)
    report: dict[str, Any]


@dataclass
class SizeResult:
    """Everything measured for one pull-request size."""

    size: str
    files_changed: int
    lines_changed: int
    repo_files: int
    cli: list[CliRun] = field(default_factory=list)
    tree_peak_kb: int = 0
    phases: list[dict[str, float]] = field(default_factory=list)


# --- the console script ------------------------------------------------------------------


def review_command(root: Path) -> list[str]:
    """Return the exact command line benchmarked."""
    return [str(PR_COUNCIL), "review", str(root), "--offline", "--format", "json"]


def run_cli(root: Path) -> CliRun:
    """Run the console script once under /usr/bin/time; return wall, CPU, max RSS and JSON."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as stats:
        timed = [TIME, "-f", "%M", "-o", stats.name] if TIME else []
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(
            [*timed, *review_command(root)], capture_output=True, text=True, check=False
        )
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        # Without /usr/bin/time: the largest child so far (monotonic, so only an upper bound).
        rss = int(stats.read().split()[-1]) if TIME else after.ru_maxrss
    if done.returncode not in (0, 1):
        raise RuntimeError(f"pr-council failed ({done.returncode}): {done.stderr.strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return CliRun(wall, cpu, rss, json.loads(done.stdout))


def tree_peak_rss(root: Path, interval_s: float = 0.01) -> int:
    """Run the console script once and sample the summed RSS (kB) of its whole process tree."""
    if not Path("/proc/self/statm").exists():
        return 0  # not Linux: no /proc to sample
    proc = subprocess.Popen(
        review_command(root), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    peak = 0

    def sample() -> None:
        nonlocal peak
        while proc.poll() is None:
            peak = max(peak, _tree_rss_kb(proc.pid))
            time.sleep(interval_s)

    sampler = threading.Thread(target=sample)
    sampler.start()
    proc.wait()
    sampler.join()
    return peak


def _tree_rss_kb(pid: int) -> int:
    """Sum the resident memory of `pid` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            ppid = _ppid(int(entry))
            if ppid is not None:
                children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += _rss_kb(current)
        todo += children.get(current, [])
    return total


def _ppid(pid: int) -> int | None:
    """Return a process's parent id, None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _rss_kb(pid: int) -> int:
    """Return a process's resident set size in kB, 0 when it is gone."""
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text(encoding="utf-8").split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


def startup_s(code: str, runs: int) -> Stats:
    """Time a bare `python -c CODE` to price interpreter start-up and imports."""
    times = []
    for _ in range(runs + 1):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - start)
    return Stats.of(times[1:])


# --- in-process ----------------------------------------------------------------------------


def in_process(root: Path) -> dict[str, float]:
    """Review in this process, timing each phase in seconds (what the CLI does, minus start-up)."""
    marks = [time.perf_counter()]
    change, tree = local_change(root)
    marks.append(time.perf_counter())
    ctx = build_context(change, tree, RepoConfig())
    marks.append(time.perf_counter())
    review = anyio.run(run_review, ctx)
    marks.append(time.perf_counter())
    render_json(review)
    marks.append(time.perf_counter())
    names = ("git + diff", "build_context", "run_review", "render")
    phases = {n: b - a for n, (a, b) in zip(names, itertools.pairwise(marks), strict=True)}
    return {**phases, "total": marks[-1] - marks[0]}


# --- one size --------------------------------------------------------------------------------


def measure(pr: GeneratedPr, runs: int, log: Callable[[str], None]) -> SizeResult:
    """Measure one generated pull request."""
    result = SizeResult(pr.size, pr.files_changed, pr.lines_changed, pr.repo_files)
    log(f"{pr.size}: {pr.files_changed} files, {pr.lines_changed} changed lines; CLI warm-up")
    run_cli(pr.root)
    for i in range(runs):
        result.cli.append(run_cli(pr.root))
        log(f"  CLI run {i + 1}/{runs}: {result.cli[-1].wall_s:.2f} s")
    result.tree_peak_kb = tree_peak_rss(pr.root)
    in_process(pr.root)  # warm-up: imports, caches
    result.phases = [in_process(pr.root) for _ in range(runs)]
    log(f"  in-process: {statistics.median(p['total'] for p in result.phases):.2f} s")
    return result


def agent_ms(result: SizeResult) -> dict[str, Stats]:
    """Return each specialist's duration_ms over the CLI runs."""
    durations: dict[str, list[float]] = {}
    for run in result.cli:
        for agent in run.report["agents"]:
            durations.setdefault(agent["name"], []).append(agent["duration_ms"])
    return {name: Stats.of(values) for name, values in durations.items()}


def span_ms(result: SizeResult, name: str) -> Stats:
    """Return one trace span's duration over the CLI runs."""
    spans = [s for r in result.cli for s in r.report["trace"] if s["name"] == name]
    return Stats.of([s["end_ms"] - s["start_ms"] for s in spans])


def findings(result: SizeResult) -> dict[str, int]:
    """Count the last run's findings by severity, plus inline ones and the total."""
    found = result.cli[-1].report["findings"]
    counts = Counter(f["severity"] for f in found)
    by_severity = {s: counts.get(s, 0) for s in SEVERITY_ORDER}
    inline = sum(f["placement"] == "inline" for f in found)
    return {"total": len(found), **by_severity, "inline": inline}


# --- output ----------------------------------------------------------------------------------


def cli_table(results: Sequence[SizeResult]) -> str:
    """Wall time, CPU, memory and findings of the console script, per size."""
    rows = []
    for r in results:
        f = findings(r)
        sev = "/".join(str(f[s]) for s in SEVERITY_ORDER)
        rows.append(
            [
                r.size,
                r.files_changed,
                r.lines_changed,
                Stats.of([c.wall_s for c in r.cli]).fmt(),
                f"{statistics.median(c.cpu_s for c in r.cli):.2f}",
                f"{max(c.max_rss_kb for c in r.cli) / 1024:.0f}",
                f"{r.tree_peak_kb / 1024:.0f}",
                f"{f['total']} ({sev})",
                f["inline"],
            ]
        )
    headers = ["size", "files", "lines", "wall s median (min-max)", "CPU s", "max RSS MB"]
    return table([*headers, "tree peak MB", "findings (crit/major/minor/nit)", "inline"], rows)


def specialist_table(results: Sequence[SizeResult]) -> str:
    """Per-specialist duration_ms from the JSON report, the slowest marked, per size."""
    rows = []
    for r in results:
        ms = agent_ms(r)
        slowest = max(ms, key=lambda n: ms[n].median)
        cells = [ms[n].fmt(digits=0) + (" *" if n == slowest else "") for n in AGENTS if n in ms]
        review = Stats.of([c.report["duration_ms"] for c in r.cli])
        rows.append([r.size, *cells, span_ms(r, "synthesis").fmt(digits=1), review.fmt(digits=0)])
    return table(["size", *AGENTS, "synthesis", "review (convene)"], rows)


def phase_table(results: Sequence[SizeResult]) -> str:
    """In-process phase medians next to the console script's wall time, per size."""
    rows = []
    for r in results:
        med = {k: statistics.median(p[k] for p in r.phases) for k in r.phases[0]}
        wall = statistics.median(c.wall_s for c in r.cli)
        values = [f"{v:.3f}" for v in med.values()]
        rows.append([r.size, *values, f"{wall:.3f}", f"{wall - med['total']:.3f}"])
    return table(["size", *results[0].phases[0], "CLI wall", "CLI - in-process"], rows)


def print_tables(results: Sequence[SizeResult], start: dict[str, Stats]) -> None:
    """Print the console-script, specialist and phase tables."""
    print("\n## CLI: `pr-council review REPO --offline --format json`\n")
    print(cli_table(results))
    print("\n## Specialists: duration_ms from the JSON report, median (min-max)\n")
    print(specialist_table(results))
    print("  * = critical path (slowest specialist)")
    print("\n## In-process phases (s, median) vs the console script\n")
    print(phase_table(results))
    python, imports = (start[k].fmt(scale=1000, digits=0) for k in ("python", "import"))
    print(f"\n`python -c pass`: {python} ms; `python -c 'import bot.cli'`: {imports} ms")


def verdicts(results: Sequence[SizeResult]) -> list[str]:
    """Say whether each size with a target met it."""
    lines = []
    for r in results:
        if r.size in TARGET_S:
            wall = statistics.median(c.wall_s for c in r.cli)
            ok = "MET" if wall < TARGET_S[r.size] else "MISSED"
            lines.append(
                f"target: {r.size} PR offline under {TARGET_S[r.size]:g} s: {ok} ({wall:.2f} s median)"
            )
    return lines


def as_json(
    results: Sequence[SizeResult], start: dict[str, Stats], info: dict[str, object]
) -> dict[str, object]:
    """Return the figures for benchmarks/out/offline.json."""
    sizes = {}
    for r in results:
        sizes[r.size] = {
            "files_changed": r.files_changed,
            "lines_changed": r.lines_changed,
            "repo_files": r.repo_files,
            "wall_s": Stats.of([c.wall_s for c in r.cli]),
            "cpu_s": Stats.of([c.cpu_s for c in r.cli]),
            "max_rss_kb": max(c.max_rss_kb for c in r.cli),
            "tree_peak_rss_kb": r.tree_peak_kb,
            "findings": findings(r),
            "agents_ms": agent_ms(r),
            "synthesis_ms": span_ms(r, "synthesis"),
            "review_ms": Stats.of([c.report["duration_ms"] for c in r.cli]),
            "in_process_s": {k: Stats.of([p[k] for p in r.phases]) for k in r.phases[0]},
        }
    return {"machine": info, "startup_s": start, "sizes": sizes, "verdicts": verdicts(results)}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(SIZES), help="comma-separated sizes")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per size (after a warm-up)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    """Generate each size, measure it and print the tables."""
    args = parse_args(argv)
    info = machine()
    print(machine_line(info), file=sys.stderr)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    results = []
    with tempfile.TemporaryDirectory(prefix="pr-council-bench-") as tmp:
        for size in args.sizes.split(","):
            pr = generate(size, Path(tmp) / size, args.seed)
            results.append(measure(pr, args.runs, log))
    start = {
        "python": startup_s("pass", args.runs),
        "import": startup_s("import bot.cli", args.runs),
    }
    print(machine_line(info))
    print_tables(results, start)
    print("", *verdicts(results), sep="\n")
    info["load_average_after"] = machine()["load_average"]
    print(f"\nwrote {write_json('offline', as_json(results, start, info))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
