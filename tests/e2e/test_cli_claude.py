"""`pr-council review` with an API key: the real CLI and SDK against the fake Messages API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import GitRepo, run_cli
from tests.e2e.test_cli_review import risky  # noqa: F401 (the fixture)
from tests.fakes.anthropic_api import FAKE_API_KEY, Error, FakeAnthropic
from tests.fakes.council import CouncilScript, finding

MODEL = "claude-sonnet-5-5"


def claude_env(fake: FakeAnthropic, **extra: str) -> dict[str, str]:
    """The environment a user sets to review with Claude."""
    assert fake.base_url is not None
    return {
        "ANTHROPIC_API_KEY": FAKE_API_KEY,
        "ANTHROPIC_BASE_URL": fake.base_url,
        "PR_COUNCIL_MODEL": MODEL,
        **extra,
    }


def review(repo: GitRepo, env: dict[str, str], *args: str) -> dict[str, Any]:
    proc = run_cli("review", str(repo.root), "--format", "json", *args, env=env)
    assert proc.returncode == 0, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def sources(report: dict[str, Any]) -> set[str]:
    return {s for f in report["findings"] for s in (f["source"], *f["also_found_by"])}


def test_review_with_a_key_has_analyzer_and_model_findings_and_costs(
    risky: GitRepo,  # noqa: F811
    fake_anthropic: FakeAnthropic,
    tmp_path: Path,
) -> None:
    fake_anthropic.handler = CouncilScript(
        findings={
            "security": [finding("app/db.py", 16, "major", title="Name reaches SQL unescaped")],
            "performance": [
                finding("app/sync.py", 10, "major", title="One request per user", confidence=0.8)
            ],
        }
    )
    trace = tmp_path / "trace.json"
    report = review(risky, claude_env(fake_anthropic), "--trace", str(trace))
    assert f"llm:{MODEL}" in sources(report)
    assert any(s.startswith("bandit:") for s in sources(report))
    model = [f for f in report["findings"] if f["source"] == f"llm:{MODEL}"]
    assert {f["agent"] for f in model} <= {"security", "performance"} and model
    agents = json.loads(trace.read_text())["agents"]
    for agent in agents:
        assert agent["input_tokens"] > 0 and agent["output_tokens"] > 0
        assert agent["cost_usd"] > 0 and f"llm:{MODEL}" in agent["tools"]
    assert report["cost_usd"] >= sum(a["cost_usd"] for a in agents)
    assert report["assessment"] and report["assessment"] in report["summary_markdown"]
    assert len(fake_anthropic.messages_requests) >= 5  # four specialists and the assessment


def test_offline_never_calls_the_model_even_with_a_key(
    risky: GitRepo,  # noqa: F811
    fake_anthropic: FakeAnthropic,
) -> None:
    report = review(risky, claude_env(fake_anthropic), "--offline")
    assert fake_anthropic.requests == []
    assert "analyzers only: --offline" in report["notes"]
    assert not any(s.startswith("llm:") for s in sources(report))


def test_an_overloaded_api_leaves_the_analyzer_review_and_says_so_once(
    risky: GitRepo,  # noqa: F811
    fake_anthropic: FakeAnthropic,
) -> None:
    # retry-after-ms keeps the (real, capped) backoff short.
    fake_anthropic.default = Error(529, "overloaded_error", headers={"retry-after-ms": "20"})
    report = review(risky, claude_env(fake_anthropic, PR_COUNCIL_FALLBACK_MODELS=""))
    offline = review(risky, {}, "--offline")
    strip = {(f["fingerprint"], f["severity"]) for f in offline["findings"]}
    assert {(f["fingerprint"], f["severity"]) for f in report["findings"]} == strip
    assert all(
        a["error"] == "model pass unavailable: the API is overloaded" for a in report["agents"]
    )
    visible = report["summary_markdown"].split("🔎 Trace")[0]
    assert visible.count("model pass unavailable: the API is overloaded") == 1
    assert len(fake_anthropic.messages_requests) == 4 * 3  # three attempts per specialist


def test_a_rejected_key_stops_the_model_and_gives_one_clear_line(
    risky: GitRepo,  # noqa: F811
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.api_key = "sk-ant-the-real-one"
    report = review(risky, claude_env(fake_anthropic))
    # This PR is too small to cache, so the specialists' calls go out together (no warm-up);
    # the first 401 stops every later call, synthesis included (one request with warm-up:
    # tests/test_model_pass.py).
    statuses = [r.status for r in fake_anthropic.messages_requests]
    assert 1 <= len(statuses) <= 4 and set(statuses) == {401}
    assert report["model_steps"] == []
    visible = report["summary_markdown"].split("🔎 Trace")[0]
    assert visible.count("the API key was rejected (check ANTHROPIC_API_KEY)") == 1
    assert FAKE_API_KEY not in json.dumps(report)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PR_COUNCIL_MAX_COST_USD", "lots"),
        ("PR_COUNCIL_MAX_TOKENS", "-5"),
        ("PR_COUNCIL_PRICES", "{oops"),
    ],
)
def test_bad_model_settings_are_a_one_line_error(
    risky: GitRepo,  # noqa: F811
    fake_anthropic: FakeAnthropic,
    name: str,
    value: str,
) -> None:
    proc = run_cli("review", str(risky.root), env=claude_env(fake_anthropic, **{name: value}))
    assert proc.returncode == 2 and name in proc.stderr and "Traceback" not in proc.stderr
    assert fake_anthropic.requests == []
