"""Per-specialist progress on stderr: a live table on a terminal, plain lines otherwise."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

from agents.model import AgentName, AgentReport
from agents.orchestrator import Phase, ProgressHook

_STYLE = {"ok": "green", "failed": "red", "timed_out": "red", "skipped": "dim"}


class _Board:
    """The state of each specialist, drawn as a table."""

    def __init__(self) -> None:
        self.rows: dict[AgentName, tuple[Phase, str]] = {}
        self.started: dict[AgentName, float] = {}

    def update(self, agent: AgentName, phase: Phase, report: AgentReport | None) -> None:
        """Record a specialist's new phase."""
        if phase == "running":
            self.started[agent] = time.perf_counter()
        self.rows[agent] = (phase, _describe(report) if report else "")

    def table(self) -> Table:
        """Draw the board."""
        table = Table(box=None, show_header=False, padding=(0, 1))
        for agent, (phase, detail) in self.rows.items():
            status = detail or (_elapsed(self.started[agent]) if agent in self.started else "")
            table.add_row(f"[bold]{agent}[/]", _phase(phase, detail), status)
        return table


def _phase(phase: Phase, detail: str) -> str:
    """Colour a phase label."""
    if phase != "done":
        return f"[yellow]{phase}[/]"
    status = detail.split(",")[0]
    return f"[{_STYLE.get(status, 'green')}]done[/]"


def _elapsed(since: float) -> str:
    """Format the time since a start."""
    return f"{time.perf_counter() - since:.1f} s"


def _describe(report: AgentReport) -> str:
    """Summarise a finished specialist in one line."""
    text = f"{report.status}, {len(report.findings)} findings, {report.duration_ms / 1000:.2f} s"
    return f"{text} ({report.error})" if report.error else text


@contextmanager
def progress_display(stream: TextIO) -> Iterator[ProgressHook]:
    """Yield a progress hook drawing to `stream`: live if it is a terminal."""
    if not stream.isatty():
        yield _plain(stream)
        return
    board = _Board()
    console = Console(file=stream)
    with Live(board.table(), console=console, refresh_per_second=8, transient=False) as live:

        def hook(agent: AgentName, phase: Phase, report: AgentReport | None) -> None:
            board.update(agent, phase, report)
            live.update(board.table())

        yield hook


def _plain(stream: TextIO) -> ProgressHook:
    """Print one line per finished specialist (for CI logs and pipes)."""

    def hook(agent: AgentName, phase: Phase, report: AgentReport | None) -> None:
        if phase == "done" and report is not None:
            print(f"pr-council: {agent}: {_describe(report)}", file=stream, flush=True)

    return hook
