"""Snapshot and publishing through real githubkit against the fake GitHub server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from githubkit import GitHub
from githubkit.exception import RequestFailed

from agents.model import Review
from agents.render import COMMENT_LIMIT, SUMMARY_MARKER, parse_fingerprint_marker
from bot.config import Settings
from bot.github.client import Pacer, PullRef
from bot.github.publish import Publisher
from bot.github.snapshot import Snapshot, fetch_snapshot
from bot.github.state import parse_state
from bot.runner import review_snapshot
from tests.fakes.github_api import FakeGitHub

pytestmark = pytest.mark.anyio

BOT = "pr-council[bot]"
REF = PullRef("acme", "shop", 3)
QUERY = "def find(db, name):\n    return db.execute(f\"SELECT * FROM t WHERE n = '{name}'\")\n"
SLEEPY = "import time\n\n\nasync def wait():\n    time.sleep(1)\n"
BASE = {"app/__init__.py": "", "README.md": "# shop\n"}
HEAD = {**BASE, "app/query.py": QUERY, "app/sleepy.py": SLEEPY}


class NoPause(Pacer):
    """Paced writes without waiting, counting them."""

    def __init__(self) -> None:
        super().__init__(interval_s=0.0)


@pytest.fixture
def shop(fake_github: FakeGitHub) -> FakeGitHub:
    fake_github.add_pull("acme", "shop", 3, base_files=BASE, head_files=HEAD, title="Queries")
    return fake_github


@pytest.fixture
async def gh(shop: FakeGitHub) -> AsyncIterator[GitHub[Any]]:
    async with shop.installation_client() as client:
        yield client


async def reviewed(gh: GitHub[Any]) -> tuple[Snapshot, Review]:
    snap = await fetch_snapshot(gh, REF, BOT)
    return snap, await review_snapshot(snap, Settings())


async def publish(gh: GitHub[Any], **kw: Any) -> tuple[Snapshot, Review, Any]:
    snap, review = await reviewed(gh)
    published = await Publisher(gh, NoPause(), **kw).publish(snap, review, "major")
    return snap, review, published


async def test_publishes_one_review_one_summary_and_a_failing_check(
    shop: FakeGitHub, gh: GitHub[Any]
) -> None:
    _, review, published = await publish(gh)
    [summary] = shop.issue_comments("acme", "shop", 3)
    assert summary.author.login == BOT and SUMMARY_MARKER in summary.body
    assert {p.fingerprint for p in parse_state(summary.body)} == {
        f.fingerprint for f in review.findings
    }
    inline = shop.review_comments("acme", "shop", 3)
    assert {parse_fingerprint_marker(c.body) for c in inline} == {
        f.fingerprint for f in review.inline
    }
    [run] = shop.check_runs("acme", "shop")
    assert run.conclusion == "failure" and run.head_sha == shop.pull("acme", "shop", 3).head_sha
    assert published.summary_id == summary.id and published.inline_posted == len(inline)


async def test_a_fix_pushed_is_resolved_in_the_same_summary_without_new_inline_comments(
    shop: FakeGitHub, gh: GitHub[Any]
) -> None:
    await publish(gh)
    before = shop.review_comments("acme", "shop", 3)
    fixed = {**HEAD, "app/sleepy.py": SLEEPY.replace("time.sleep(1)", "await asyncio.sleep(1)")}
    fixed["app/sleepy.py"] = "import asyncio\n" + fixed["app/sleepy.py"].replace(
        "import time\n", ""
    )
    shop.push("acme", "shop", 3, "b" * 40, fixed)
    _, review, _ = await publish(gh)
    [summary] = shop.issue_comments("acme", "shop", 3)
    assert "Resolved since the last review (1)" in summary.body
    assert [r.path for r in review.resolved] == ["app/sleepy.py"]
    assert len(shop.review_comments("acme", "shop", 3)) == len(before)
    assert len(shop.reviews("acme", "shop", 3)) == 1


async def test_inline_comments_rejected_with_422_move_to_the_summary(
    shop: FakeGitHub, gh: GitHub[Any]
) -> None:
    shop.fail("POST", r"/pulls/3/reviews$", 422)
    _, review, published = await publish(gh)
    assert shop.review_comments("acme", "shop", 3) == [] and review.inline
    assert published.inline_moved == len(review.inline) and published.inline_posted == 0
    [summary] = shop.issue_comments("acme", "shop", 3)
    assert "rejected by GitHub (422)" in summary.body and "💬 inline" not in summary.body


async def test_a_502_after_the_comment_was_stored_does_not_post_it_twice(
    shop: FakeGitHub, gh: GitHub[Any]
) -> None:
    shop.fail("POST", r"/issues/3/comments$", 502, after_effect=True)
    shop.fail("POST", r"/pulls/3/reviews$", 502, after_effect=True)
    shop.fail("POST", r"/check-runs$", 502, after_effect=True)
    await publish(gh)
    assert len(shop.issue_comments("acme", "shop", 3)) == 1
    assert len(shop.reviews("acme", "shop", 3)) == 1
    assert len(shop.check_runs("acme", "shop")) == 1
    posts = [r for r in shop.writes() if r.method == "POST"]
    assert len(posts) == 3  # none re-sent


async def test_a_502_before_anything_was_stored_is_raised_not_retried(
    shop: FakeGitHub, gh: GitHub[Any]
) -> None:
    shop.fail("POST", r"/issues/3/comments$", 502)
    with pytest.raises(RequestFailed):
        await publish(gh)
    assert shop.issue_comments("acme", "shop", 3) == []
    assert len(shop.requests_to("POST", r"/issues/3/comments$")) == 1


async def test_a_humans_comment_with_our_marker_is_not_ours(
    shop: FakeGitHub, gh: GitHub[Any]
) -> None:
    shop.seed_issue_comment("acme", "shop", 3, f"{SUMMARY_MARKER}\nI am not the bot")
    await publish(gh)
    comments = shop.issue_comments("acme", "shop", 3)
    assert [c.author.login for c in comments] == ["someone", BOT]
    assert comments[0].body.endswith("I am not the bot")


async def test_more_than_fifty_annotations_go_in_batches(shop: FakeGitHub, gh: GitHub[Any]) -> None:
    many = "".join(f"def f{i}(x):\n    return eval(x)\n\n\n" for i in range(60))
    shop.push("acme", "shop", 3, "c" * 40, {**HEAD, "app/many.py": many})
    _, review, _ = await publish(gh)
    [run] = shop.check_runs("acme", "shop")
    with_lines = [f for f in review.findings if f.line is not None]
    assert len(run.annotations) == len(with_lines) > 50
    assert len(shop.requests_to("PATCH", r"/check-runs/\d+$")) == (len(with_lines) - 1) // 50


async def test_a_token_that_may_not_write_checks_still_gets_its_review(
    shop: FakeGitHub,
) -> None:
    async with shop.client() as user:
        _, _, published = await publish(user)
    assert published.check_run_id is None and published.notes
    assert len(shop.issue_comments("acme", "shop", 3)) == 1
    shop.acknowledge_unexpected()


async def test_the_summary_stays_under_the_comment_limit_with_thousands_of_findings(
    shop: FakeGitHub, gh: GitHub[Any]
) -> None:
    lines = "".join(f"value_{i} = eval('{i}')  # {'x' * 80}\n" for i in range(1500))
    shop.push("acme", "shop", 3, "d" * 40, {**HEAD, "app/big.py": lines})
    _, review, _ = await publish(gh)
    [summary] = shop.issue_comments("acme", "shop", 3)
    assert len(review.findings) > 1000
    assert len(summary.body) <= COMMENT_LIMIT and parse_state(summary.body)


async def test_config_is_read_from_the_base_branch_not_the_head(shop: FakeGitHub) -> None:
    shop.add_pull(
        "acme",
        "cfg",
        1,
        base_files={**BASE, ".github/pr-council.yml": "fail_on: critical\n"},
        head_files={**HEAD, ".github/pr-council.yml": "fail_on: never\nspecialists: [style]\n"},
    )
    async with shop.installation_client() as gh:
        snap = await fetch_snapshot(gh, PullRef("acme", "cfg", 1), BOT)
    assert snap.config.fail_on == "critical" and len(snap.config.options().specialists) == 4


async def test_past_the_diff_limit_the_diff_is_rebuilt_from_the_file_list(
    shop: FakeGitHub,
) -> None:
    async with shop.installation_client() as gh:
        normal, _ = await reviewed(gh)
        shop.pull("acme", "shop", 3).too_large_for_diff = True
        rebuilt, review = await reviewed(gh)
    assert len(shop.requests_to("GET", r"/pulls/3/files$")) >= 1
    assert [f.path for f in rebuilt.change.diff.files] == [f.path for f in normal.change.diff.files]
    assert [f.added for f in rebuilt.change.diff.files] == [
        f.added for f in normal.change.diff.files
    ]
    assert any(f.path == "app/query.py" for f in review.findings)


async def test_files_without_a_patch_or_binary_are_named_as_not_reviewed(
    fake_github: FakeGitHub,
) -> None:
    head = {**HEAD, "logo.png": b"\x89PNG\r\n\x1a\n\0\0binary", "app/huge.py": "x = 1\n"}
    fake_github.add_pull(
        "acme",
        "shop",
        4,
        base_files=BASE,
        head_files=head,
        too_large_for_diff=True,
        patchless=["app/huge.py"],
    )
    async with fake_github.installation_client() as gh:
        snap = await fetch_snapshot(gh, PullRef("acme", "shop", 4), BOT)
        review = await review_snapshot(snap, Settings())
    skipped = {s.path: s.reason for s in review.skipped}
    assert "no patch" in skipped["app/huge.py"] and "binary" in skipped["logo.png"]


async def test_an_invalid_config_on_the_base_branch_is_reported_and_defaults_used(
    fake_github: FakeGitHub,
) -> None:
    base = {**BASE, ".github/pr-council.yml": "fail_on: sometimes\n"}
    fake_github.add_pull("acme", "cfg", 2, base_files=base, head_files={**base, **HEAD})
    async with fake_github.installation_client() as gh:
        snap = await fetch_snapshot(gh, PullRef("acme", "cfg", 2), BOT)
        review = await review_snapshot(snap, Settings())
    assert snap.config_error and "fail_on" in snap.config_error
    assert any(n.startswith("repository config ignored, defaults used:") for n in review.notes)


async def test_quiet_posts_no_summary_on_a_clean_pull_request(fake_github: FakeGitHub) -> None:
    base = {**BASE, ".github/pr-council.yml": "quiet: true\n"}
    fake_github.add_pull(
        "acme", "calm", 5, base_files=base, head_files={**base, "README.md": "# hi\n"}
    )
    async with fake_github.installation_client() as gh:
        snap = await fetch_snapshot(gh, PullRef("acme", "calm", 5), BOT)
        review = await review_snapshot(snap, Settings())
        published = await Publisher(gh, NoPause()).publish(snap, review, "major", quiet=True)
    assert review.findings == () and published.summary_id is None
    assert fake_github.issue_comments("acme", "calm", 5) == []
    [run] = fake_github.check_runs("acme", "calm")
    assert run.conclusion == "success"
