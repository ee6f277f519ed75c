"""The security specialist: bandit, secret detection, and later a model pass."""

from __future__ import annotations

from agents.analyzers.bandit import BanditAnalyzer
from agents.analyzers.secrets import SecretsAnalyzer
from agents.model import ReviewContext
from agents.specialist import ModelPass, Specialist


def _idle(ctx: ReviewContext) -> str | None:
    """Secrets hide in any text file, so only an empty change leaves nothing to check."""
    return None if ctx.files else "no changed text files"


def security_specialist(model_pass: ModelPass | None = None) -> Specialist:
    """Build the security specialist."""
    return Specialist(
        name="security",
        analyzers=(BanditAnalyzer(), SecretsAnalyzer()),
        idle_reason=_idle,
        model_pass=model_pass,
    )
