"""The council with Claude: the real SDK against the fake Messages API over loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import pytest

from agents.budget import Limits
from agents.llm import LLM, AnthropicLLM, PrefixHook, Prompt, Reply, T
from agents.model import ReviewContext
from agents.prompts import RULES
from agents.render import render_json, render_markdown
from bot.pipeline import run_review
from tests.fakes.anthropic_api import Error, FakeAnthropic
from tests.fakes.council import CouncilScript, finding, purpose_of, specialist_requests
from tests.helpers import context_from

pytestmark = pytest.mark.anyio

MODEL = "claude-sonnet-5-5"
SOURCE = f"llm:{MODEL}"
# Enough code for the shared prefix to pass the minimum cacheable size.
FILLER = "".join(
    f"def helper_{i}(value):\n    return value * {i} + len(str(value))\n\n" for i in range(60)
)
APP = (
    "import subprocess\n\n\n"
    "def run(cmd):\n"
    "    return subprocess.call(cmd, shell=True)\n\n\n"
    "def total(items):\n"
    "    out = ''\n"
    "    for item in items:\n"
    "        out += str(item)\n"
    "    return out\n\n\n" + FILLER
)


def review_ctx(**fields: Any) -> ReviewContext:
    """A change adding app.py (a shell call, quadratic string building, filler)."""
    return context_from({"app.py": APP}, title="Add runner", body="Adds a runner.", **fields)


async def no_sleep(_seconds: float) -> None:
    """Backoff without waiting."""


@pytest.fixture
async def client(fake_anthropic: FakeAnthropic) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with fake_anthropic.client(timeout=20) as c:
        yield c


def claude(client: anthropic.AsyncAnthropic, **kw: Any) -> AnthropicLLM:
    return AnthropicLLM(client=client, models=(MODEL, "claude-haiku-5-5"), sleep=no_sleep, **kw)


async def test_four_specialists_share_one_byte_identical_cached_prefix(
    fake_anthropic: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake_anthropic.handler = CouncilScript()
    await run_review(review_ctx(), llm=claude(client))
    requests = specialist_requests(fake_anthropic.messages_requests)
    assert set(requests) == {"security", "style", "performance", "test-coverage"}
    systems = {repr(r.body["system"]) for r in requests.values()}  # type: ignore[index]
    shared = [r.body["messages"][0]["content"][0] for r in requests.values()]  # type: ignore[index]
    tools = {repr(r.body["tools"]) for r in requests.values()}  # type: ignore[index]
    assert len(systems) == 1 and len(tools) == 1
    assert all(block == shared[0] for block in shared)
    assert shared[0]["cache_control"] == {"type": "ephemeral"}
    assert "<untrusted-diff code=" in shared[0]["text"] and "subprocess.call" in shared[0]["text"]
    tasks = {r.body["messages"][0]["content"][1]["text"] for r in requests.values()}  # type: ignore[index]
    assert len(tasks) == 4 and all("cache_control" not in t for t in tasks)


async def test_leader_warm_up_writes_the_cache_once_and_the_others_read_it(
    fake_anthropic: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake_anthropic.handler = CouncilScript()
    await run_review(review_ctx(), llm=claude(client))
    caches = [r.cache for r in specialist_requests(fake_anthropic.messages_requests).values()]
    assert all(c is not None for c in caches)
    writes = [c for c in caches if c and c.creation_tokens]
    reads = [c for c in caches if c and c.read_tokens]
    assert len(writes) == 1 and len(reads) == 3
    assert all(r.read_tokens >= writes[0].creation_tokens for r in reads)


@dataclass
class HookSpy:
    """Passes calls through, noting which ones asked to be told when the prefix is cached."""

    llm: LLM
    hooked: list[bool] = field(default_factory=list)

    async def ask(
        self, prompt: Prompt, output: type[T], *, on_prefix_cached: PrefixHook | None = None
    ) -> Reply[T]:
        self.hooked.append(on_prefix_cached is not None)
        return await self.llm.ask(prompt, output, on_prefix_cached=on_prefix_cached)


async def test_a_prefix_too_short_to_cache_is_not_warmed_up(
    fake_anthropic: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake_anthropic.handler = CouncilScript()
    spy = HookSpy(claude(client))
    await run_review(context_from({"app.py": "import os\n"}, title="t"), llm=spy)
    caches = [r.cache for r in specialist_requests(fake_anthropic.messages_requests).values()]
    assert len(caches) == 4 and all(c is not None and c.prefix_tokens == 0 for c in caches)
    assert spy.hooked[:4] == [False] * 4  # nobody waited for a cache entry that never comes

    fake_anthropic.reset()
    fake_anthropic.handler = CouncilScript()
    spy = HookSpy(claude(client))
    await run_review(review_ctx(), llm=spy)
    assert sorted(spy.hooked[:4]) == [False, False, False, True]


async def test_model_findings_merge_with_analyzer_findings_with_provenance(
    fake_anthropic: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    script = CouncilScript(
        findings={
            "security": [finding("app.py", 5, "major", title="Command injection via cmd")],
            "performance": [finding("app.py", 11, "minor", title="Quadratic concatenation")],
        }
    )
    fake_anthropic.handler = script
    review = await run_review(review_ctx(), llm=claude(client))
    sources = {f.source for f in review.findings} | {
        s for f in review.findings for s in f.also_found_by
    }
    assert SOURCE in sources
    assert any(s.startswith("bandit:") for s in sources)
    model = [f for f in review.findings if f.source == SOURCE or SOURCE in f.also_found_by]
    assert {f.agent for f in model} >= {"security"}
    by_agent = {a.agent: a for a in review.agents}
    for agent in by_agent.values():
        assert agent.model == "ok" and SOURCE in agent.tools
        assert agent.input_tokens > 0 and agent.output_tokens > 0 and agent.cost_usd > 0
    assert review.cost_usd > sum(a.cost_usd for a in review.agents) - 1e-12
    assert review.assessment == script.assessment
    assert script.assessment in render_markdown(review)


async def test_model_findings_off_the_reviewed_lines_never_go_inline(
    fake_anthropic: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    ctx = context_from(
        {"app.py": APP, "lib.py": "x = 1\ny = 2\n"}, base={"lib.py": "x = 1\n"}, title="t"
    )
    fake_anthropic.handler = CouncilScript(
        findings={
            "style": [
                finding("lib.py", 1, title="on an unchanged line"),
                finding("lib.py", 99, title="past the end of the file"),
                finding("nowhere.py", 1, title="a file the PR does not touch"),
                finding("lib.py", 2, title="on the added line"),
            ]
        }
    )
    review = await run_review(ctx, llm=claude(client))
    titles = {f.title for f in review.findings if f.source == SOURCE}
    assert titles == {"on the added line"}
    assert any("dropped 3 model findings" in n for n in review.notes)


async def test_verification_drops_rejected_findings_and_counts_them(
    fake_anthropic: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    def verdict(claim: str) -> dict[str, Any]:
        return {"keep": "Imagined race" not in claim, "reason": "checked"}

    script = CouncilScript(
        findings={
            "security": [finding("app.py", 5, "critical", title="Imagined race in run")],
            "style": [finding("app.py", 9, "minor", confidence=0.3, title="Doubtful name")],
        },
        verdict=verdict,
    )
    fake_anthropic.handler = script
    review = await run_review(review_ctx(), llm=claude(client))
    titles = {f.title for f in review.findings}
    assert "Imagined race in run" not in titles and "Doubtful name" in titles
    step = next(s for s in review.model_steps if s.name == "verification")
    assert step.rejected == 1 and step.checked >= 2 and step.cost_usd > 0
    assert script.calls.count("verify") == step.checked
    assert any("1 rejected" in n for n in review.notes)
    assert [s.name for s in review.trace][-2:] == ["verification", "assessment"]


async def test_adaptive_mode_escalates_only_when_something_needs_checking(
    fake_anthropic: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    ctx = context_from({"README.md": "# Title\n\nSome words.\n"}, title="docs")
    script = CouncilScript()
    fake_anthropic.handler = script
    review = await run_review(ctx, mode="adaptive", llm=claude(client))
    assert "verify" not in script.calls
    assert [s.name for s in review.model_steps] == ["assessment"]
    skipped = {a.agent for a in review.agents if a.status == "skipped"}
    assert "performance" in skipped and all(p not in skipped for p in script.calls)


async def test_sequential_specialists_see_earlier_reviewers_findings_as_evidence(
    fake_anthropic: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    title = "Unvalidated command reaches the shell"
    script = CouncilScript(findings={"security": [finding("app.py", 5, "major", title=title)]})
    fake_anthropic.handler = script
    await run_review(review_ctx(), mode="sequential", llm=claude(client))
    tasks = {
        p: r.body["messages"][0]["content"][1]["text"]  # type: ignore[index]
        for p, r in specialist_requests(fake_anthropic.messages_requests).items()
    }
    assert title not in tasks["security"]
    assert all(title in tasks[p] for p in ("style", "performance", "test-coverage"))


async def test_synthesis_is_not_attempted_when_no_specialist_reached_the_model(
    fake_anthropic: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake_anthropic.default = Error(529, "overloaded_error")
    review = await run_review(review_ctx(), llm=claude(client))
    purposes = {purpose_of(r) for r in fake_anthropic.messages_requests}
    assert purposes == {"security", "style", "performance", "test-coverage"}
    assert review.model_steps == ()
    assert all(a.error == "model pass unavailable: the API is overloaded" for a in review.agents)


async def test_rate_limited_model_degrades_to_analyzer_findings_in_one_line(
    fake_anthropic: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake_anthropic.default = Error(429, "rate_limit_error", headers={"retry-after": "2"})
    offline = await run_review(review_ctx())
    review = await run_review(review_ctx(), llm=claude(client))
    assert {f.fingerprint for f in review.findings} == {f.fingerprint for f in offline.findings}
    assert all(a.model == "unavailable" for a in review.agents)
    assert all(a.error == "model pass unavailable: rate limited" for a in review.agents)
    visible = render_markdown(review).split("🔎 Trace")[0]  # the trace table lists each agent
    assert visible.count("model pass unavailable: rate limited") == 1
    assert "analyzer findings only from security, style, performance and test-coverage" in visible


async def test_a_bad_api_key_is_tried_once_and_reported_once(
    fake_anthropic: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake_anthropic.api_key = "sk-ant-another-key"
    review = await run_review(review_ctx(), llm=claude(client))
    assert len(fake_anthropic.messages_requests) == 1
    assert fake_anthropic.messages_requests[0].status == 401
    visible = render_markdown(review).split("🔎 Trace")[0]
    assert visible.count("API key was rejected") == 1
    assert "assessment" not in " ".join(review.notes)
    fake_anthropic.requests.clear()  # the 401 was the point of this test


async def test_budget_refuses_calls_it_cannot_cover_without_calling(
    fake_anthropic: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    review = await run_review(
        review_ctx(), llm=claude(client), limits=Limits(max_tokens=None, max_cost_usd=0.001)
    )
    assert fake_anthropic.messages_requests == []
    assert all(
        a.error == "model pass unavailable: over the review's token or cost budget"
        for a in review.agents
    )
    assert any(n.startswith("model budget: $0.0000 of $0.00") for n in review.notes)


async def test_a_diff_over_the_token_budget_names_what_the_model_did_not_see(
    fake_anthropic: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    big = "".join(f"value_{i} = {i}\n" for i in range(40_000))
    ctx = context_from({"app.py": APP, "data/big.py": big}, title="t")
    fake_anthropic.handler = CouncilScript()
    review = await run_review(
        ctx, llm=claude(client), limits=Limits(max_tokens=200_000, max_cost_usd=None)
    )
    left_out = [s for s in review.skipped if s.by == "llm"]
    assert [s.path for s in left_out] == ["data/big.py"]
    shared = fake_anthropic.messages_requests[0].body["messages"][0]["content"][0]["text"]  # type: ignore[index]
    assert "value_39999" not in shared and "subprocess.call" in shared
    assert "data/big.py" in render_markdown(review)


async def test_model_text_is_sanitised_before_it_can_be_posted(
    fake_anthropic: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    token = "ghp_" + "a1B2c3D4e5" * 4
    fake_anthropic.handler = CouncilScript(
        findings={
            "security": [
                finding(
                    "app.py",
                    5,
                    title="Leaks @octocat's token",
                    body=f"The token {token} is exposed. <!-- pr-council:summary -->",
                    suggestion=f'    return subprocess.call(["{token}"])',
                )
            ]
        },
        assessment=f"cc @maintainers, token {token}",
    )
    review = await run_review(review_ctx(), llm=claude(client))
    out = render_markdown(review) + render_json(review)
    assert token not in out and "[redacted]" in out
    leaked = next(f for f in review.findings if f.source == SOURCE)
    assert leaked.suggestion is None
    markdown = render_markdown(review)
    assert "@octocat" not in markdown and "@maintainers" not in markdown
    assert markdown.count("<!-- pr-council:summary") <= 1


async def test_requests_carry_the_pr_only_inside_untrusted_fences(
    fake_anthropic: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake_anthropic.handler = CouncilScript()
    ctx = review_ctx()
    await run_review(ctx, llm=claude(client))
    for record in fake_anthropic.messages_requests:
        assert "Add runner" not in record.system_text
        if purpose_of(record) in ("verify", "assess"):
            continue
        assert record.system_text == RULES
        shared = record.body["messages"][0]["content"][0]["text"]  # type: ignore[index]
        assert shared.startswith("<untrusted-title code=")
