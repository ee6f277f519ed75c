"""A specialist: its analyzers in worker threads, the diff filter, an optional model pass."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import anyio
import anyio.to_thread

from agents.analyzers.base import Analyzer
from agents.analyzers.gate import gated, spawns_process
from agents.model import (
    AgentName,
    AgentReport,
    AnalyzerResult,
    Finding,
    ReviewContext,
    Skipped,
)


class ModelPassResult(Protocol):
    """What a model pass hands back: findings plus what they cost."""

    @property
    def findings(self) -> tuple[Finding, ...]:
        """Return the model's validated findings."""
        ...

    @property
    def notes(self) -> tuple[str, ...]:
        """Return one-line notes for the summary."""
        ...

    @property
    def skipped(self) -> tuple[Skipped, ...]:
        """Return the parts the model was not shown."""
        ...

    @property
    def error(self) -> str | None:
        """Return why the pass is missing, if it is."""
        ...

    @property
    def input_tokens(self) -> int:
        """Return prompt tokens used."""
        ...

    @property
    def output_tokens(self) -> int:
        """Return output tokens used."""
        ...

    @property
    def cost_usd(self) -> float:
        """Return the pass's cost."""
        ...

    @property
    def source(self) -> str | None:
        """Return the model's provenance tag (`llm:<model>`) when the pass ran."""
        ...


class ModelPass(Protocol):
    """The seam where an LLM reviewer plugs in: reads the change plus analyzer evidence."""

    async def review(
        self, agent: AgentName, ctx: ReviewContext, evidence: Sequence[Finding]
    ) -> ModelPassResult:
        """Review the change as `agent`, grounded in `evidence`."""
        ...


Relevance = Callable[[ReviewContext], str | None]


@dataclass(frozen=True)
class Specialist:
    """One council member: deterministic analyzers first, then an optional model pass."""

    name: AgentName
    analyzers: tuple[Analyzer, ...]
    # Returns why the specialist has nothing to look at in this change, or None.
    idle_reason: Relevance = field(default=lambda ctx: None)
    model_pass: ModelPass | None = None

    @property
    def tool_names(self) -> tuple[str, ...]:
        """Return the names of the analyzers that spawn a tool subprocess."""
        return tuple(a.name for a in self.analyzers if spawns_process(a))

    async def review(self, ctx: ReviewContext, prior: Sequence[Finding] = ()) -> AgentReport:
        """Run the analyzers concurrently, filter to the diff and return the report."""
        results = await _run_all(self.analyzers, ctx)
        findings = tuple(f for r in results for f in r.findings if _in_scope(f, ctx))
        notes = tuple(n for r in results for n in r.notes)
        report = AgentReport(
            agent=self.name,
            status="ok",
            findings=findings,
            skipped=tuple(s for r in results for s in r.skipped),
            notes=notes,
            tools=tuple(a.name for a in self.analyzers),
        )
        if self.model_pass is None:
            return report
        return await self._with_model(report, ctx, prior)

    async def _with_model(
        self, report: AgentReport, ctx: ReviewContext, prior: Sequence[Finding]
    ) -> AgentReport:
        """Add the model pass's findings and usage to the analyzer report.

        In sequential mode `prior` holds the earlier specialists' findings: the model
        sees them as evidence too, so it does not repeat them.
        """
        assert self.model_pass is not None
        extra = await self.model_pass.review(self.name, ctx, (*report.findings, *prior))
        return report.model_copy(
            update={
                "findings": report.findings + tuple(f for f in extra.findings if _in_scope(f, ctx)),
                "notes": report.notes + extra.notes,
                "skipped": report.skipped + extra.skipped,
                "input_tokens": extra.input_tokens,
                "output_tokens": extra.output_tokens,
                "cost_usd": extra.cost_usd,
                "error": extra.error,
                "model": "unavailable" if extra.error else "ok",
                "tools": report.tools + ((extra.source,) if extra.source else ()),
            }
        )


async def _run_all(analyzers: Sequence[Analyzer], ctx: ReviewContext) -> list[AnalyzerResult]:
    """Run blocking analyzers in worker threads at once; results in input order."""
    results: list[AnalyzerResult | None] = [None] * len(analyzers)

    async def one(i: int, analyzer: Analyzer) -> None:
        results[i] = await anyio.to_thread.run_sync(_guarded, analyzer, ctx, abandon_on_cancel=True)

    async with anyio.create_task_group() as tg:
        for i, analyzer in enumerate(analyzers):
            tg.start_soon(one, i, analyzer)
    return [r for r in results if r is not None]


def _guarded(analyzer: Analyzer, ctx: ReviewContext) -> AnalyzerResult:
    """Run one analyzer; a crash becomes a note, not a lost specialist."""
    try:
        with gated(analyzer.name, spawns_process(analyzer)):
            return analyzer.run(ctx)
    except Exception as exc:  # one tool's bug must not sink its siblings
        reason = f"{analyzer.name} failed: {type(exc).__name__}: {exc}"
        return AnalyzerResult(
            tool=analyzer.name,
            skipped=(Skipped(path="*", reason=reason, by=analyzer.name),),
            notes=(f"{reason}; its checks are missing from this review",),
        )


def _in_scope(finding: Finding, ctx: ReviewContext) -> bool:
    """Apply the diff filter and the ignore globs (reviewdog's `-filter-mode`)."""
    changed = ctx.diff.file(finding.path)
    if changed is None or is_ignored(finding.path, ctx.options.ignore):
        return False
    return changed.in_scope(finding.line, ctx.options.filter)


def is_ignored(path: str, globs: Sequence[str]) -> bool:
    """Tell whether `path` matches an ignore glob (`**/` also matches the top level)."""
    for pattern in globs:
        if fnmatch.fnmatchcase(path, pattern):
            return True
        if pattern.startswith("**/") and fnmatch.fnmatchcase(path, pattern[3:]):
            return True
    return False
