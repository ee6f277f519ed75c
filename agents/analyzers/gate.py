"""Hold CPU-bound analyzers until the tool subprocesses (bandit, ruff) have launched.

Analyzers run in worker threads. The pure-Python ones (detect-secrets, perf-ast, test-map)
hold the GIL almost all the time, so the threads that write scratch files and spawn bandit
or ruff wait for it at every system call, and the subprocesses that could use another core
start last. Letting the tools launch first cut a 300-file review from 10.7 s to 6.4 s
(benchmarks/README.md, `analyzers.py`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from contextvars import ContextVar

_GATE: ContextVar[ToolGate | None] = ContextVar("pr_council_tool_gate", default=None)
_CURRENT: ContextVar[str] = ContextVar("pr_council_analyzer", default="")


class ToolGate:
    """Opens once every expected tool has launched its subprocess (or finished)."""

    def __init__(self, tools: Iterable[str], timeout_s: float = 10.0) -> None:
        self._waiting = set(tools)
        self._lock = threading.Lock()
        self._open = threading.Event()
        self.timeout_s = timeout_s
        if not self._waiting:
            self._open.set()

    def launched(self, tool: str) -> None:
        """Record that `tool` no longer needs the GIL to get going."""
        with self._lock:
            self._waiting.discard(tool)
            if not self._waiting:
                self._open.set()

    def wait(self) -> bool:
        """Block until the gate opens (or the safety timeout passes); tell whether it opened."""
        return self._open.wait(self.timeout_s)


@contextlib.contextmanager
def tool_gate(tools: Iterable[str]) -> Iterator[ToolGate]:
    """Install a gate for the analyzers started inside this block (tasks copy the context)."""
    gate = ToolGate(tools)
    token = _GATE.set(gate)
    try:
        yield gate
    finally:
        _GATE.reset(token)


def spawns_process(analyzer: object) -> bool:
    """Tell whether an analyzer runs a tool subprocess."""
    return bool(getattr(analyzer, "spawns_process", False))


@contextlib.contextmanager
def gated(name: str, spawns: bool) -> Iterator[None]:
    """Run one analyzer in its thread: tools go at once, the others wait for them."""
    gate = _GATE.get()
    token = _CURRENT.set(name)
    if gate is not None and not spawns:
        gate.wait()
    try:
        yield
    finally:
        _CURRENT.reset(token)
        if gate is not None:
            gate.launched(name)  # also on paths that never launch anything


def launching() -> None:
    """Say the current analyzer has written its inputs and is about to spawn its tool."""
    gate = _GATE.get()
    if gate is not None:
        gate.launched(_CURRENT.get())
