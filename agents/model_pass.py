"""The specialists' Claude pass: one shared cached prefix, validated findings, degradation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field

from agents.analyzers.base import make_finding
from agents.llm import LLM, LLMError, Prompt, Reply, Usage
from agents.model import AgentName, Finding, ReviewContext, Severity, Skipped
from agents.prompts import (
    CHARS_PER_TOKEN,
    RULES,
    SharedContext,
    quotes_instructions,
    shared_context,
    task,
)
from agents.redact import has_secret, redact

Warmup = Literal["leader", "none"]


class ModelFinding(BaseModel):
    """One finding as the model reports it (validated at the boundary)."""

    model_config = ConfigDict(extra="ignore")

    path: str
    line: int | None = Field(default=None, ge=1)
    end_line: int | None = Field(default=None, ge=1)
    severity: Severity
    confidence: float = Field(ge=0.0, le=1.0)
    title: str = Field(min_length=1, max_length=300)
    body: str = Field(default="", max_length=6000)
    suggestion: str | None = Field(default=None, max_length=6000)


class ModelReview(BaseModel):
    """The model's answer for one specialist."""

    findings: list[ModelFinding] = Field(default_factory=list, max_length=40)


@dataclass(frozen=True)
class PassResult:
    """Findings plus what they cost (specialist.ModelPassResult)."""

    findings: tuple[Finding, ...] = ()
    notes: tuple[str, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    error: str | None = None
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    source: str | None = None

    @property
    def input_tokens(self) -> int:
        """Return every prompt token, cached or not."""
        return self.usage.prompt_tokens

    @property
    def output_tokens(self) -> int:
        """Return the generated tokens."""
        return self.usage.output_tokens


@dataclass
class _Leader:
    """Lets one request write the prompt cache before the others read it."""

    claimed: bool = False
    ready: anyio.Event = field(default_factory=anyio.Event)


@dataclass
class ClaudePass:
    """One review's model pass, shared by its four specialists."""

    llm: LLM
    max_context_tokens: int = 60_000
    warmup: Warmup = "leader"
    # Shorter prefixes are not cached at all (docs: "Prompt caching", minimum cacheable
    # prompt length, 1,024 tokens for Sonnet and Opus): a warm-up would only delay.
    min_cacheable_tokens: int = 1024
    _shared: SharedContext | None = None
    _leader: _Leader = field(default_factory=_Leader)

    def context(self, ctx: ReviewContext) -> SharedContext:
        """Return the shared prefix, built once so every specialist sends the same bytes."""
        if self._shared is None:
            self._shared = shared_context(ctx, self.max_context_tokens)
        return self._shared

    async def review(
        self, agent: AgentName, ctx: ReviewContext, evidence: Sequence[Finding]
    ) -> PassResult:
        """Ask the model as `agent`; on failure, say why and keep the analyzer findings."""
        shared = self.context(ctx)
        prompt = Prompt(rules=RULES, shared=shared.text, task=task(agent, ctx, evidence))
        try:
            reply = await self._ask(prompt)
        except LLMError as exc:
            note = unavailable_note(exc)
            return PassResult(
                skipped=shared.left_out,
                error=note,
                usage=exc.usage,
                cost_usd=exc.cost_usd,
            )
        source = f"llm:{reply.model}"
        findings, dropped = validate(agent, ctx, reply.value, source)
        notes = (
            (f"{agent}: dropped {dropped} model findings not on reviewed lines",) if dropped else ()
        )
        return PassResult(
            findings,
            notes,
            shared.left_out,
            usage=reply.usage,
            cost_usd=reply.cost_usd,
            source=source,
        )

    async def _ask(self, prompt: Prompt) -> Reply[ModelReview]:
        """Send the first request alone until its prompt is cached, then the rest at once.

        Requests that arrive before the cache entry exists all miss and each pay the
        cache-write price (docs: "Prompt caching"); waiting for the leader's first
        streamed event costs one time-to-first-token and saves three writes.
        """
        leader = self._leader
        prefix_tokens = (len(prompt.rules) + len(prompt.shared)) // CHARS_PER_TOKEN
        if self.warmup == "none" or prefix_tokens < self.min_cacheable_tokens:
            return await self.llm.ask(prompt, ModelReview)
        if leader.claimed:
            await leader.ready.wait()
            return await self.llm.ask(prompt, ModelReview)
        leader.claimed = True
        try:
            return await self.llm.ask(prompt, ModelReview, on_prefix_cached=leader.ready.set)
        finally:
            leader.ready.set()  # a failed leader must not strand the others


def validate(
    agent: AgentName, ctx: ReviewContext, answer: ModelReview, source: str
) -> tuple[tuple[Finding, ...], int]:
    """Keep model findings on real lines of changed files; count the rest."""
    kept: list[Finding] = []
    for m in answer.findings:
        if not _grounded(m, ctx):
            continue
        kept.append(
            make_finding(
                ctx,
                agent=agent,
                severity=m.severity,
                confidence=m.confidence,
                path=m.path,
                line=m.line,
                end_line=m.end_line,
                title=redact(" ".join(m.title.split())),
                body=redact(m.body),
                # A suggestion is code to commit: one with a secret in it is dropped, not mangled.
                suggestion=None if m.suggestion and has_secret(m.suggestion) else m.suggestion,
                rule="llm",
                source=source,
            )
        )
    return tuple(kept), len(answer.findings) - len(kept)


def _grounded(m: ModelFinding, ctx: ReviewContext) -> bool:
    """Tell whether a model finding sits on a reviewed line of a changed file."""
    changed, text = ctx.diff.file(m.path), ctx.files.get(m.path)
    if changed is None or text is None:
        return False
    if m.line is not None and m.line > len(text.split("\n")):
        return False
    if m.end_line is not None and m.line is not None and m.end_line < m.line:
        return False
    # Reciting our rules is what an injected instruction asks for: never post it.
    if quotes_instructions(f"{m.title}\n{m.body}\n{m.suggestion or ''}"):
        return False
    return changed.in_scope(m.line, ctx.options.filter)


_REASONS = {
    "rate_limited": "rate limited",
    "overloaded": "the API is overloaded",
    "server_error": "the API returned server errors",
    "timeout": "timed out",
    "connection": "could not reach the API",
    "invalid_output": "the model's answers were not valid",
    "truncated": "the model's answers were cut off",
    "refused": "the model declined",
    "auth": "the API key was rejected (check ANTHROPIC_API_KEY)",
    "not_found": "the configured model is not available",
    "bad_request": "the API rejected the request",
    "billing": "the API account's credit or spend limit is exhausted",
    "budget": "over the review's token or cost budget",
}


def unavailable_note(exc: LLMError) -> str:
    """Say in one line why the model pass is missing (same text for every specialist)."""
    return f"model pass unavailable: {_REASONS[exc.kind]}"
