"""Ruff's JSON output: diagnostics, their locations and the fixes ruff proposes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from agents.analyzers.ruff_rules import SYNTAX_ERROR


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class RuffLocation(_Model):
    """A 1-based row and (character) column."""

    row: int
    column: int


class RuffEdit(_Model):
    """Replace the text between two locations."""

    content: str
    location: RuffLocation
    end_location: RuffLocation


class RuffFix(_Model):
    """Ruff's proposed fix for one diagnostic."""

    applicability: str = "safe"
    message: str | None = None
    edits: tuple[RuffEdit, ...] = ()


class RuffDiagnostic(_Model):
    """One entry of `ruff check --output-format json`."""

    code: str | None = None
    name: str | None = None
    message: str
    filename: str
    location: RuffLocation
    end_location: RuffLocation
    fix: RuffFix | None = None
    url: str | None = None

    @property
    def rule(self) -> str:
        """Return the rule code, `invalid-syntax` for a parse error."""
        return self.code or SYNTAX_ERROR

    @property
    def is_syntax_error(self) -> bool:
        """Tell whether ruff could not parse the file."""
        return self.rule == SYNTAX_ERROR
