"""Settings from the environment and RepoConfig from `.github/pr-council.yml`."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from agents.budget import Limits
from agents.llm import DEFAULT_FALLBACKS, DEFAULT_PRICES, Price
from agents.model import (
    AGENTS,
    DEFAULT_IGNORE,
    AgentName,
    DiffFilter,
    PathInstruction,
    ReviewOptions,
    Severity,
)

N = TypeVar("N", int, float)
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
    fallback_models: tuple[str, ...] = DEFAULT_FALLBACKS
    prices: dict[str, Price] = Field(default_factory=lambda: dict(DEFAULT_PRICES))
    max_cost_usd: float | None = 2.0
    max_tokens: int | None = 500_000
    database_url: str | None = None
    state_dir: Path = Path(".pr-council")

    @property
    def limits(self) -> Limits:
        """Return the per-review model budget."""
        return Limits(max_tokens=self.max_tokens, max_cost_usd=self.max_cost_usd)

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
            fallback_models=_names(environ.get("PR_COUNCIL_FALLBACK_MODELS")),
            prices={**DEFAULT_PRICES, **_prices(environ.get("PR_COUNCIL_PRICES"))},
            max_cost_usd=_limit("PR_COUNCIL_MAX_COST_USD", environ, 2.0, float),
            max_tokens=_limit("PR_COUNCIL_MAX_TOKENS", environ, 500_000, int),
            database_url=environ.get("PR_COUNCIL_DATABASE_URL") or None,
            state_dir=Path(environ.get("PR_COUNCIL_STATE_DIR") or ".pr-council"),
        )


PostMode = Literal["review", "summary", "none"]


class ActionEnv(BaseModel):
    """What a GitHub Actions runner and our action.yml inputs put in the environment."""

    model_config = ConfigDict(frozen=True)

    event_name: str
    event_path: Path
    repository: str = ""
    output_file: Path | None = None
    step_summary: Path | None = None
    runner_temp: Path = Path(".")
    workspace: Path = Path(".")
    mode: Literal["parallel", "sequential", "adaptive"] = "parallel"
    fail_on: FailOn | None = None
    config_path: str = REPO_CONFIG_PATH
    coverage_file: str | None = None
    max_inline_comments: int | None = Field(default=None, ge=0, le=50)
    post: PostMode = "review"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ActionEnv:
        """Read the runner's variables (GitHub docs: "Variables reference") and our inputs."""
        if not environ.get("GITHUB_EVENT_NAME") or not environ.get("GITHUB_EVENT_PATH"):
            raise ConfigError(
                "pr-council action runs inside GitHub Actions (GITHUB_EVENT_NAME unset)"
            )
        values = {
            "event_name": environ["GITHUB_EVENT_NAME"],
            "event_path": environ["GITHUB_EVENT_PATH"],
            "repository": environ.get("GITHUB_REPOSITORY", ""),
            "output_file": environ.get("GITHUB_OUTPUT") or None,
            "step_summary": environ.get("GITHUB_STEP_SUMMARY") or None,
            "runner_temp": environ.get("RUNNER_TEMP") or ".",
            "workspace": environ.get("GITHUB_WORKSPACE") or ".",
            **_inputs(environ),
        }
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(f"pr-council action: {_describe(exc)}") from exc


def _inputs(environ: Mapping[str, str]) -> dict[str, str]:
    """Return the action inputs that were given (action.yml passes them as INPUT_*)."""
    names = {
        "mode": "INPUT_MODE",
        "fail_on": "INPUT_FAIL_ON",
        "config_path": "INPUT_CONFIG_PATH",
        "coverage_file": "INPUT_COVERAGE_FILE",
        "max_inline_comments": "INPUT_MAX_INLINE_COMMENTS",
        "post": "INPUT_POST",
    }
    return {
        field: environ[var].strip() for field, var in names.items() if environ.get(var, "").strip()
    }


def _names(value: str | None) -> tuple[str, ...]:
    """Split a comma-separated model list; unset means the default fallbacks."""
    if value is None:
        return DEFAULT_FALLBACKS
    return tuple(n.strip() for n in value.split(",") if n.strip())


def _limit(name: str, environ: Mapping[str, str], default: N, kind: type[N]) -> N | None:
    """Read a positive limit; `none` turns it off."""
    raw = (environ.get(name) or "").strip()
    if not raw:
        return default
    if raw.lower() == "none":
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected a number or 'none', got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name}: must be positive (or 'none'), got {raw!r}")
    return value


def _prices(value: str | None) -> dict[str, Price]:
    """Read a price table: JSON inline or a path to a JSON/YAML file, USD per million tokens."""
    if not value:
        return {}
    text = value
    if not value.lstrip().startswith("{"):
        try:
            text = Path(value).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"PR_COUNCIL_PRICES: cannot read {value}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
        return {str(k): Price.model_validate(v) for k, v in dict(data).items()}
    except (yaml.YAMLError, json.JSONDecodeError, TypeError, ValueError) as exc:
        raise ConfigError(f"PR_COUNCIL_PRICES: {_one_line(str(exc))[:200]}") from exc


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
