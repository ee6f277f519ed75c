"""What the benchmark scripts share: the review context, statistics, tables, the machine, JSON."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path

from agents.diff import parse_diff
from agents.model import ReviewContext
from bot import local
from bot.config import RepoConfig
from bot.pipeline import Change, build_context

OUT_DIR = Path(__file__).resolve().parent / "out"


def local_change(root: Path) -> tuple[Change, local.GitTree]:
    """Resolve a repository's branch as the CLI does: merge-base with `main` .. HEAD."""
    repo = local.toplevel(root)
    head = local.rev(repo, "HEAD")
    base = local.default_base(repo, head)
    diff = parse_diff(local.diff_text(repo, base, head))
    return Change(target=f"{base[:12]}..{head[:12]}", diff=diff), local.GitTree(repo, head)


def review_context(root: Path) -> ReviewContext:
    """Build the review context of a repository's branch with the default configuration."""
    change, tree = local_change(root)
    return build_context(change, tree, RepoConfig())


@dataclass(frozen=True)
class Stats:
    """Median, minimum and maximum of repeated measurements."""

    median: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        """Summarise a non-empty list of measurements."""
        return cls(statistics.median(values), min(values), max(values))

    def fmt(self, scale: float = 1.0, digits: int = 2) -> str:
        """Render as `median (min-max)`, multiplied by `scale`."""
        m, lo, hi = (round(v * scale, digits) for v in (self.median, self.min, self.max))
        return f"{m:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Render a GitHub-markdown table, columns padded for the terminal."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([lines[0], rule, *lines[1:]])


def machine() -> dict[str, object]:
    """Describe the machine the figures come from."""
    return {
        "cpus": os.cpu_count(),
        "nproc": _run(["nproc"]),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def machine_line(info: dict[str, object]) -> str:
    """Summarise the machine in one line."""
    return (
        f"machine: {info['nproc']} cores ({info['cpu_model']}), Python {info['python']}, "
        f"load average {info['load_average']}"
    )


def _cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo, or the platform's guess."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return platform.processor() or "unknown"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return platform.processor() or "unknown"


def _run(command: list[str]) -> str:
    """Return a command's stripped output, or '?' when it cannot run."""
    try:
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def write_json(name: str, data: object) -> Path:
    """Write `data` as benchmarks/out/<name>.json and return the path."""
    OUT_DIR.mkdir(exist_ok=True)
    path = OUT_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=_default) + "\n", encoding="utf-8")
    return path


def _default(value: object) -> object:
    """Serialise dataclasses and paths."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")
