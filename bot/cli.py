"""The `pr-council` console script (DESIGN.md §8)."""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal, get_args

import anyio

from agents.diff import DiffError, new_file_texts, parse_diff
from agents.llm import AnthropicLLM, anthropic_llm
from agents.model import Mode, Review, at_least
from agents.render import render_json, render_markdown, render_sarif
from bot import local
from bot.config import (
    REPO_CONFIG_PATH,
    ConfigError,
    FailOn,
    RepoConfig,
    Settings,
    load_repo_config,
    parse_repo_config,
)
from bot.pipeline import Change, SourceTree, build_context, run_review
from bot.progress import progress_display
from bot.trace import render_trace

Format = Literal["markdown", "json", "sarif"]
_PR_URL = re.compile(r"^https?://[^/]+/[^/]+/[^/]+/pull/\d+/?$")


class UsageError(ValueError):
    """Bad input from the user: exit 2 with a one-line message."""


def build_parser() -> argparse.ArgumentParser:
    """Define the command line exactly as DESIGN.md §8 documents it."""
    parser = argparse.ArgumentParser(
        prog="pr-council", description="Council-of-specialists PR review."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    review = sub.add_parser("review", help="review a local git range, a diff file or a PR URL")
    review.add_argument("target", nargs="?", default=".", help="REPO_DIR (default .) or a PR URL")
    review.add_argument(
        "--base", help="base revision (default: merge-base with the default branch)"
    )
    review.add_argument("--head", default="HEAD", help="head revision (default HEAD)")
    review.add_argument("--diff", metavar="FILE|-", help="review this unified diff instead")
    review.add_argument("--format", choices=get_args(Format), default="markdown")
    review.add_argument("--output", metavar="FILE", help="write the review here instead of stdout")
    review.add_argument("--mode", choices=get_args(Mode), default="parallel")
    review.add_argument("--offline", action="store_true", help="never call an LLM")
    review.add_argument(
        "--config", metavar="FILE", help=f"use this file instead of {REPO_CONFIG_PATH}"
    )
    review.add_argument("--fail-on", choices=get_args(FailOn), help="exit 1 at this severity")
    review.add_argument("--trace", metavar="FILE", help="write the trace as JSON")
    review.add_argument("--coverage", metavar="FILE", help="Cobertura XML or LCOV report")
    review.add_argument("--post", action="store_true", help="publish the review (PR URLs only)")
    for name, text in (
        ("serve", "run the GitHub App webhook receiver"),
        ("worker", "run a queue worker (procrastinate backend)"),
        ("action", "run inside GitHub Actions"),
    ):
        sub.add_parser(name, help=text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the console script; return the exit code."""
    args = build_parser().parse_args(argv)
    # Parsing reviewed code (ast) warns about *its* invalid escapes; that is not ours to print.
    warnings.filterwarnings("ignore", category=SyntaxWarning)
    warnings.filterwarnings(
        "ignore", message="invalid escape sequence", category=DeprecationWarning
    )
    try:
        if args.command == "review":
            return review_command(args, Settings.from_env())
        raise UsageError(f"'pr-council {args.command}' is not available in this version yet")
    except (UsageError, ConfigError, DiffError, local.GitError, OSError) as exc:
        return _fail(str(exc))
    except Exception as exc:  # never a traceback for the user; say what broke in one line
        return _fail(f"internal error: {type(exc).__name__}: {exc}")


def _fail(message: str) -> int:
    """Print a one-line error and return the bad-input exit code."""
    print(f"pr-council: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def review_command(args: argparse.Namespace, settings: Settings) -> int:
    """Review a local change and print or write it."""
    if _PR_URL.match(args.target):
        raise UsageError(
            "reviewing a pull request URL needs the GitHub integration (not in this version)"
        )
    if args.post:
        raise UsageError("--post applies to pull request URLs only")
    job = _local_job(args)
    ctx = build_context(job.change, job.tree, job.config)
    llm = _llm(args, settings)
    price = llm.dearest if llm is not None else None
    run = partial(run_review, ctx, mode=args.mode, llm=llm, limits=settings.limits, price=price)
    with progress_display(sys.stderr) as hook:
        review = anyio.run(partial(run, progress=hook))
    if llm is None:
        review = review.model_copy(update={"notes": (*review.notes, _model_note(args))})
    _emit(_render(review, args.format), args.output)
    if args.trace:
        Path(args.trace).write_text(render_trace(review), encoding="utf-8")
    return exit_code(review, args.fail_on or job.config.fail_on or "never")


def _llm(args: argparse.Namespace, settings: Settings) -> AnthropicLLM | None:
    """Build the model client unless offline or without a key."""
    if args.offline or settings.anthropic_api_key is None:
        return None
    return anthropic_llm(
        api_key=settings.anthropic_api_key.get_secret_value(),
        model=settings.model,
        fallbacks=settings.fallback_models,
        base_url=settings.anthropic_base_url,
        prices=settings.prices,
    )


def _model_note(args: argparse.Namespace) -> str:
    """Say plainly why no model took part."""
    if args.offline:
        return "analyzers only: --offline"
    return "analyzers only: no ANTHROPIC_API_KEY set"


def exit_code(review: Review, fail_on: FailOn) -> int:
    """Return 1 when a finding is at or above `fail_on`, else 0."""
    if fail_on == "never":
        return 0
    return int(any(at_least(f.severity, fail_on) for f in review.findings))


def _render(review: Review, fmt: Format) -> str:
    """Render in the requested format."""
    if fmt == "json":
        return render_json(review)
    if fmt == "sarif":
        return render_sarif(review)
    return render_markdown(review)


def _emit(text: str, output: str | None) -> None:
    """Write to the output file, or stdout."""
    if output:
        Path(output).write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


@dataclass(frozen=True)
class _Job:
    """A local change ready for build_context."""

    change: Change
    tree: SourceTree
    config: RepoConfig


def _local_job(args: argparse.Namespace) -> _Job:
    """Resolve the CLI arguments into a change, a source tree and a config."""
    root = Path(args.target)
    coverage = _read_text(Path(args.coverage)) if args.coverage else None
    if args.diff is not None:
        return _diff_job(args, root, coverage)
    repo = local.toplevel(root)
    head = local.rev(repo, args.head)
    base = local.rev(repo, args.base) if args.base else local.default_base(repo, head)
    config = _config(args, lambda: local.GitTree(repo, base).read_many([REPO_CONFIG_PATH]))
    coverage = coverage or _config_coverage(config, repo)
    change = Change(
        target=f"{base[:12]}..{head[:12]}",
        diff=parse_diff(local.diff_text(repo, base, head)),
        coverage_report=coverage,
    )
    return _Job(change, local.GitTree(repo, head), config)


def _diff_job(args: argparse.Namespace, root: Path, coverage: str | None) -> _Job:
    """Build a job from a diff file (or stdin) and the files under REPO_DIR."""
    if not root.is_dir():
        raise UsageError(f"not a directory: {root}")
    if args.base or args.head != "HEAD":
        raise UsageError("--diff cannot be combined with --base or --head")
    raw = sys.stdin.buffer.read() if args.diff == "-" else _read_bytes(Path(args.diff))
    text = raw.decode("utf-8", errors="replace")
    diff = parse_diff(text)
    work = local.WorkTree(root)
    config = _config(args, lambda: work.read_many([REPO_CONFIG_PATH]))
    coverage = coverage or _config_coverage(config, root)
    name = "stdin" if args.diff == "-" else Path(args.diff).name
    tree = local.OverlayTree(work, new_file_texts(text))
    return _Job(Change(target=f"diff:{name}", diff=diff, coverage_report=coverage), tree, config)


def _config(args: argparse.Namespace, read_default: Callable[[], dict[str, bytes]]) -> RepoConfig:
    """Load --config, or the repository's own file from the base side, or defaults."""
    if args.config:
        return load_repo_config(Path(args.config))
    data = read_default().get(REPO_CONFIG_PATH)
    if data is None:
        return RepoConfig()
    return parse_repo_config(data.decode("utf-8", errors="replace"), REPO_CONFIG_PATH)


def _config_coverage(config: RepoConfig, root: Path) -> str | None:
    """Read the coverage report the config names, if it exists."""
    if config.coverage_file is None:
        return None
    path = root / config.coverage_file
    return _read_text(path) if path.is_file() else None


def _read_bytes(path: Path) -> bytes:
    """Read a file with a one-line error."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None


def _read_text(path: Path) -> str:
    """Read a text file with a one-line error."""
    return _read_bytes(path).decode("utf-8", errors="replace")


if __name__ == "__main__":
    sys.exit(main())
