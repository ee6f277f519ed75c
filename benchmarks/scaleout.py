"""Scale-out: throughput of 1, 2 and 4 `pr-council worker` processes on PostgreSQL.

Each run gets a fresh database (`pr-council db migrate`), 200 small pull requests on the
fake GitHub (tests/fakes, in a thread of this process; each PR in its own repository and
installation) and N worker processes started as the console script, with production
settings: the PostgreSQL token cache and write pacing (1 s between an installation's
content-creating requests). Once every worker has registered, the 200 jobs are queued at
once, as a burst of webhooks would. The model is the fake Messages API at a FIXED latency
(every call answers after --latency s, 10 output tokens), so a review waits on I/O: the
model passes and the paced writes. Throughput = reviews / (last job end - first job
start), from procrastinate_events on the database's clock; ideal = N x the 1-worker
throughput; efficiency = throughput / ideal.

    .venv/bin/python benchmarks/scaleout.py [--workers 1,2,4 --reviews 200 --concurrency 2
        --latency 2.0 --database-url postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.fakes

import anyio
import psycopg
from common import machine, machine_line, table, write_json
from psycopg import sql

from bot.jobs import ReviewJob
from bot.pgqueue import ProcrastinateQueue
from bot.pgstate import Database, migrate
from tests.fakes.anthropic_api import FAKE_API_KEY, FakeAnthropic, LatencyModel, run_fake_anthropic
from tests.fakes.council import CouncilScript
from tests.fakes.github_api import FAKE_APP_ID, FakeGitHub, run_fake_github

MODEL = "claude-sonnet-5-5"
TARGET = 0.80
BASE = {"app/__init__.py": "", "README.md": "# shop\n"}
# One small, clean module per PR: the analyzers run (bandit, ruff...) and find nothing.
MODULE = '''def total(values: list[int]) -> int:
    """Add the values up."""
    result = 0
    for value in values:
        result += value
    return result
'''
CLI = Path(sys.executable).with_name("pr-council")


@dataclass(frozen=True)
class Run:
    """One batch of reviews through N workers."""

    workers: int
    concurrency: int
    reviews: int
    wall_s: float
    review_s: float  # mean time from a job's start to its end
    worker_cpu_s: float  # workers and their analyzer subprocesses, from the first job on
    harness_cpu_s: float  # this process: the fake GitHub and the fake model
    posted_once: bool

    @property
    def throughput(self) -> float:
        """Return reviews per second."""
        return self.reviews / self.wall_s

    @property
    def slot_use(self) -> float:
        """Return how busy the N x concurrency review slots were."""
        return self.reviews * self.review_s / (self.workers * self.concurrency * self.wall_s)


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """Create and migrate an empty database; drop it afterwards."""
    name = f"pr_council_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = urlsplit(admin_url)._replace(path=f"/{name}").geturl()
    try:
        anyio.run(migrate, url)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            admin.execute(drop.format(sql.Identifier(name)))


def add_pulls(fake: FakeGitHub, count: int) -> list[ReviewJob]:
    """Create `count` pull requests, each in its own repository and installation."""
    fake.reset()
    jobs = []
    for i in range(count):
        repo, sha, installation = f"repo{i}", f"{i + 1:040x}", 10_000 + i
        fake.add_repo("acme", repo, installation_id=installation)
        head = {**BASE, f"app/mod{i}.py": MODULE}
        fake.add_pull("acme", repo, 1, base_files=BASE, head_files=head, head_sha=sha)
        jobs.append(
            ReviewJob(owner="acme", repo=repo, number=1, head_sha=sha,
                      installation_id=installation, delivery_id=f"d{i}")
        )  # fmt: skip
    return jobs


def worker_env(url: str, github: FakeGitHub, model: FakeAnthropic, tmp: Path) -> dict[str, str]:
    """The environment of a worker: the database, the fake App and the fake model."""
    drop = ("ANTHROPIC_", "PR_COUNCIL_", "GITHUB_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return env | {
        "PR_COUNCIL_DATABASE_URL": url,
        "GITHUB_API_URL": github.base_url or "",
        "PR_COUNCIL_APP_ID": str(FAKE_APP_ID),
        "PR_COUNCIL_PRIVATE_KEY": github.private_key_pem,
        "PR_COUNCIL_STATE_DIR": str(tmp / "state"),
        "ANTHROPIC_API_KEY": FAKE_API_KEY,
        "ANTHROPIC_BASE_URL": model.base_url or "",
        "PR_COUNCIL_MODEL": MODEL,
    }


@contextmanager
def workers(
    count: int, concurrency: int, env: dict[str, str], tmp: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Run `count` worker processes; stop them with SIGTERM (SIGKILL if they linger)."""
    command = [str(CLI), "worker", "--concurrency", str(concurrency)]
    procs = []
    for i in range(count):
        with (tmp / f"worker-{i}.log").open("wb") as log:
            procs.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
    try:
        yield procs
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def scalar(url: str, query: str) -> float:
    """Return one number from the database."""
    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()  # type: ignore[arg-type]
    return float(row[0]) if row and row[0] is not None else 0.0


def wait_for(url: str, query: str, target: float, timeout_s: float) -> None:
    """Poll the database until `query` reaches `target`."""
    deadline = time.monotonic() + timeout_s
    while scalar(url, query) < target:
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for: {query}")
        time.sleep(0.2)


async def submit_all(url: str, jobs: Sequence[ReviewJob]) -> None:
    """Queue the jobs as the receivers would."""
    async with ProcrastinateQueue(Database(url)).opened() as queue:
        for job in jobs:
            assert await queue.submit(job) == "queued"


FINISHED = "SELECT count(*) FROM procrastinate_jobs WHERE status NOT IN ('todo', 'doing')"
WALL = (
    "SELECT extract(epoch FROM max(at) FILTER (WHERE type IN ('succeeded', 'failed', 'aborted'))"
    " - min(at) FILTER (WHERE type = 'started')) FROM procrastinate_events"
)
REVIEW = (
    "SELECT avg(extract(epoch FROM e.at - s.at)) FROM procrastinate_events s"
    " JOIN procrastinate_events e ON e.job_id = s.job_id AND e.type = 'succeeded'"
    " WHERE s.type = 'started'"
)
SUCCEEDED = "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded' AND attempts = 1"


def run(
    n: int, args: argparse.Namespace, github: FakeGitHub, model: FakeAnthropic, tmp: Path
) -> Run:
    """Review `args.reviews` PRs with `n` workers and measure."""
    jobs = add_pulls(github, args.reviews)
    model.reset()
    model.handler = CouncilScript(output_tokens=10)
    with fresh_database(args.database_url) as url:
        with workers(n, args.concurrency, worker_env(url, github, model, tmp), tmp) as procs:
            wait_for(url, "SELECT count(*) FROM procrastinate_workers", n, 120)
            before, harness = _cpu(procs), _own_cpu()
            anyio.run(submit_all, url, jobs)
            wait_for(url, FINISHED, args.reviews, 3600)
            worker_cpu, harness_cpu = _cpu(procs) - before, _own_cpu() - harness
        wall, review = scalar(url, WALL), scalar(url, REVIEW)
        once = scalar(url, SUCCEEDED) == args.reviews and _posted_once(github, jobs)
    return Run(n, args.concurrency, args.reviews, wall, review, worker_cpu, harness_cpu, once)


def _posted_once(fake: FakeGitHub, jobs: Sequence[ReviewJob]) -> bool:
    """Tell whether every PR got exactly one summary comment and one check run."""
    return all(
        len(fake.issue_comments(j.owner, j.repo, j.number)) == 1
        and len(fake.check_runs(j.owner, j.repo)) == 1
        for j in jobs
    )


def _cpu(procs: Sequence[subprocess.Popen[bytes]]) -> float:
    """Return the CPU seconds of the workers and their reaped subprocesses (Linux /proc)."""
    total = 0.0
    for proc in procs:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    """Return this process's CPU seconds so far."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def rows(runs: Sequence[Run]) -> list[list[object]]:
    """One row per worker count, against N x the 1-worker throughput."""
    base = runs[0].throughput / runs[0].workers
    return [
        [r.workers, r.workers * r.concurrency, f"{r.wall_s:.1f}", f"{r.throughput:.3f}",
         f"{base * r.workers:.3f}", f"{r.throughput / (base * r.workers):.0%}",
         f"{r.review_s:.2f}", f"{r.slot_use:.0%}", f"{r.worker_cpu_s:.1f}",
         f"{r.harness_cpu_s:.1f}", "yes" if r.posted_once else "NO"]
        for r in runs
    ]  # fmt: skip


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4", help="worker counts, first is the base")
    parser.add_argument("--reviews", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=2, help="reviews at once per worker")
    parser.add_argument("--latency", type=float, default=2.0, help="seconds per model call")
    default_url = os.environ.get("PR_COUNCIL_TEST_DATABASE_URL", "")
    parser.add_argument(
        "--database-url", default=default_url or "postgresql://postgres@127.0.0.1:5432/test"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    """Measure each worker count and print the table."""
    args = parse_args(argv)
    info = machine()
    latency = LatencyModel(
        ttft_base_s=args.latency,
        ttft_per_input_token_s=0.0,
        ttft_per_cached_token_s=0.0,
        tokens_per_second=1000.0,
    )
    github, model = FakeGitHub(), FakeAnthropic(latency=latency)
    runs = []
    with (
        tempfile.TemporaryDirectory(prefix="pr-council-scaleout-") as tmp,
        run_fake_github(github),
        run_fake_anthropic(model),
    ):
        for n in (int(x) for x in args.workers.split(",")):
            runs.append(run(n, args, github, model, Path(tmp)))
            log(f"{n} worker(s): {runs[-1].throughput:.3f} reviews/s, {runs[-1].wall_s:.1f} s")
    print(machine_line(info))
    print(
        f"\n{args.reviews} queued reviews, {args.concurrency} per worker, model calls of "
        f"{args.latency:.2f} s, writes paced 1 s per installation:\n"
    )
    headers = ["workers", "slots", "wall s", "reviews/s", "ideal", "efficiency", "review s",
               "slot use", "worker CPU s", "harness CPU s", "each PR posted once"]  # fmt: skip
    print(table(headers, rows(runs)))
    data = {"machine": info, "args": vars(args), "runs": [asdict(r) for r in runs]}
    print(f"\ntarget: efficiency >= {TARGET:.0%}; wrote {write_json('scaleout', data)}")
    return 0


def log(line: str) -> None:
    """Report progress on stderr."""
    print(line, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
