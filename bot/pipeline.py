"""The one path every entry point shares: snapshot -> ReviewContext -> council -> Review."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Protocol

from agents.analyzers.test_map import is_test_file, is_test_path
from agents.budget import Limits, Meter, MeteredLLM, context_tokens
from agents.council import default_council
from agents.llm import DEFAULT_MODEL, DEFAULT_PRICES, LLM, Price
from agents.model import ChangedFile, Diff, Mode, PreviousFinding, Review, ReviewContext, Skipped
from agents.model_pass import ClaudePass
from agents.orchestrator import ProgressHook, convene
from agents.specialist import is_ignored
from bot.config import RepoConfig

MAX_FILE_BYTES = 1_000_000
MAX_TEST_SOURCES = 2_000
# Diff tokens one specialist's model pass may read (before the review's own limits).
SPECIALIST_TOKENS = 60_000
TOOL_CONFIGS = frozenset({"pyproject.toml", "ruff.toml", ".ruff.toml"})


class SourceTree(Protocol):
    """Where file contents at head come from (a git revision, a work tree, the API)."""

    def paths(self) -> list[str]:
        """List every file path."""
        ...

    def read_many(self, paths: Iterable[str]) -> dict[str, bytes]:
        """Read these files; missing ones are absent from the result."""
        ...


@dataclass(frozen=True)
class Change:
    """A change to review, before any file is read."""

    target: str
    diff: Diff
    title: str = ""
    body: str = ""
    coverage_report: str | None = None
    previous: tuple[PreviousFinding, ...] = ()


def build_context(change: Change, tree: SourceTree, config: RepoConfig) -> ReviewContext:
    """Read what the council needs from `tree` and say what was left out."""
    options = config.options()
    wanted, skipped = select_files(change.diff.files, options.ignore, config.max_files)
    files, unreadable = decode_all(tree.read_many(wanted), wanted)
    repo_files = tuple(tree.paths())
    return ReviewContext(
        target=change.target,
        title=change.title,
        body=change.body,
        diff=change.diff,
        files=files,
        repo_files=repo_files,
        test_sources=_test_sources(tree, repo_files),
        config_files=_texts(tree, [p for p in repo_files if PurePosixPath(p).name in TOOL_CONFIGS]),
        coverage_report=change.coverage_report,
        options=options,
        previous=change.previous,
        skipped=tuple(skipped + unreadable),
    )


def select_files(
    changed: Sequence[ChangedFile], ignore: Sequence[str], max_files: int
) -> tuple[list[str], list[Skipped]]:
    """Choose the files to read, most-changed first, and record the rest with a reason."""
    wanted: list[str] = []
    skipped: list[Skipped] = []
    for f in sorted(changed, key=lambda f: -len(f.added)):
        reason = _skip_reason(f, ignore)
        if reason is None and len(wanted) >= max_files:
            reason = f"over the {max_files}-file limit of one review"
        if reason is None:
            wanted.append(f.path)
        elif reason:
            skipped.append(Skipped(path=f.path, reason=reason))
    return wanted, skipped


def _skip_reason(f: ChangedFile, ignore: Sequence[str]) -> str | None:
    """Say why a changed file is not read; '' means silently (deleted files)."""
    if f.status == "deleted":
        return ""
    if f.binary:
        return "binary file"
    if not f.has_patch:
        return "no patch available (binary or too large)"
    if is_ignored(f.path, ignore):
        return "ignored (lock, vendored or generated file, or an ignore pattern)"
    return None


def decode_all(
    blobs: dict[str, bytes], wanted: Sequence[str]
) -> tuple[dict[str, str], list[Skipped]]:
    """Decode file contents as UTF-8 text; say which could not be."""
    files: dict[str, str] = {}
    skipped: list[Skipped] = []
    for path in wanted:
        data = blobs.get(path)
        reason = _undecodable(data)
        if reason:
            skipped.append(Skipped(path=path, reason=reason))
        elif data is not None:
            files[path] = data.decode("utf-8-sig")
    return files, skipped


def _undecodable(data: bytes | None) -> str | None:
    """Say why these bytes are not reviewable text, or None when they are."""
    if data is None:
        return "content not found at head"
    if len(data) > MAX_FILE_BYTES:
        return f"larger than {MAX_FILE_BYTES // 1_000_000} MB"
    if b"\0" in data[:8192]:
        return "binary content"
    try:
        data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return "not UTF-8 text"
    return None


def _test_sources(tree: SourceTree, repo_files: Sequence[str]) -> dict[str, str]:
    """Read the repository's test files (bounded), dropping test-named non-tests."""
    candidates = [p for p in repo_files if is_test_path(p)][:MAX_TEST_SOURCES]
    return {p: t for p, t in _texts(tree, candidates).items() if is_test_file(p, t)}


def _texts(tree: SourceTree, paths: Sequence[str]) -> dict[str, str]:
    """Read small UTF-8 text files, dropping anything else."""
    texts, _ = decode_all(tree.read_many(paths), paths)
    return texts


async def run_review(
    ctx: ReviewContext,
    *,
    mode: Mode = "parallel",
    progress: ProgressHook | None = None,
    llm: LLM | None = None,
    limits: Limits | None = None,
    price: Price | None = None,
) -> Review:
    """Convene the default council on a context, with a model pass when `llm` is given.

    Every model call of the review draws on one meter, so the token and cost limits
    hold for the whole review; `price` should be the dearest configured model's.
    """
    if llm is None:
        return await convene(ctx, default_council(None), mode=mode, progress=progress)
    limits = limits or Limits()
    price = price or DEFAULT_PRICES[DEFAULT_MODEL]
    meter = Meter(limits, price)
    metered = MeteredLLM(llm, meter)
    share = context_tokens(limits, len(ctx.options.specialists), SPECIALIST_TOKENS, price)
    council = default_council(ClaudePass(metered, max_context_tokens=share))
    review = await convene(ctx, council, mode=mode, progress=progress, llm=metered)
    return review.model_copy(update={"notes": (*review.notes, _spend_note(meter))})


def _spend_note(meter: Meter) -> str:
    """Say what the review's model calls spent against its limits."""
    limits = meter.limits
    cost = f"${meter.cost_usd:.4f}" + (
        f" of ${limits.max_cost_usd:.2f}" if limits.max_cost_usd is not None else ""
    )
    tokens = f"{meter.tokens:,}" + (
        f" of {limits.max_tokens:,}" if limits.max_tokens is not None else ""
    )
    refused = f"; {meter.refused} calls refused by the budget" if meter.refused else ""
    return f"model budget: {cost}, {tokens} tokens{refused}"
