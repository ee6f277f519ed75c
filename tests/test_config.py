"""RepoConfig parsing and validation; Settings from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.model import DEFAULT_IGNORE
from bot.config import ConfigError, RepoConfig, Settings, load_repo_config, parse_repo_config


def test_full_config_round_trips_into_review_options() -> None:
    config = parse_repo_config(
        """
specialists: [security, performance]
ignore: ["docs/**"]
filter: diff_context
inline_min_severity: major
max_inline_comments: 3
fail_on: critical
quiet: true
instructions:
  - path: "src/payments/**"
    instructions: "Money is Decimal, never float."
coverage_file: coverage.xml
"""
    )
    options = config.options()
    assert options.specialists == ("security", "performance")
    assert options.ignore == (*DEFAULT_IGNORE, "docs/**")
    assert (options.filter, options.inline_min_severity, options.max_inline_comments) == (
        "diff_context",
        "major",
        3,
    )
    assert options.instructions[0].path == "src/payments/**"
    assert (config.fail_on, config.quiet, config.coverage_file) == (
        "critical",
        True,
        "coverage.xml",
    )


def test_empty_file_means_defaults() -> None:
    assert parse_repo_config("") == RepoConfig()
    assert parse_repo_config("# only a comment\n") == RepoConfig()


def test_default_ignores_can_be_turned_off() -> None:
    assert parse_repo_config("default_ignores: false\nignore: [a]").options().ignore == ("a",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "max_inline_comments: 500",
            "max_inline_comments: Input should be less than or equal to 50",
        ),
        ("fail_on: everything", "fail_on: Input should be"),
        ("specialists: [security, docs]", "specialists.1: Input should be"),
        ("maximum_comments: 3", "maximum_comments: unknown key"),
        ("- just\n- a list", "expected a mapping of settings, got list"),
        ("key: [unclosed", "not valid YAML"),
        ("instructions:\n  - path: x", "instructions.0.instructions: Field required"),
    ],
)
def test_invalid_config_names_the_file_and_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_repo_config(text, ".github/pr-council.yml")
    assert str(err.value).startswith(".github/pr-council.yml: ")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unreadable_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_repo_config(tmp_path / "missing.yml")


def test_settings_read_the_documented_variables_and_hide_secrets(tmp_path: Path) -> None:
    key = tmp_path / "app.pem"
    key.write_text("-----BEGIN KEY-----")
    settings = Settings.from_env(
        {
            "ANTHROPIC_API_KEY": "sk-ant-secret",
            "GITHUB_TOKEN": "ghs_token",
            "PR_COUNCIL_PRIVATE_KEY_PATH": str(key),
            "GITHUB_API_URL": "http://127.0.0.1:9999",
            "PR_COUNCIL_STATE_DIR": str(tmp_path),
        }
    )
    assert settings.anthropic_api_key is not None
    assert settings.anthropic_api_key.get_secret_value() == "sk-ant-secret"
    assert settings.private_key is not None and settings.private_key.get_secret_value().startswith(
        "-----BEGIN"
    )
    assert settings.github_api_url == "http://127.0.0.1:9999" and settings.state_dir == tmp_path
    assert "sk-ant-secret" not in repr(settings) and "ghs_token" not in repr(settings)


def test_settings_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.github_api_url == "https://api.github.com"
    assert settings.anthropic_api_key is None and settings.webhook_secret is None
