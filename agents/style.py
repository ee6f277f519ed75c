"""The style specialist: ruff under the reviewed repository's own configuration."""

from __future__ import annotations

from agents.analyzers.base import is_python
from agents.analyzers.ruff import style_ruff
from agents.model import ReviewContext
from agents.specialist import ModelPass, Specialist


def _idle(ctx: ReviewContext) -> str | None:
    """Style rules read Python only (until a model pass covers other languages)."""
    return None if any(is_python(p) for p in ctx.files) else "no changed Python files"


def style_specialist(model_pass: ModelPass | None = None) -> Specialist:
    """Build the style specialist."""
    return Specialist(
        name="style", analyzers=(style_ruff(),), idle_reason=_idle, model_pass=model_pass
    )
