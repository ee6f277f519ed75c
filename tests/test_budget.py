"""The per-review token and cost budget: reservations, priorities, what is left out."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from agents.budget import Limits, Meter, MeteredLLM, context_tokens
from agents.llm import LLMError, Price, Prompt, Usage
from agents.model_pass import ModelReview
from agents.prompts import ROLES
from agents.verify import Assessment, Verdict
from bot.pipeline import run_review
from tests.fakes.function_llm import FunctionLLM
from tests.helpers import context_from

pytestmark = pytest.mark.anyio

SONNET = Price(input=3.0, output=15.0)
CODE = "import subprocess\n\n\ndef run(cmd):\n    return subprocess.call(cmd, shell=True)\n"


def council_answer(prompt: Prompt, output: type[BaseModel]) -> BaseModel:
    """A critical security finding, verdicts that keep, a one-line assessment."""
    if output is Verdict:
        return Verdict(keep=True)
    if output is Assessment:
        return Assessment(text="One critical problem.")
    if prompt.task.startswith(ROLES["security"]):
        found = {"path": "app.py", "line": 5, "severity": "critical", "confidence": 0.9}
        return ModelReview.model_validate({"findings": [{**found, "title": "Shell injection"}]})
    return ModelReview()


def test_meter_refuses_what_it_cannot_cover_and_books_what_was_used() -> None:
    meter = Meter(Limits(max_tokens=10_000, max_cost_usd=None), SONNET)
    prompt = Prompt(rules="r" * 400, shared="s" * 4_000, task="t" * 400, max_tokens=1_000)
    tokens, cost = meter.worst_case(prompt)
    assert tokens == (400 + 4_000 + 400) // 4 + 600 + 1_000
    assert cost == pytest.approx(SONNET.cost(Usage(cache_write_tokens=1_800, output_tokens=1_000)))
    held = [meter.reserve(prompt) for _ in range(3)]
    with pytest.raises(LLMError) as refused:
        meter.reserve(prompt)
    assert refused.value.kind == "budget" and not refused.value.transient
    meter.settle(held[0], Usage(input_tokens=500, output_tokens=100), 0.003)
    assert meter.tokens == 600 and meter.cost_usd == pytest.approx(0.003)
    meter.reserve(prompt)  # the settled call freed its reservation
    assert meter.refused == 1


def test_cost_limit_is_enforced_like_the_token_limit() -> None:
    meter = Meter(Limits(max_tokens=None, max_cost_usd=0.01), SONNET)
    with pytest.raises(LLMError, match="cost budget"):
        meter.reserve(Prompt(rules="", shared="x" * 40_000, task="", max_tokens=100))


def test_context_share_leaves_room_for_synthesis() -> None:
    assert context_tokens(Limits(None, None), 4, 60_000, SONNET) == 60_000
    share = context_tokens(Limits(max_tokens=200_000, max_cost_usd=None), 4, 60_000, SONNET)
    assert share == 200_000 * 8 // 10 // 4 - 5_000
    assert context_tokens(Limits(max_tokens=1_000, max_cost_usd=None), 4, 60_000, SONNET) == 0
    by_cost = context_tokens(Limits(max_tokens=None, max_cost_usd=0.5), 4, 60_000, SONNET)
    assert 0 < by_cost < 60_000


async def test_metered_llm_books_failed_calls_and_stops_after_a_fatal_one() -> None:
    calls: list[str] = []

    def answer(prompt: Prompt, output: type[BaseModel]) -> BaseModel | LLMError:
        calls.append(prompt.purpose)
        error = LLMError("auth", "HTTP 401: invalid x-api-key", Usage(input_tokens=10))
        error.cost_usd = 0.5
        return error

    meter = Meter(Limits(), SONNET)
    llm = MeteredLLM(FunctionLLM(answer), meter)
    for _ in range(3):
        with pytest.raises(LLMError) as failed:
            await llm.ask(Prompt(rules="r", shared="s", task="t"), Verdict)
        assert failed.value.kind == "auth"
    assert calls == ["review"] and meter.cost_usd == 0.5 and meter.tokens == 10


async def test_specialists_come_first_and_verification_is_dropped_when_short() -> None:
    def bill(prompt: Prompt) -> Usage:
        # Specialists answer at length, so the fan-out spends nearly all of the budget.
        return Usage(input_tokens=9_800 if prompt.purpose == "review" else 300)

    llm = FunctionLLM(council_answer, bill=bill)
    limits = Limits(max_tokens=40_000, max_cost_usd=None)
    review = await run_review(context_from({"app.py": CODE}), llm=llm, limits=limits)
    assert llm.purposes().count("review") == 4
    assert "verify" not in llm.purposes() and "assess" not in llm.purposes()
    assert "Shell injection" in {f.title for f in review.findings}
    assert any("left unverified (over the review's budget)" in n for n in review.notes)
    assert any("assessment: skipped (over the review's budget)" in n for n in review.notes)
    assert any(n.startswith("model budget: ") and "39,200 of 40,000" in n for n in review.notes)


async def test_with_room_verification_and_assessment_run_and_are_costed() -> None:
    llm = FunctionLLM(council_answer)
    review = await run_review(context_from({"app.py": CODE}), llm=llm)
    assert llm.purposes().count("verify") >= 1 and llm.purposes()[-1] == "assess"
    assert [s.name for s in review.model_steps] == ["verification", "assessment"]
    synthesis = sum(s.cost_usd for s in review.model_steps)
    assert review.synthesis_cost_usd == pytest.approx(synthesis) and synthesis > 0
    assert review.cost_usd == pytest.approx(sum(a.cost_usd for a in review.agents) + synthesis)
    assert review.assessment == "One critical problem."
