"""The CLI's progress display: a live table on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io

from agents.model import AgentReport
from bot.progress import progress_display


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_stream_gets_one_line_per_finished_specialist() -> None:
    out = io.StringIO()
    with progress_display(out) as hook:
        hook("security", "queued", None)
        hook("security", "running", None)
        hook("security", "done", AgentReport(agent="security", status="ok", end_ms=1500))
        hook("style", "done", AgentReport(agent="style", status="failed", error="boom"))
    assert out.getvalue().splitlines() == [
        "pr-council: security: ok, 0 findings, 1.50 s",
        "pr-council: style: failed, 0 findings, 0.00 s (boom)",
    ]


def test_terminal_gets_a_live_table_with_every_specialist() -> None:
    out = Terminal()
    with progress_display(out) as hook:
        hook("security", "running", None)
        hook(
            "performance",
            "done",
            AgentReport(agent="performance", status="timed_out", error="late"),
        )
    screen = out.getvalue()
    assert "security" in screen and "running" in screen
    assert "timed_out, 0 findings" in screen and "(late)" in screen
