"""Synthesis with the model: verify doubtful or critical findings, then write an assessment."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import anyio
from pydantic import BaseModel, Field

from agents.llm import FATAL, LLM, LLMError, Prompt, Reply, Usage
from agents.model import Finding, Review, ReviewContext, Severity, count_by_severity
from agents.prompts import ASSESS_RULES, VERIFY_RULES, fenced, quotes_instructions
from agents.redact import redact

CONTEXT_LINES = 15
MAX_VERIFIED = 12


class Verdict(BaseModel):
    """The verifier's decision on one finding."""

    keep: bool
    severity: Severity | None = None
    reason: str = Field(default="", max_length=500)


class Assessment(BaseModel):
    """The chair's overall assessment."""

    text: str = Field(max_length=1200)


@dataclass(frozen=True)
class Outcome:
    """What model synthesis changed, and what it cost."""

    review: Review
    usage: Usage
    cost_usd: float
    checked: int = 0
    rejected: int = 0
    detail: str = ""


def needs_check(finding: Finding, threshold: float) -> bool:
    """Tell whether a model finding is critical or below the confidence threshold.

    Analyzer findings are never put to the model: a deterministic tool's result is
    evidence, and letting the model drop or downgrade it would let text planted in
    the pull request silence the tools.
    """
    if not model_only(finding):
        return False
    return finding.severity == "critical" or finding.confidence < threshold


def model_only(finding: Finding) -> bool:
    """Tell whether only the model (no analyzer) reported this finding."""
    return all(s.startswith("llm:") for s in (finding.source, *finding.also_found_by))


async def verify(ctx: ReviewContext, review: Review, llm: LLM, threshold: float) -> Outcome:
    """Re-check critical and low-confidence findings in parallel; drop the rejected ones."""
    picked = [f for f in review.findings if needs_check(f, threshold)][:MAX_VERIFIED]
    verdicts: list[Reply[Verdict] | LLMError | None] = [None] * len(picked)

    async def one(i: int, finding: Finding) -> None:
        try:
            verdicts[i] = await llm.ask(_verify_prompt(ctx, finding), Verdict)
        except LLMError as exc:
            verdicts[i] = exc  # unverified findings stay: losing the check is not a verdict

    async with anyio.create_task_group() as tg:
        for i, finding in enumerate(picked):
            tg.start_soon(one, i, finding)
    return _apply(review, picked, verdicts)


def _apply(
    review: Review, picked: Sequence[Finding], verdicts: Sequence[Reply[Verdict] | LLMError | None]
) -> Outcome:
    """Drop rejected findings, adjust severities, and note what verification did."""
    replies = [v for v in verdicts if isinstance(v, Reply)]
    failed = [v for v in verdicts if isinstance(v, LLMError)]
    decided = {
        f.fingerprint: v.value
        for f, v in zip(picked, verdicts, strict=True)
        if isinstance(v, Reply)
    }
    kept = [
        f.model_copy(update={"severity": decided[f.fingerprint].severity or f.severity})
        if f.fingerprint in decided
        else f
        for f in review.findings
        if f.fingerprint not in decided or decided[f.fingerprint].keep
    ]
    rejected = len(review.findings) - len(kept)
    detail = f"{len(decided)} of {len(picked)} findings re-checked, {rejected} rejected"
    notes = [f"verification: {detail}"] if picked else []
    if any(e.kind not in FATAL for e in failed):  # fatal ones are reported once, up top
        notes.append(f"verification: {len(failed)} findings left unverified ({_why(failed)})")
    usage = sum((v.usage for v in replies), Usage()) + sum((e.usage for e in failed), Usage())
    cost = sum(v.cost_usd for v in replies) + sum(e.cost_usd for e in failed)
    update = {"findings": tuple(kept), "notes": (*review.notes, *notes)}
    return Outcome(review.model_copy(update=update), usage, cost, len(decided), rejected, detail)


def _why(errors: Sequence[LLMError]) -> str:
    """Say in a few words why verification calls failed."""
    kinds = sorted({e.kind for e in errors})
    if kinds == ["budget"]:
        return "over the review's budget"
    return "model unavailable: " + ", ".join(k.replace("_", " ") for k in kinds)


def _verify_prompt(ctx: ReviewContext, finding: Finding) -> Prompt:
    """Show the verifier the code around the finding and the claim to check."""
    lines = ctx.files.get(finding.path, "").split("\n")
    at = finding.line or 1
    start = max(1, at - CONTEXT_LINES)
    window = lines[start - 1 : at + CONTEXT_LINES]
    code = "".join(f"{start + i:>5} {text}\n" for i, text in enumerate(window))
    claim = (
        f"Finding to verify, reported by the {finding.agent} reviewer via {finding.source}:\n"
        f"{finding.path}:{finding.line or '-'} [{finding.severity}] {finding.title}\n"
        f"{finding.body[:1500]}"
    )
    return Prompt(
        rules=VERIFY_RULES,
        shared=fenced("code", code),
        task=fenced("finding", claim),
        max_tokens=600,
        purpose="verify",
    )


async def assess(review: Review, llm: LLM) -> Outcome:
    """Ask for a short overall assessment; without one the review is still complete."""
    counts = ", ".join(f"{n} {s}" for s, n in count_by_severity(review.findings).items() if n)
    titles = "\n".join(
        f"- [{f.severity}] {f.path}:{f.line or '-'} {f.title}" for f in review.findings[:40]
    )
    prompt = Prompt(
        rules=ASSESS_RULES,
        shared=fenced("findings", titles or "no findings"),
        task=f"Counts: {counts or 'none'}. Write the assessment.",
        max_tokens=400,
        purpose="assess",
    )
    try:
        reply = await llm.ask(prompt, Assessment)
    except LLMError as exc:
        note = f"assessment: skipped ({_why([exc])})"
        notes = review.notes if exc.kind in FATAL else (*review.notes, note)
        update: dict[str, object] = {"notes": notes}
        return Outcome(review.model_copy(update=update), exc.usage, exc.cost_usd, detail=note)
    text = redact(" ".join(reply.value.text.split()))
    if quotes_instructions(text):
        text = ""  # an assessment that recites our instructions was steered by the PR
    update = {"assessment": text}
    return Outcome(review.model_copy(update=update), reply.usage, reply.cost_usd, detail="written")
