"""The test-coverage specialist: source-to-test mapping and diff coverage."""

from __future__ import annotations

from agents.analyzers.coverage import CoverageAnalyzer
from agents.analyzers.test_map import TestMapAnalyzer, is_python_source
from agents.model import ReviewContext
from agents.specialist import ModelPass, Specialist


def _idle(ctx: ReviewContext) -> str | None:
    """Only changed source code can lack tests."""
    code = [p for p, text in ctx.files.items() if is_python_source(p, text)]
    return None if code or ctx.coverage_report else "no changed Python source outside tests"


def coverage_specialist(model_pass: ModelPass | None = None) -> Specialist:
    """Build the test-coverage specialist."""
    return Specialist(
        name="test-coverage",
        analyzers=(TestMapAnalyzer(), CoverageAnalyzer()),
        idle_reason=_idle,
        model_pass=model_pass,
    )
