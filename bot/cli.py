"""The `pr-council` console script (DESIGN.md §8)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal, get_args

import anyio
from githubkit.exception import GitHubException

from agents.diff import DiffError, new_file_texts, parse_diff
from agents.llm import AnthropicLLM, anthropic_llm
from agents.model import Mode, Review, at_least
from agents.orchestrator import ProgressHook
from agents.render import render_json, render_markdown, render_sarif
from bot import local
from bot.action import ActionError, action_command
from bot.config import (
    REPO_CONFIG_PATH,
    ActionEnv,
    ConfigError,
    FailOn,
    RepoConfig,
    Settings,
    load_repo_config,
    parse_repo_config,
)
from bot.github.client import PullRef, describe, token_client, token_identity
from bot.github.publish import Publisher
from bot.github.snapshot import fetch_snapshot
from bot.pipeline import Change, SourceTree, build_context, run_review
from bot.progress import progress_display
from bot.runner import review_snapshot
from bot.trace import render_trace

Format = Literal["markdown", "json", "sarif"]


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
    serve = sub.add_parser("serve", help="run the GitHub App webhook receiver")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    _worker_parser(sub.add_parser("worker", help="run a queue worker (procrastinate backend)"))
    db = sub.add_parser("db", help="manage the PostgreSQL database of scale-out")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("migrate", help="apply the schema (once; safe to run again)")
    sub.add_parser("action", help="run inside GitHub Actions (see action.yml)")
    return parser


def _worker_parser(worker: argparse.ArgumentParser) -> None:
    """Define `pr-council worker`'s options (docs/scale-out.md)."""
    add = worker.add_argument
    add("--concurrency", type=_positive(int), default=2, metavar="N",
        help="reviews this process runs at once (default 2)")  # fmt: skip
    add("--grace-period", type=_positive(float), default=60.0, metavar="S",
        help="on SIGTERM, let running reviews finish this long, then put them back (default 60)")  # fmt: skip
    add("--heartbeat", type=_positive(float), default=10.0, metavar="S",
        help="seconds between this worker's heartbeats (default 10)")  # fmt: skip
    add("--stalled-after", type=_positive(float), default=60.0, metavar="S",
        help="requeue jobs of workers silent this long (default 60)")  # fmt: skip
    add("--poll", type=_positive(float), default=1.0, metavar="S",
        help="fallback polling interval; LISTEN/NOTIFY wakes workers at once (default 1)")  # fmt: skip
    add("--write-interval", type=float, default=1.0, metavar="S",
        help="seconds between content-creating requests per installation, all workers together"
             " (default 1, GitHub's advice; lower it only against a test server)")  # fmt: skip


def _positive(kind: type[float]) -> Callable[[str], float]:
    """Parse a positive number for argparse."""

    def parse(text: str) -> float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


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
        if args.command == "serve":
            return serve_command(args, Settings.from_env())
        if args.command == "action":
            return _action(Settings.from_env())
        if args.command == "worker":
            return worker_command(args, Settings.from_env())
        if args.command == "db":
            return db_command(Settings.from_env())
        raise UsageError(f"'pr-council {args.command}' is not available in this version yet")
    except (UsageError, ConfigError, DiffError, local.GitError, ActionError, OSError) as exc:
        return _fail(str(exc))
    except Exception as exc:  # never a traceback for the user; say what broke in one line
        return _fail(f"internal error: {type(exc).__name__}: {exc}")


def _fail(message: str) -> int:
    """Print a one-line error and return the bad-input exit code."""
    print(f"pr-council: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def review_command(args: argparse.Namespace, settings: Settings) -> int:
    """Review a local change and print or write it."""
    ref = PullRef.from_url(args.target)
    if ref is not None:
        return pull_command(args, settings, ref)
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


def pull_command(args: argparse.Namespace, settings: Settings, ref: PullRef) -> int:
    """Review a live pull request through the API; publish it only with --post."""
    if settings.github_token is None:
        raise UsageError("reviewing a pull request URL needs GITHUB_TOKEN (and GITHUB_API_URL)")
    if args.diff is not None or args.base or args.head != "HEAD":
        raise UsageError("--diff, --base and --head apply to local repositories, not PR URLs")
    run = partial(_review_pull, args, settings, ref, _llm(args, settings))
    try:
        with progress_display(sys.stderr) as hook:
            review, fail_on, posted = anyio.run(partial(run, hook))
    except GitHubException as exc:
        raise UsageError(describe(exc)) from None
    _emit(_render(review, args.format), args.output)
    if args.trace:
        Path(args.trace).write_text(render_trace(review), encoding="utf-8")
    if posted:
        print(f"pr-council: posted {posted}", file=sys.stderr)
    return exit_code(review, args.fail_on or fail_on or "never")


async def _review_pull(
    args: argparse.Namespace,
    settings: Settings,
    ref: PullRef,
    llm: AnthropicLLM | None,
    hook: ProgressHook,
) -> tuple[Review, FailOn | None, str | None]:
    """Fetch, review and (with --post) publish; return the review and where it went."""
    assert settings.github_token is not None
    async with token_client(
        settings.github_token.get_secret_value(), settings.github_api_url
    ) as gh:
        snap = await fetch_snapshot(gh, ref, await token_identity(gh))
        if args.config:
            snap = dataclasses.replace(snap, config=load_repo_config(Path(args.config)))
        note = _model_note(args)
        review = await review_snapshot(
            snap, settings, mode=args.mode, llm=llm, progress=hook, model_note=note
        )
        if not args.post:
            return review, snap.config.fail_on, None
        fail_on = snap.config.fail_on or "never"
        published = await Publisher(gh).publish(snap, review, fail_on, quiet=snap.config.quiet)
        for note in published.notes:
            print(f"pr-council: {note}", file=sys.stderr)
        return review, snap.config.fail_on, published.summary_url or "nothing (quiet)"


def _action(settings: Settings) -> int:
    """Run as a GitHub Action step."""
    llm = None
    if settings.anthropic_api_key is not None:
        llm = anthropic_llm(
            api_key=settings.anthropic_api_key.get_secret_value(),
            model=settings.model,
            fallbacks=settings.fallback_models,
            base_url=settings.anthropic_base_url,
            prices=settings.prices,
        )
    return action_command(settings, ActionEnv.from_env(), llm)


def serve_command(args: argparse.Namespace, settings: Settings) -> int:
    """Run the webhook receiver and the review workers until interrupted."""
    import uvicorn  # only the server needs it

    from bot.serve import build_app, fetch_slug

    if settings.webhook_secret is None:
        raise UsageError("pr-council serve needs PR_COUNCIL_WEBHOOK_SECRET")
    _check_database(settings, required=False)
    try:
        slug = anyio.run(fetch_slug, settings)
    except GitHubException as exc:
        raise UsageError(f"cannot authenticate as the GitHub App: {describe(exc)}") from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Our own line per delivery says more than uvicorn's access log; one is enough.
    app = build_app(settings, slug)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=False)
    return 0


def worker_command(args: argparse.Namespace, settings: Settings) -> int:
    """Review jobs from PostgreSQL until SIGTERM, then stop within the grace period."""
    from bot.pgqueue import WorkerOptions
    from bot.serve import fetch_slug, run_worker

    _check_database(settings, required=True)
    if settings.app_id is None or settings.private_key is None:
        raise UsageError("pr-council worker needs PR_COUNCIL_APP_ID and PR_COUNCIL_PRIVATE_KEY")
    try:
        anyio.run(fetch_slug, settings)
    except GitHubException as exc:
        raise UsageError(f"cannot authenticate as the GitHub App: {describe(exc)}") from None
    options = WorkerOptions(
        concurrency=int(args.concurrency),
        poll_s=args.poll,
        grace_s=args.grace_period,
        heartbeat_s=args.heartbeat,
        stalled_s=args.stalled_after,
        write_interval_s=max(0.0, args.write_interval),
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    anyio.run(run_worker, settings, options)
    return 0


def db_command(settings: Settings) -> int:
    """Apply the scale-out schema: procrastinate's once, then ours (idempotent)."""
    from bot.pgstate import is_postgres, migrate

    url = settings.database_url
    if not is_postgres(url):
        raise UsageError("pr-council db migrate needs PR_COUNCIL_DATABASE_URL=postgresql://...")
    fresh = _connect(migrate, url)
    print("pr-council: schema " + ("applied" if fresh else "already applied; up to date"))
    return 0


def _check_database(settings: Settings, *, required: bool) -> None:
    """Refuse a scale-out start on a database that is not set, not reachable or not migrated."""
    from bot.pgstate import is_postgres, schema_ready

    url = settings.database_url
    if not is_postgres(url):
        if required:
            raise UsageError(
                "pr-council worker needs PR_COUNCIL_DATABASE_URL=postgresql://... "
                "(with the embedded queue, pr-council serve runs the reviews itself)"
            )
        return
    if not _connect(schema_ready, url):
        raise UsageError("the database has no pr-council schema: run `pr-council db migrate`")


def _connect(check: Callable[[str], Awaitable[bool]], url: str) -> bool:
    """Run a database call; a connection failure is a one-line error without the URL."""
    import psycopg

    try:
        return anyio.run(check, url)
    except psycopg.OperationalError as exc:
        # libpq's message names the host and port, never the password.
        reason = str(exc).strip() or type(exc).__name__
        raise UsageError(f"cannot use PR_COUNCIL_DATABASE_URL: {reason}") from None


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
