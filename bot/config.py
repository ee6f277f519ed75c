"""Settings from the environment and RepoConfig from `.github/pr-council.yml`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from agents.model import (
    AGENTS,
    DEFAULT_IGNORE,
    AgentName,
    DiffFilter,
    PathInstruction,
    ReviewOptions,
    Severity,
)

FailOn = Literal["critical", "major", "minor", "nit", "never"]
REPO_CONFIG_PATH = ".github/pr-council.yml"


class ConfigError(ValueError):
    """A configuration file or variable is invalid; the message names the key and file."""


class RepoConfig(BaseModel):
    """A repository's `.github/pr-council.yml`, read from the base branch."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    specialists: tuple[AgentName, ...] = AGENTS
    ignore: tuple[str, ...] = ()
    default_ignores: bool = True
    filter: DiffFilter = "added"
    inline_min_severity: Severity = "minor"
    max_inline_comments: int = Field(default=10, ge=0, le=50)
    fail_on: FailOn | None = None
    quiet: bool = False
    instructions: tuple[PathInstruction, ...] = ()
    coverage_file: str | None = None
    max_files: int = Field(default=500, ge=1, le=3000)

    @field_validator("specialists")
    @classmethod
    def _unique(cls, value: tuple[AgentName, ...]) -> tuple[AgentName, ...]:
        """Keep each specialist once."""
        return tuple(dict.fromkeys(value))

    def options(self) -> ReviewOptions:
        """Return the part of the configuration the engine obeys."""
        ignore = (DEFAULT_IGNORE if self.default_ignores else ()) + self.ignore
        return ReviewOptions(
            specialists=self.specialists,
            ignore=ignore,
            filter=self.filter,
            inline_min_severity=self.inline_min_severity,
            max_inline_comments=self.max_inline_comments,
            instructions=self.instructions,
        )


def parse_repo_config(text: str, source: str = REPO_CONFIG_PATH) -> RepoConfig:
    """Parse and validate a config file; errors name the bad key and the file."""
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {_one_line(str(exc))}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings, got {type(data).__name__}")
    try:
        return RepoConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from exc


def _describe(exc: ValidationError) -> str:
    """Summarise pydantic's errors as `key: problem` pairs."""
    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"{key}: {msg}")
    return "; ".join(parts)


def _one_line(text: str) -> str:
    """Fold a multi-line message onto one line."""
    return " ".join(text.split())


def load_repo_config(path: Path) -> RepoConfig:
    """Read a config file from disk."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    return parse_repo_config(text, str(path))


class Settings(BaseModel):
    """Process settings, from the environment (the only place that reads it)."""

    model_config = ConfigDict(frozen=True)

    # SecretStr keeps secrets out of reprs, logs and tracebacks.
    webhook_secret: SecretStr | None = None
    app_id: str | None = None
    private_key: SecretStr | None = None
    github_api_url: str = "https://api.github.com"
    github_token: SecretStr | None = None
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str | None = None
    model: str | None = None
    database_url: str | None = None
    state_dir: Path = Path(".pr-council")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Read the documented variables (DESIGN.md §8)."""
        return cls(
            webhook_secret=_secret(environ.get("PR_COUNCIL_WEBHOOK_SECRET")),
            app_id=environ.get("PR_COUNCIL_APP_ID") or None,
            private_key=_private_key(environ),
            github_api_url=environ.get("GITHUB_API_URL") or "https://api.github.com",
            github_token=_secret(environ.get("GITHUB_TOKEN")),
            anthropic_api_key=_secret(environ.get("ANTHROPIC_API_KEY")),
            anthropic_base_url=environ.get("ANTHROPIC_BASE_URL") or None,
            model=environ.get("PR_COUNCIL_MODEL") or None,
            database_url=environ.get("PR_COUNCIL_DATABASE_URL") or None,
            state_dir=Path(environ.get("PR_COUNCIL_STATE_DIR") or ".pr-council"),
        )


def _secret(value: str | None) -> SecretStr | None:
    """Wrap a non-empty secret."""
    return SecretStr(value) if value else None


def _private_key(environ: Mapping[str, str]) -> SecretStr | None:
    """Return the App's private key from the variable or the file it names."""
    if key := environ.get("PR_COUNCIL_PRIVATE_KEY"):
        return SecretStr(key)
    if path := environ.get("PR_COUNCIL_PRIVATE_KEY_PATH"):
        try:
            return SecretStr(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"PR_COUNCIL_PRIVATE_KEY_PATH: cannot read {path}: {exc}") from exc
    return None
