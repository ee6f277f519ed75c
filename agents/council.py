"""The default council: the four specialists in their fixed order."""

from __future__ import annotations

from agents.performance import performance_specialist
from agents.security import security_specialist
from agents.specialist import ModelPass, Specialist
from agents.style import style_specialist
from agents.test_coverage import coverage_specialist


def default_council(model_pass: ModelPass | None = None) -> list[Specialist]:
    """Build security, style, performance and test-coverage, sharing one model seam."""
    return [
        security_specialist(model_pass),
        style_specialist(model_pass),
        performance_specialist(model_pass),
        coverage_specialist(model_pass),
    ]
