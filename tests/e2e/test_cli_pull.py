"""`pr-council review <PR URL>`: the real console script against the fake GitHub server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agents.render import SUMMARY_MARKER, parse_fingerprint_marker
from tests.e2e.conftest import GitRepo, run_cli
from tests.e2e.test_cli_review import (
    BILLING_BASE,
    BILLING_HEAD,
    DB_BASE,
    DB_HEAD,
    NOTIFY,
    SETTINGS,
    SYNC,
    TESTS_BASE,
    TESTS_HEAD,
    risky,  # noqa: F401 (the fixture)
)
from tests.fakes.github_api import FAKE_USER_TOKEN, FakeGitHub

BASE = {
    "app/__init__.py": "",
    "app/db.py": DB_BASE,
    "app/billing.py": BILLING_BASE,
    "tests/test_app.py": TESTS_BASE,
    "README.md": "# app\n",
}
HEAD = {
    **BASE,
    "app/db.py": DB_HEAD,
    "app/settings.py": SETTINGS,
    "app/notify.py": NOTIFY,
    "app/sync.py": SYNC,
    "app/billing.py": BILLING_HEAD,
    "tests/test_app.py": TESTS_HEAD,
    "README.md": "# app\n\nNow with reminders.\n",
}
URL = "https://github.com/acme/shop/pull/7"


@pytest.fixture
def pull(fake_github: FakeGitHub) -> FakeGitHub:
    """The same change as the `risky` repository, as pull request acme/shop#7."""
    fake_github.add_pull(
        "acme", "shop", 7, base_files=BASE, head_files=HEAD, title="Reminders", body="Adds them."
    )
    return fake_github


def env(fake: FakeGitHub, **extra: str) -> dict[str, str]:
    """What a maintainer sets to try pr-council on a live pull request."""
    assert fake.base_url is not None
    return {"GITHUB_TOKEN": FAKE_USER_TOKEN, "GITHUB_API_URL": fake.base_url, **extra}


def review_pull(fake: FakeGitHub, *args: str) -> dict[str, Any]:
    proc = run_cli("review", URL, "--format", "json", *args, env=env(fake))
    assert proc.returncode == 0, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def test_a_dry_run_prints_the_review_of_the_local_change_and_posts_nothing(
    pull: FakeGitHub,
    risky: GitRepo,  # noqa: F811
) -> None:
    report = review_pull(pull)
    local = run_cli("review", str(risky.root), "--format", "json")
    assert local.returncode == 0, local.stderr
    expected = {f["fingerprint"] for f in json.loads(local.stdout)["findings"]}
    assert {f["fingerprint"] for f in report["findings"]} == expected and expected
    assert report["target"].startswith("acme/shop#7@")
    assert pull.writes() == []


def test_post_publishes_once_and_a_second_run_edits_in_place(pull: FakeGitHub) -> None:
    first = review_pull(pull, "--post")
    comments = pull.issue_comments("acme", "shop", 7)
    assert len(comments) == 1 and SUMMARY_MARKER in comments[0].body
    inline = pull.review_comments("acme", "shop", 7)
    inline_expected = [f for f in first["findings"] if f["placement"] == "inline"]
    assert len(inline) == len(inline_expected) > 0
    assert {parse_fingerprint_marker(c.body) for c in inline} == {
        f["fingerprint"] for f in inline_expected
    }
    assert len(pull.reviews("acme", "shop", 7)) == 1

    second = review_pull(pull, "--post")
    assert {f["status"] for f in second["findings"]} == {"open"}
    again = pull.issue_comments("acme", "shop", 7)
    assert [c.id for c in again] == [comments[0].id]
    assert "🔁" in again[0].body
    assert len(pull.review_comments("acme", "shop", 7)) == len(inline)
    assert len(pull.reviews("acme", "shop", 7)) == 1


def test_without_a_token_or_with_a_missing_pull_request_the_error_is_one_line(
    pull: FakeGitHub,
) -> None:
    proc = run_cli("review", URL, env={"GITHUB_API_URL": pull.base_url or ""})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "GITHUB_TOKEN" in proc.stderr
    missing = run_cli("review", URL.replace("/7", "/8"), env=env(pull))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "404" in missing.stderr and FAKE_USER_TOKEN not in missing.stderr
    pull.acknowledge_unexpected()
