"""The council with Claude at realistic latency: wall time by mode, and what caching bills.

The real council (analyzers + model pass through the real `anthropic` SDK) reviews the
generated medium PR against the fake Messages API (tests/fakes) on loopback. The fake
answers after ttft = 0.8 s + 100 µs per uncached input token + 15 µs per cached one (a
fit of the time-to-first-token figures Anthropic published for prompt caching: 10k
tokens 1.6 s -> 1.1 s, 100k tokens 11.5 s -> 2.4 s), then streams 80 output tokens/s;
the specialists answer at different lengths so their calls take 3-8 s, verification
and assessment about 2-3 s.

Part 1: wall time in parallel, sequential and adaptive modes, against the ideal
(slowest specialist measured alone + synthesis + verification + assessment).
Part 2: billed input tokens of the four specialist calls with the leader warm-up, with
four parallel cold calls, and without prompt caching; and what the warm-up costs in time.

    .venv/bin/python benchmarks/llm.py [--runs 2] [--seed 0]   # needs pip install -e '.[test]'
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.fakes

import anyio
from common import Stats, machine, machine_line, review_context, table, write_json
from fanout import anchors
from prgen import generate

from agents.council import default_council
from agents.llm import AnthropicLLM, Price
from agents.model import AGENTS, Mode, Review, ReviewContext
from agents.model_pass import ClaudePass, Warmup
from agents.orchestrator import convene
from tests.fakes.anthropic_api import (
    FakeAnthropic,
    LatencyModel,
    RecordedRequest,
    run_fake_anthropic,
)
from tests.fakes.council import CouncilScript, finding, purpose_of

MODEL = "claude-sonnet-5-5"
PRICE = Price(input=3.0, output=15.0)
LATENCY = LatencyModel(
    ttft_base_s=0.8,
    ttft_per_input_token_s=1e-4,
    ttft_per_cached_token_s=1.5e-5,
    tokens_per_second=80,
)
# Output tokens per call: security is the slowest specialist (about 8 s uncached).
OUTPUT_TOKENS = {
    "security": 400,
    "style": 250,
    "performance": 150,
    "test-coverage": 60,
    "verify": 150,
    "assess": 100,
}
MODES: tuple[Mode, ...] = ("parallel", "sequential", "adaptive")
TARGET_RATIO = 1.10
TARGET_CACHE = 1.6


def script(ctx: ReviewContext) -> CouncilScript:
    """Each specialist reports on real added lines; one critical, one doubtful finding."""
    spots = anchors(ctx, 8)
    found = {
        "security": [finding(*spots[0], "critical"), finding(*spots[1], "major")],
        "style": [finding(*spots[2], "minor", confidence=0.4), finding(*spots[3], "nit")],
        "performance": [finding(*spots[4], "major"), finding(*spots[5], "minor")],
        "test-coverage": [finding(*spots[6], "minor")],
    }
    return CouncilScript(findings=found, output_tokens=OUTPUT_TOKENS)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Run:
    """One review: wall time, the trace's steps, and the recorded requests."""

    wall_s: float
    agents_s: dict[str, float]
    steps_s: dict[str, float]
    records: list[RecordedRequest]

    @property
    def synthesis_s(self) -> float:
        """Return synthesis, verification and assessment together."""
        return sum(self.steps_s.values())


async def _review(
    fake: FakeAnthropic,
    ctx: ReviewContext,
    mode: Mode,
    warmup: Warmup,
    cache: bool,
    only: tuple[str, ...],
) -> tuple[float, Review]:
    """Run the real council once against the fake, with a cold cache."""
    async with fake.client(timeout=60) as client:
        llm = AnthropicLLM(client=client, models=(MODEL,), prompt_cache=cache)
        council = [s for s in default_council(ClaudePass(llm, warmup=warmup)) if s.name in only]
        start = time.perf_counter()
        review = await convene(ctx, council, mode=mode, llm=llm)
        return time.perf_counter() - start, review


def run(
    fake: FakeAnthropic,
    ctx: ReviewContext,
    mode: Mode,
    *,
    warmup: Warmup = "leader",
    cache: bool = True,
    only: Sequence[str] = AGENTS,
) -> Run:
    """Review once from a cold prompt cache and read the trace."""
    fake.cache.clear()
    fake.requests.clear()
    wall, review = anyio.run(_review, fake, ctx, mode, warmup, cache, tuple(only))
    spans = {s.name: (s.end_ms - s.start_ms) / 1000 for s in review.trace}
    agents = {a: spans.pop(a) for a in list(spans) if a in AGENTS}
    return Run(wall, agents, spans, list(fake.messages_requests))


# --- part 1: wall time --------------------------------------------------------------------------


def slowest_alone(fake: FakeAnthropic, ctx: ReviewContext) -> dict[str, float]:
    """Time each specialist alone (its analyzers and its model call, cold cache)."""
    return {name: run(fake, ctx, "parallel", only=(name,)).agents_s[name] for name in AGENTS}


def mode_rows(runs: dict[str, list[Run]], alone: dict[str, float]) -> list[list[object]]:
    """One row per mode: wall, the ideal from specialists alone and in the run, ratios."""
    rows: list[list[object]] = []
    slowest = max(alone.values())
    total = sum(alone.values())
    for label, results in runs.items():
        wall = Stats.of([r.wall_s for r in results])
        synthesis = Stats.of([r.synthesis_s for r in results]).median
        sequential = label.startswith("sequential")
        ideal = (total if sequential else slowest) + synthesis
        in_run = Stats.of(
            [r.wall_s / ((sum if sequential else max)(r.agents_s.values()) + r.synthesis_s)
             for r in results]
        )  # fmt: skip
        rows.append(
            [label, wall.fmt(), f"{synthesis:.2f}", f"{ideal:.2f}",
             f"{wall.median / ideal:.3f}", in_run.fmt(digits=3)]
        )  # fmt: skip
    return rows


# --- part 2: caching ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Billing:
    """Input billing of the four specialist calls of one review."""

    label: str
    prefix_tokens: int
    uncached: int
    writes: int
    reads: int
    wall_s: float

    @property
    def billed(self) -> float:
        """Return input tokens at the base price (writes 1.25x, reads 0.1x)."""
        return self.uncached + 1.25 * self.writes + 0.1 * self.reads

    @property
    def prefix_ratio(self) -> float:
        """Return what the shared prefix cost, in multiples of its base price."""
        specialists = 4
        tasks = self.uncached - (
            0 if self.writes or self.reads else specialists * self.prefix_tokens
        )
        return (self.billed - tasks) / self.prefix_tokens


def billing(label: str, result: Run) -> Billing:
    """Sum the specialist calls' usage as the fake billed it."""
    calls = [r for r in result.records if purpose_of(r) in AGENTS]
    usage = [r.usage or {} for r in calls]
    prefix = max(r.cache.prefix_tokens for r in calls if r.cache) or _prefix_tokens(calls[0])
    return Billing(
        label,
        prefix,
        sum(u.get("input_tokens", 0) for u in usage),
        sum(u.get("cache_creation_input_tokens", 0) for u in usage),
        sum(u.get("cache_read_input_tokens", 0) for u in usage),
        max(result.agents_s.values()),
    )


def _prefix_tokens(record: RecordedRequest) -> int:
    """Return the tokens of tools + system + shared block (for the uncached request)."""
    from tests.fakes.anthropic_api import block_tokens, estimate_tokens

    body = record.body or {}
    tools = sum(block_tokens(t) for t in body.get("tools", []))
    system = sum(estimate_tokens(b["text"]) for b in body.get("system", []))
    return tools + system + estimate_tokens(body["messages"][0]["content"][0]["text"])


def billing_rows(bills: Sequence[Billing]) -> list[list[object]]:
    """One row per caching strategy."""
    return [
        [
            b.label,
            f"{b.prefix_tokens:,}",
            f"{b.uncached:,}",
            f"{b.writes:,}",
            f"{b.reads:,}",
            f"{b.billed:,.0f}",
            f"{b.prefix_ratio:.2f}x",
            f"${PRICE.input * b.billed / 1e6:.4f}",
            f"{b.wall_s:.2f}",
        ]
        for b in bills
    ]


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="timed runs per mode")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    """Measure and print both parts."""
    args = parse_args(argv)
    info = machine()
    fake = FakeAnthropic(latency=LATENCY)
    with tempfile.TemporaryDirectory(prefix="pr-council-bench-") as tmp, run_fake_anthropic(fake):
        pr = generate("medium", Path(tmp) / "medium", args.seed)
        ctx = review_context(pr.root)
        fake.handler = script(ctx)
        log(f"context: medium PR, {pr.files_changed} files, {pr.lines_changed} lines")
        run(fake, ctx, "parallel")  # warm-up: imports, analyzers' first runs
        alone = slowest_alone(fake, ctx)
        log("alone: " + ", ".join(f"{k} {v:.2f} s" for k, v in alone.items()))
        runs: dict[str, list[Run]] = {
            m: [run(fake, ctx, m) for _ in range(args.runs)] for m in MODES
        }
        cold = [run(fake, ctx, "parallel", warmup="none") for _ in range(args.runs)]
        runs["parallel, no warm-up"] = cold
        log("modes done")
        bills = [
            billing("leader warm-up (chosen)", runs["parallel"][0]),
            billing("4 parallel, cold cache", cold[0]),
            billing("no prompt caching", run(fake, ctx, "parallel", warmup="none", cache=False)),
        ]
    print(machine_line(info))
    print("\nSpecialists alone (s): " + ", ".join(f"{k} {v:.2f}" for k, v in alone.items()))
    print(f"\nWall time by mode, medium PR, {args.runs} runs each (s, median (min-max)):\n")
    headers = ["mode", "wall", "synthesis + verification + assessment", "ideal", "wall / ideal",
               "wall / (slowest in the run + synthesis)"]  # fmt: skip
    print(table(headers, mode_rows(runs, alone)))
    print("\nInput billing of the four specialist calls:\n")
    headers = ["strategy", "prefix", "uncached", "cache writes", "cache reads", "billed",
               "prefix paid", "input $", "slowest specialist s"]  # fmt: skip
    print(table(headers, billing_rows(bills)))
    data = {"machine": info, "alone": alone, "modes": mode_rows(runs, alone),
            "billing": [b.__dict__ | {"billed": b.billed, "prefix_ratio": b.prefix_ratio} for b in bills]}  # fmt: skip
    print(f"\nwrote {write_json('llm', data)}")
    return 0


def log(line: str) -> None:
    """Report progress on stderr."""
    print(line, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
