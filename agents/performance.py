"""The performance specialist: ruff's PERF/ASYNC rules plus our own AST rules."""

from __future__ import annotations

from agents.analyzers.base import is_python
from agents.analyzers.perf_rules import PerfRulesAnalyzer
from agents.analyzers.ruff import perf_ruff
from agents.analyzers.test_map import is_test_file
from agents.model import ReviewContext
from agents.specialist import ModelPass, Specialist


def _idle(ctx: ReviewContext) -> str | None:
    """Docs-only and tests-only changes have no production code to make slow."""
    code = [p for p, text in ctx.files.items() if is_python(p) and not is_test_file(p, text)]
    return None if code else "no changed Python source outside tests"


def performance_specialist(model_pass: ModelPass | None = None) -> Specialist:
    """Build the performance specialist."""
    return Specialist(
        name="performance",
        analyzers=(perf_ruff(), PerfRulesAnalyzer()),
        idle_reason=_idle,
        model_pass=model_pass,
    )
