"""App mode under a burst of webhooks, and from one delivery to the posted review.

Runs the real console script, `pr-council serve`, as a subprocess on loopback against the
fake GitHub (tests/fakes/github_api.py, in a thread of this process), as in production: the
FastAPI receiver, the SQLite queue journal and two in-process review workers.

Part 1, the burst (`--parts burst,held,sweep,livesweep`): small generated PRs (prgen's "small"
size, with a planted SQL f-string each) spread over repositories that are each their own
installation (the production Pacer spaces writes 1 s apart per installation, so with one
installation publishing would be capped at about one review per 3 s). Signed deliveries:
`pull_request.opened` for every PR, `synchronize` after a push for a subset (supersession),
redeliveries (same delivery id) and other events (`star`, `push`, a `/council review`
comment without write access), all sent at once over `--concurrency` keep-alive
connections. Reports the acknowledgement latency (send -> answer), the statuses, the
receiver's own time per delivery (its log line) and the CPU both sides used; then waits for
the queue to drain and verifies what was published and the journal's final states.

- burst: the review workers live (the real thing), drained and verified.
- held: the same burst with every review stalled at its first GitHub request until the
  burst is over: the receiver alone on the CPU (not drained).
- sweep: the held burst at other concurrencies (`--sweep 1,8,16,32`).
- livesweep: the live burst at other concurrencies (`--live-sweep 32`), drained and verified.

Part 2 (`e2e`), one delivery of the generated medium PR to the posted review, with the
fake Messages API at benchmarks/llm.py's realistic latency, and offline: acknowledgement, review start, snapshot read, model calls, inline review, summary
comment, check run; `--runs` times each, every run on a fresh server and PR.

    .venv/bin/python benchmarks/webhook.py [--deliveries 1000] [--prs 200] [--repos 50]
        [--concurrency 64] [--sweep 1,8,16,32] [--live-sweep 32] [--runs 3] [--seed 0]
        [--client raw|httpx] [--parts burst,held,sweep,livesweep,e2e]  # pip install -e '.[test]'
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import gc
import hashlib
import hmac
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.fakes

import anyio
import httpx
from common import OUT_DIR, Stats, machine, machine_line, review_context, table, write_json
from llm import LATENCY, MODEL, script
from prgen import SIZES, generate, plan

from agents.render import SUMMARY_MARKER
from tests.fakes.anthropic_api import FAKE_API_KEY, FakeAnthropic, run_fake_anthropic
from tests.fakes.github_api import FAKE_APP_ID, FailRule, FakeGitHub, run_fake_github

ROOT = Path(__file__).resolve().parent.parent
SECRET = "benchmark-webhook-secret"
DATA = ROOT / "tests" / "data" / "webhooks"
ACK_TARGET_S = 0.05
BOT = "pr-council[bot]"
# The mix of a burst, as fractions of all deliveries; the PRs' `opened` fill the rest.
SYNCHRONIZE_SHARE = 0.40
REDELIVERY_SHARE = 0.15
PUSHED_PRS = 0.6  # the share of PRs that get pushes (each then gets several)
OTHER_EVENTS = ("star", "push", "issue_comment")
DRAIN_POLL_S = 0.1
_LOG_LINE = re.compile(
    r"delivery '(?P<id>[^']*)' event=\S+ action=\S+ outcome=(?P<outcome>\S+)"
    r" status=(?P<status>\d+)(?: job=\S+)? (?P<ms>[\d.]+) ms"
)


# --- the pull requests ----------------------------------------------------------------------


@dataclass
class BenchPr:
    """One pull request on the fake: its repository, installation, and every head it gets."""

    owner: str
    repo: str
    number: int
    installation: int
    base: dict[str, str]
    heads: list[tuple[str, dict[str, str]]]  # (sha, files), the opened head first

    @property
    def key(self) -> str:
        """Name the PR."""
        return f"{self.owner}/{self.repo}#{self.number}"

    @property
    def pr_key(self) -> str:
        """Return the journal's key of the PR."""
        return self.key.lower()


def head_sha(seed: int, key: str, k: int) -> str:
    """Return a stable 40-hex commit id for the k-th head of a PR."""
    return hashlib.sha1(f"{seed}:{key}:{k}".encode()).hexdigest()


def make_prs(count: int, repos: int, pushes: Sequence[int], seed: int) -> list[BenchPr]:
    """Small generated PRs, round-robin over `repos` repositories, one installation each."""
    prs = []
    for i in range(count):
        r = i % repos
        base, head, _ = plan(SIZES["small"], seed * 100_003 + i)
        owner, repo, number = f"org-{r:02d}", "shopfront", 1 + i // repos
        key = f"{owner}/{repo}#{number}"
        heads = [(head_sha(seed, key, 0), head)]
        for k in range(1, pushes[i] + 1):
            heads.append((head_sha(seed, key, k), revised(base, heads[-1][1], k)))
        prs.append(BenchPr(owner, repo, number, 10_000 + r, base, heads))
    return prs


def revised(base: dict[str, str], head: dict[str, str], k: int) -> dict[str, str]:
    """A follow-up commit: one more small function in the first changed module."""
    path = next(p for p in sorted(head) if p.startswith("app/") and head[p] != base.get(p))
    addition = (
        f"\n\ndef revision_{k}_total(values: list[int]) -> int:\n"
        f'    """Return the sum of the values (follow-up commit {k})."""\n'
        "    return sum(values)\n"
    )
    return {**head, path: head[path].rstrip("\n") + addition}


def add_to_fake(fake: FakeGitHub, prs: Sequence[BenchPr]) -> None:
    """Create the repositories (one installation each) and open the PRs at their first head."""
    for pr in prs:
        if f"{pr.owner}/{pr.repo}" not in fake.repos:
            fake.add_repo(pr.owner, pr.repo, installation_id=pr.installation)
        sha, files = pr.heads[0]
        fake.add_pull(
            pr.owner, pr.repo, pr.number, base_files=pr.base, head_files=files, head_sha=sha,
            title=f"Change {pr.number}",
        )  # fmt: skip


# --- the deliveries -------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One signed delivery; `push` = (PR index, head index) to push on the fake before sending."""

    kind: str  # opened | synchronize | redelivery | star | push | issue_comment | ping
    event: str
    delivery_id: str
    body: bytes
    pr: int | None = None
    head: int | None = None  # which head of the PR a pull_request delivery names
    push: tuple[int, int] | None = None

    def headers(self) -> dict[str, str]:
        """GitHub's headers, signed with the secret."""
        digest = hmac.new(SECRET.encode(), self.body, hashlib.sha256).hexdigest()
        return {
            "X-GitHub-Event": self.event,
            "X-GitHub-Delivery": self.delivery_id,
            "X-Hub-Signature-256": f"sha256={digest}",
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/benchmark",
        }


def _template(name: str) -> dict[str, Any]:
    """Load a sample payload from tests/data/webhooks."""
    return json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _patch_repo(repo: dict[str, Any], pr: BenchPr) -> None:
    """Point a payload's repository at the PR's."""
    repo["name"], repo["full_name"] = pr.repo, f"{pr.owner}/{pr.repo}"
    repo["owner"]["login"] = pr.owner
    repo["id"] = int(hashlib.sha1(repo["full_name"].encode()).hexdigest()[:8], 16)


class Payloads:
    """Build realistic bodies from the sample payloads."""

    def __init__(self) -> None:
        names = ("pull_request.opened", "pull_request.synchronize", "push")
        self.samples = {n: _template(n) for n in names}
        self.samples["issue_comment"] = _template("issue_comment.created.command_none")

    def pull_request(self, action: str, pr: BenchPr, k: int) -> bytes:
        """A pull_request delivery for the PR at its k-th head."""
        p = copy.deepcopy(self.samples[f"pull_request.{action}"])
        _patch_repo(p["repository"], pr)
        p["number"] = p["pull_request"]["number"] = pr.number
        p["pull_request"]["head"]["sha"] = pr.heads[k][0]
        p["installation"]["id"] = pr.installation
        if action == "synchronize":
            p["before"], p["after"] = pr.heads[k - 1][0], pr.heads[k][0]
        return json.dumps(p).encode()

    def other(self, event: str, pr: BenchPr) -> bytes:
        """An event the App acknowledges and ignores."""
        if event == "star":
            sample = self.samples["push"]
            p = {"action": "created", "starred_at": "2024-05-02T12:00:00Z",
                 "repository": copy.deepcopy(sample["repository"]),
                 "sender": sample["sender"], "installation": {"id": pr.installation}}  # fmt: skip
        else:
            p = copy.deepcopy(self.samples[event])
            p["installation"]["id"] = pr.installation
            if event == "issue_comment":  # "/council review" by someone without write access
                p["issue"]["number"] = pr.number
        _patch_repo(p["repository"], pr)
        return json.dumps(p).encode()


def schedule(
    prs: Sequence[BenchPr], total: int, concurrency: int, rng: random.Random
) -> list[Delivery]:
    """The burst in sending order: each PR's events in order, the rest interleaved."""
    payloads = Payloads()
    keyed: list[tuple[float, Delivery]] = []

    def new_id() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    rounds = max(len(pr.heads) for pr in prs)
    for k in range(rounds):  # round 0: every opened; round k: the k-th push of some PRs
        order = [i for i, pr in enumerate(prs) if len(pr.heads) > k]
        rng.shuffle(order)
        for i in order:
            action = "opened" if k == 0 else "synchronize"
            body = payloads.pull_request(action, prs[i], k)
            d = Delivery(action, "pull_request", new_id(), body, i, k, (i, k) if k else None)
            keyed.append((float(len(keyed)), d))
    size = len(keyed)
    redeliveries = round(REDELIVERY_SHARE * total)
    originals = rng.sample(range(size), min(redeliveries, size))
    for at in originals:  # a redelivery comes well after its original
        position, original = keyed[at]
        later = min(size, position + 2 * concurrency)
        again = Delivery("redelivery", original.event, original.delivery_id, original.body,
                         original.pr, original.head)  # fmt: skip
        keyed.append((rng.uniform(later, size + 1), again))
    for n in range(total - len(keyed)):
        event = OTHER_EVENTS[n % len(OTHER_EVENTS)]
        pr_index = rng.randrange(len(prs))
        body = payloads.other(event, prs[pr_index])
        keyed.append((rng.uniform(0, size), Delivery(event, event, new_id(), body, pr_index)))
    keyed.sort(key=lambda item: item[0])
    return [d for _, d in keyed]


def pushes_per_pr(prs: int, deliveries: int, rng: random.Random) -> list[int]:
    """Spread the synchronize deliveries over a subset of the PRs."""
    synchronize = max(0, min(round(SYNCHRONIZE_SHARE * deliveries), deliveries - prs))
    pushed = rng.sample(range(prs), max(1, round(PUSHED_PRS * prs))) if synchronize else []
    counts = [0] * prs
    for n in range(synchronize):
        counts[pushed[n % len(pushed)]] += 1
    return counts


# --- the server -----------------------------------------------------------------------------


@dataclass
class Server:
    """A running `pr-council serve`."""

    proc: subprocess.Popen[bytes]
    url: str
    state_dir: Path
    log: Path


def _free_port() -> int:
    """Ask the kernel for a free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli() -> str:
    """The console script of this environment."""
    beside = Path(sys.executable).parent / "pr-council"
    return str(beside) if beside.exists() else shutil.which("pr-council") or "pr-council"


@contextlib.contextmanager
def serve(
    github_url: str, key_pem: str, tmp: Path, model_url: str | None = None
) -> Iterator[Server]:
    """Start `pr-council serve` on a free port with its own state directory; always stop it."""
    port, state, log = _free_port(), tmp / "state", tmp / "serve.log"
    drop = ("ANTHROPIC_", "PR_COUNCIL_", "GITHUB_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(
        PR_COUNCIL_WEBHOOK_SECRET=SECRET,
        PR_COUNCIL_APP_ID=str(FAKE_APP_ID),
        PR_COUNCIL_PRIVATE_KEY=key_pem,
        GITHUB_API_URL=github_url,
        PR_COUNCIL_STATE_DIR=str(state),
    )
    if model_url is not None:
        env.update(
            ANTHROPIC_API_KEY=FAKE_API_KEY, ANTHROPIC_BASE_URL=model_url, PR_COUNCIL_MODEL=MODEL
        )
    command = [_cli(), "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, cwd=tmp, stdout=out, stderr=subprocess.STDOUT)
    try:
        server = Server(proc, f"http://127.0.0.1:{port}", state, log)
        _wait_ready(server)
        yield server
    finally:
        stop(proc)


def _wait_ready(server: Server, timeout_s: float = 60.0) -> None:
    """Poll /healthz until the server answers."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=server.url, timeout=2) as client:
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                tail = server.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"pr-council serve exited ({server.proc.returncode}):\n{tail}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get("/healthz").status_code == 200:
                    return
            time.sleep(0.05)
    raise RuntimeError("pr-council serve did not start in time")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (uvicorn shuts down gracefully), then SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def journal(state_dir: Path) -> list[tuple[int, str, str, str]]:
    """Read the queue journal (after the server stopped): (id, pr_key, head_sha, state)."""
    db = sqlite3.connect(f"file:{state_dir / 'queue.sqlite3'}?mode=ro", uri=True)
    try:
        return db.execute("SELECT id, pr_key, head_sha, state FROM jobs ORDER BY id").fetchall()
    finally:
        db.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its waited-for children, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def server_times(log: Path) -> dict[str, list[float]]:
    """The receiver's own time per delivery (ms), from its log lines, by delivery id."""
    found: dict[str, list[float]] = defaultdict(list)
    for line in log.read_text(errors="replace").splitlines():
        if match := _LOG_LINE.search(line):
            found[match["id"]].append(float(match["ms"]))
    return found


def metric(text: str, name: str, labels: str = "") -> float | None:
    """One sample of a Prometheus text exposition."""
    pattern = re.compile(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", re.MULTILINE)
    match = pattern.search(text)
    return float(match[1]) if match else None


# --- the burst ------------------------------------------------------------------------------


@dataclass
class Sent:
    """One delivery's answer as the client saw it."""

    kind: str
    delivery_id: str
    start_s: float
    latency_s: float
    status: int
    answer: str  # queued | duplicate | ignored | ... | error
    pr: int | None = None
    head: int | None = None
    answered_at: float = 0.0  # time.monotonic(), comparable with the fake's records


@dataclass
class Check:
    """One verification, passed or not."""

    name: str
    ok: bool
    detail: str


@dataclass
class BurstRun:
    """Everything one burst measured."""

    label: str
    concurrency: int
    held: bool
    sent: list[Sent]
    burst_s: float
    server_ms: list[float]
    metrics_le_50ms: float | None = None
    server_cpu_s: float = 0.0  # the server process during the burst
    client_cpu_s: float = 0.0  # this process (load generator + fake GitHub) during the burst
    drain_s: float | None = None
    jobs: dict[str, int] = field(default_factory=dict)
    posted_reviews: int = 0
    checks: list[Check] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


class RawHttp(asyncio.Protocol):
    """A minimal HTTP/1.1 client on one keep-alive connection, for the load generator.

    httpx's connection pool costs about 10 ms of CPU per request with 64 connections open
    (measured: `--client httpx`), and asyncio's streams ~0.6 ms, so the client, not the
    server, would set the pace of the burst: this protocol parses only the status line and
    Content-Length of each answer.
    """

    def __init__(self, url: str) -> None:
        parsed = httpx.URL(url)
        self.host, self.port = parsed.host, parsed.port or 80
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._answer: asyncio.Future[tuple[int, bytes]] | None = None
        self._lost = False

    async def open(self) -> None:
        """Connect."""
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: self, self.host, self.port)

    async def close(self) -> None:
        """Disconnect."""
        if self._transport is not None:
            self._transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail the answer being waited for."""
        self._lost = True
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(exc or ConnectionResetError("the server closed it"))

    def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        """Serialise one request."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                 f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        """Send a serialised request; return the status and the body of the answer."""
        if self._transport is None or self._lost:
            raise ConnectionResetError("not connected")
        self._answer = asyncio.get_running_loop().create_future()
        self._transport.write(raw)
        return await self._answer

    def data_received(self, data: bytes) -> None:
        """Complete the answer once its head and Content-Length bytes of body are in."""
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self._buffer[:end].split(b"\r\n")
        length = next(int(h.split(b":", 1)[1]) for h in head[1:] if h.lower().startswith(b"content-length:"))  # fmt: skip
        if len(self._buffer) < end + 4 + length:
            return
        body, self._buffer = (
            self._buffer[end + 4 : end + 4 + length],
            self._buffer[end + 4 + length :],
        )
        if self._answer is not None and not self._answer.done():
            self._answer.set_result((int(head[0].split()[1]), body))


async def send_all(
    url: str, deliveries: Sequence[Delivery], concurrency: int, fake: FakeGitHub,
    prs: Sequence[BenchPr], pushed_at: dict[tuple[int, int], float], server_pid: int,
    client_kind: str = "raw",
) -> tuple[list[Sent], float, float, tuple[float, float]]:  # fmt: skip
    """Send every delivery from `concurrency` connections at once; push before each synchronize."""
    results: list[Sent | None] = [None] * len(deliveries)
    queue = iter(enumerate(deliveries))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=url, limits=limits, timeout=30)
        )
        raws = [RawHttp(url) for _ in range(concurrency if client_kind == "raw" else 0)]
        for raw in raws:
            await raw.open()
            stack.push_async_callback(raw.close)
        await _warm(client, concurrency, raws)

        # Serialised before the clock starts: the load generator shares the 2 cores.
        wire = [raws[0].request("POST", "/webhook", d.body, d.headers()) for d in deliveries] if raws else []  # fmt: skip

        async def post(slot: int, index: int, d: Delivery) -> tuple[int, bytes]:
            if not raws:
                answer = await client.post("/webhook", content=d.body, headers=d.headers())
                return answer.status_code, answer.content
            async with asyncio.timeout(30):  # cheaper than an anyio cancel scope per request
                return await raws[slot].send(wire[index])

        async def worker(slot: int) -> None:
            for index, d in queue:
                if d.push is not None:
                    i, k = d.push
                    pr = prs[i]
                    fake.push(pr.owner, pr.repo, pr.number, *pr.heads[k])
                    pushed_at[(i, k)] = time.monotonic()
                sent = time.perf_counter()
                try:
                    status, body = await post(slot, index, d)
                    what = str(json.loads(body).get("status"))
                except (httpx.HTTPError, OSError, TimeoutError, ValueError) as exc:
                    status, what = 0, f"error: {type(exc).__name__}"
                done = time.perf_counter()
                results[index] = Sent(d.kind, d.delivery_id, sent - start, done - sent, status,
                                      what, d.pr, d.head, time.monotonic())  # fmt: skip

        # The load generator must not pause: a full collection of its heap (the deliveries,
        # the fake GitHub's state) stalled every connection for ~250 ms mid-burst.
        gc.collect()
        gc.freeze()
        start, began = time.perf_counter(), time.monotonic()
        cpu = (cpu_seconds(server_pid), time.process_time())
        async with anyio.create_task_group() as group:
            for slot in range(concurrency):
                group.start_soon(worker, slot)
        burst = time.perf_counter() - start
        cpu = (cpu_seconds(server_pid) - cpu[0], time.process_time() - cpu[1])
        gc.unfreeze()
    return [r for r in results if r is not None], burst, began, cpu


async def _warm(client: httpx.AsyncClient, concurrency: int, raws: Sequence[RawHttp]) -> None:
    """Open the connections and warm the webhook path (a ping) before the clock starts."""
    ping = json.dumps(_template("ping")).encode()
    await client.post("/webhook", content=ping, headers=Delivery("ping", "ping", "warm-up", ping).headers())  # fmt: skip
    async with anyio.create_task_group() as group:
        for _ in range(0 if raws else concurrency):
            group.start_soon(client.get, "/healthz")
    for raw in raws:
        await raw.send(raw.request("GET", "/healthz", b"", {}))


def wait_drained(url: str, timeout_s: float) -> float | None:
    """Poll /healthz until the queue is empty; return when (monotonic), None on timeout."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=url, timeout=10) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if client.get("/healthz").json().get("queue_depth") == 0:
                    return time.monotonic()
            time.sleep(DRAIN_POLL_S)
    return None


def release(fake: FakeGitHub, rule: FailRule) -> None:
    """Let the held reviews go: drop the stall; stalled requests get a 503 that githubkit retries."""
    with fake.lock:
        fake.rules.remove(rule)
    fake.close_hangs()


def burst(
    label: str, prs: list[BenchPr], deliveries: list[Delivery], concurrency: int, *,
    held: bool, drain: bool, drain_timeout_s: float, client: str = "raw",
) -> BurstRun:  # fmt: skip
    """One burst against a fresh fake and a fresh server; drain and verify if asked."""
    fake = FakeGitHub()
    add_to_fake(fake, prs)
    pushed_at: dict[tuple[int, int], float] = {}
    tmp_dir = tempfile.TemporaryDirectory(prefix="pr-council-webhook-")
    with tmp_dir as tmp, run_fake_github(fake) as github_url:
        with serve(github_url, fake.private_key_pem, Path(tmp)) as server:
            # Held: every review stops at its first GitHub request until the burst is over.
            rule = fake.fail("GET", r"^/app$", None, delay_s=3600, times=None) if held else None
            # uvloop, as the server: with asyncio's loop the client needed as much CPU as it.
            sent, seconds, began, cpu = anyio.run(
                send_all, server.url, deliveries, concurrency, fake, prs, pushed_at,
                server.proc.pid, client, backend_options={"use_uvloop": True},
            )  # fmt: skip
            log(f"{label}, {concurrency} in flight: {len(sent)} deliveries in {seconds:.2f} s")
            scrape = httpx.get(f"{server.url}/metrics", timeout=10).text
            if rule is not None and drain:
                release(fake, rule)
            drained = wait_drained(server.url, drain_timeout_s) if drain else None
        # The server has stopped: its log and journal are complete.
        OUT_DIR.mkdir(exist_ok=True)
        slug = f"{re.sub(r'[^a-z0-9]+', '-', label.lower())}-{concurrency}"
        shutil.copyfile(server.log, OUT_DIR / f"webhook-serve-{slug}.log")
        run = BurstRun(label, concurrency, held, sent, seconds, [], None, *cpu)
        run.server_ms = _server_ms(sent, server_times(server.log))
        le = metric(scrape, "pr_council_webhook_seconds_bucket", '{le="0.05"}')
        count = metric(scrape, "pr_council_webhook_seconds_count")
        run.metrics_le_50ms = le / count if le is not None and count else None
        if drain:
            rows = journal(server.state_dir)
            run.jobs = dict(Counter(state for *_, state in rows))
            run.drain_s = drained - began if drained is not None else None
            run.posted_reviews = run.jobs.get("posted", 0)
            run.checks, run.details = verify(fake, prs, sent, rows, pushed_at, drained)
            log(f"{label}: drained in {run.drain_s} s; journal {run.jobs}")
    return run


def _server_ms(sent: Sequence[Sent], times: dict[str, list[float]]) -> list[float]:
    """Match the server's log lines to the sent deliveries (a redelivery has two)."""
    remaining = {k: list(v) for k, v in times.items()}
    out = []
    for s in sorted(sent, key=lambda s: s.start_s):
        found = remaining.get(s.delivery_id)
        if found:
            out.append(found.pop(0))
    return out


# --- verification ---------------------------------------------------------------------------


def verify(
    fake: FakeGitHub, prs: Sequence[BenchPr], sent: Sequence[Sent],
    rows: Sequence[tuple[int, str, str, str]], pushed_at: dict[tuple[int, int], float],
    drained: float | None,
) -> tuple[list[Check], dict[str, Any]]:  # fmt: skip
    """Check the answers, the journal and what the fake GitHub holds after the drain."""
    checks = [Check("queue drained", drained is not None, "" if drained else "timed out")]
    checks += _answers(sent)
    accepted = sum(s.status == 202 for s in sent)
    states = Counter(state for *_, state in rows)
    unfinished = {k: v for k, v in states.items() if k not in ("posted", "superseded")}
    checks.append(Check(
        "every accepted job ended posted or superseded",
        not unfinished and len(rows) == accepted,
        f"{len(rows)} jobs for {accepted} answers 202; {dict(states)}",
    ))  # fmt: skip
    final_ok, summary_ok, twice, unposted, reordered = [], [], [], [], []
    older: Counter[str] = Counter()
    check_posts = _check_posts(fake)
    acked = _acked(sent)
    timelines: dict[str, list[str]] = {}
    for i, pr in enumerate(prs):
        final = pr.heads[-1][0]
        index = {sha: k for k, (sha, _) in enumerate(pr.heads)}
        runs = [c for c in fake.check_runs(pr.owner, pr.repo) if c.head_sha in index]
        if sum(c.head_sha == final for c in runs) != 1:
            final_ok.append(pr.key)
        ours = [
            c for c in fake.issue_comments(pr.owner, pr.repo, pr.number)
            if c.author.login == BOT and SUMMARY_MARKER in c.body
        ]  # fmt: skip
        if len(ours) != 1 or f"Reviewed at commit {final[:7]}" not in ours[0].body:
            summary_ok.append(pr.key)
        per_head = Counter(r.commit_id for r in fake.reviews(pr.owner, pr.repo, pr.number))
        if any(n > 1 for n in per_head.values()):
            twice.append(pr.key)
        for k, (sha, _) in enumerate(pr.heads[:-1]):
            if any(c.head_sha == sha for c in runs):
                posted = check_posts.get((f"{pr.owner}/{pr.repo}", sha), math.inf)
                older[
                    _when(posted, pushed_at.get((i, k + 1), math.inf), acked.get((i, k + 1)))
                ] += 1
        # The journal names the head a job was queued for, not necessarily the one it reviewed.
        mine = [(k, st) for _, key, sha, st in rows if key == pr.pr_key for k in [index[sha]]]
        if [k for k, _ in mine] != sorted(k for k, _ in mine):
            reordered.append(pr.key)
        if not any(st == "posted" for _, st in mine):
            unposted.append(pr.key)
        if pr.key in final_ok or pr.key in unposted:
            timelines[pr.key] = _timeline(i, mine, sent)
    lost = [k for k in final_ok if k in reordered]
    checks += [
        Check(
            "the final head has exactly one check run", not final_ok,
            _few(final_ok) + (f"; {len(lost)} of them had a delivery for an older head"
                              " accepted after a newer one" if final_ok else ""),
        ),
        Check("one summary comment per PR, at the final head", not summary_ok, _few(summary_ok)),
        Check("no two reviews of one head", not twice, _few(twice)),
        Check(
            "every PR has a posted job (journal)", not unposted,
            (_few(unposted) + "; " if unposted else "") + f"{len(reordered)} PRs had a delivery"
            " for an older head accepted after a newer one",
        ),
        Check(
            "no check run for a head after its supersession was acknowledged",
            older[AFTER_ACK] == 0,
            "older heads with a check run: " + ", ".join(f"{n} {k}" for k, n in older.items())
            if older else "none",
        ),
        Check("no unexpected requests to the fake GitHub", not fake.unexpected, _few(
            [f"{r.method} {r.path}" for r in fake.unexpected])),
    ]  # fmt: skip
    details = {
        "older_heads_with_a_check_run": dict(older),
        "prs_with_jobs_accepted_out_of_order": reordered,
        "failing_prs": timelines,
        "github_requests": len(fake.requests),
    }
    return checks, details


BEFORE_PUSH = "posted before the newer push (correct)"
BEFORE_ACK = "posted after the push, before its delivery was acknowledged (race)"
AFTER_ACK = "posted after the newer head's delivery was acknowledged"


def _when(posted: float, pushed: float, acked: float | None) -> str:
    """Classify when an older head's check run was created."""
    if posted < pushed:
        return BEFORE_PUSH
    return BEFORE_ACK if acked is None or posted < acked else AFTER_ACK


def _acked(sent: Sequence[Sent]) -> dict[tuple[int, int], float]:
    """When the server first accepted each head's delivery (its 202 came back)."""
    acked: dict[tuple[int, int], float] = {}
    for s in sent:
        if s.status == 202 and s.pr is not None and s.head is not None:
            key = (s.pr, s.head)
            acked[key] = min(acked.get(key, math.inf), s.answered_at)
    return acked


def _timeline(pr: int, jobs: Sequence[tuple[int, str]], sent: Sequence[Sent]) -> list[str]:
    """A failing PR's story: its deliveries as sent and answered, and its jobs in journal order."""
    mine = sorted((s for s in sent if s.pr == pr and s.head is not None), key=lambda s: s.start_s)
    story = [
        f"sent head {s.head} ({s.kind}) at {s.start_s:.3f} s, answered {s.status} {s.answer}"
        f" after {s.latency_s * 1000:.0f} ms (done at {s.start_s + s.latency_s:.3f} s)"
        for s in mine
    ]
    return [*story, "journal: " + ", ".join(f"head {k} {st}" for k, st in jobs)]


def _answers(sent: Sequence[Sent]) -> list[Check]:
    """Each review delivery id got exactly one 202; copies 200 duplicate; the rest 200 ignored."""
    by_id: dict[str, list[Sent]] = defaultdict(list)
    for s in sent:
        by_id[s.delivery_id].append(s)
    reviews = [v for v in by_id.values() if v[0].kind in ("opened", "synchronize", "redelivery")]
    wrong = [
        v[0].delivery_id for v in reviews
        if sorted(s.status for s in v) != [200] * (len(v) - 1) + [202]
        or sum(s.answer == "duplicate" for s in v) != len(v) - 1
    ]  # fmt: skip
    others = [s for s in sent if s.kind in OTHER_EVENTS]
    bad = [s.delivery_id for s in others if (s.status, s.answer) != (200, "ignored")]
    errors = [s for s in sent if s.status == 0 or s.status >= 500]
    return [
        Check("no 5xx and no transport error", not errors, f"{len(errors)} failed"),
        Check("each review delivery: one 202, its redeliveries 200 duplicate", not wrong, _few(wrong)),
        Check("other events: 200 ignored", not bad, _few(bad)),
    ]  # fmt: skip


def _check_posts(fake: FakeGitHub) -> dict[tuple[str, str], float]:
    """When each check run was created: (repo, head) -> monotonic time of its POST."""
    posts = {}
    for r in fake.requests:
        if r.method == "POST" and r.path.endswith("/check-runs") and isinstance(r.body, dict):
            repo = r.path.removeprefix("/repos/").removesuffix("/check-runs")
            posts.setdefault((repo, str(r.body.get("head_sha"))), r.arrived_at)
    return posts


def _few(items: Sequence[str]) -> str:
    """Name the first few offenders."""
    return "" if not items else f"{len(items)}: " + ", ".join(items[:5]) + (" ..." if len(items) > 5 else "")  # fmt: skip


# --- part 2: one delivery to the posted review ----------------------------------------------


@dataclass
class E2eRun:
    """Seconds from sending one delivery: ack, job start, model calls, summary, check run."""

    ack_s: float
    start_s: float
    snapshot_s: float
    model_first_s: float | None
    model_last_s: float | None
    review_s: float | None
    summary_s: float
    check_s: float
    findings_inline: int
    github_requests: int


def e2e(runs: int, seed: int, with_model: bool, tmp_root: Path) -> list[E2eRun]:
    """Review the medium PR `runs` times, each on a fresh PR number and state directory."""
    base, head, _ = plan(SIZES["medium"], seed)
    github = FakeGitHub()
    owner, repo, installation = "acme", "shopfront", 4242
    github.add_repo(owner, repo, installation_id=installation)
    model = FakeAnthropic(latency=LATENCY)
    if with_model:
        pr = generate("medium", tmp_root / "medium", seed)
        model.handler = script(review_context(pr.root))
    results = []
    with run_fake_github(github) as github_url, run_fake_anthropic(model) as model_url:
        for r in range(runs):
            number = (100 if with_model else 200) + r
            github.add_pull(owner, repo, number, base_files=base, head_files=head, title="Feature")
            sha = github.pull(owner, repo, number).head_sha
            bench = BenchPr(owner, repo, number, installation, base, [(sha, head)])
            body = Payloads().pull_request("opened", bench, 0)
            delivery = Delivery("opened", "pull_request", str(uuid.uuid4()), body)
            model.cache.clear()
            model.requests.clear()
            with tempfile.TemporaryDirectory(prefix="pr-council-e2e-") as tmp:
                url = model_url if with_model else None
                with serve(github_url, github.private_key_pem, Path(tmp), url) as server:
                    results.append(_one(github, model, server, bench, delivery))
            log(f"e2e {'model' if with_model else 'offline'} run {r + 1}: {results[-1]}")
    return results


def _one(
    github: FakeGitHub, model: FakeAnthropic, server: Server, pr: BenchPr, delivery: Delivery
) -> E2eRun:
    """Send one delivery and wait for its check run; read the times off both fakes."""
    seen = len(github.requests)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        client.get("/healthz")
        t0, sent = time.monotonic(), time.perf_counter()
        answer = client.post("/webhook", content=delivery.body, headers=delivery.headers())
        ack = time.perf_counter() - sent
    if answer.status_code != 202:
        raise RuntimeError(f"the delivery was answered {answer.status_code}: {answer.text}")
    deadline = time.monotonic() + 300
    while not github.check_runs(pr.owner, pr.repo) or not any(
        c.head_sha == pr.heads[0][0] for c in github.check_runs(pr.owner, pr.repo)
    ):
        if time.monotonic() > deadline:
            raise RuntimeError("no check run within 300 s")
        time.sleep(0.02)
    records = github.requests[seen:]
    prefix = f"/repos/{pr.owner}/{pr.repo}"
    first = min(r.arrived_at for r in records)
    first_write = min(r.arrived_at for r in records if r.is_write)
    # The snapshot's last reads: our earlier comments (issue and review comments).
    ours = (f"{prefix}/issues/{pr.number}/comments", f"{prefix}/pulls/{pr.number}/comments")
    snapshot = max(r.arrived_at for r in records
                   if r.method == "GET" and r.path in ours and r.arrived_at < first_write)  # fmt: skip
    summary = next(r.arrived_at for r in records
                   if r.method == "POST" and r.path == f"{prefix}/issues/{pr.number}/comments")  # fmt: skip
    check = next(r.arrived_at for r in records
                 if r.method == "POST" and r.path == f"{prefix}/check-runs")  # fmt: skip
    inline = next((r for r in records
                   if r.method == "POST" and r.path == f"{prefix}/pulls/{pr.number}/reviews"), None)  # fmt: skip
    calls = [r for r in model.requests if r.path == "/v1/messages"]
    model_first = min((r.arrived_at for r in calls), default=None)
    model_last = max((r.finished_at or r.arrived_at for r in calls), default=None)
    review_posted = inline.arrived_at if inline is not None else None
    comments = len(inline.body.get("comments", [])) if inline is not None else 0
    return E2eRun(
        ack, first - t0, snapshot - t0,
        None if model_first is None else model_first - t0,
        None if model_last is None else model_last - t0,
        None if review_posted is None else review_posted - t0,
        summary - t0, check - t0, comments, len(records),
    )  # fmt: skip


# --- reporting ------------------------------------------------------------------------------


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def ack_row(run: BurstRun) -> list[object]:
    """One row: latency percentiles, throughput and the receiver's own time."""
    lat = [s.latency_s * 1000 for s in run.sent]
    under = sum(x < ACK_TARGET_S * 1000 for x in lat) / len(lat)
    srv = run.server_ms
    return [
        run.label, run.concurrency, len(run.sent), f"{run.burst_s:.2f}",
        f"{len(run.sent) / run.burst_s:.0f}",
        *(f"{pct(lat, p):.1f}" for p in (50, 90, 99)), f"{max(lat):.1f}", f"{under:.1%}",
        f"{pct(srv, 50):.1f}" if srv else "?", f"{pct(srv, 99):.1f}" if srv else "?",
        f"{max(srv):.1f}" if srv else "?",
        f"{run.metrics_le_50ms:.1%}" if run.metrics_le_50ms is not None else "?",
        f"{run.server_cpu_s:.2f}", f"{run.client_cpu_s:.2f}",
    ]  # fmt: skip


def kind_rows(run: BurstRun) -> list[list[object]]:
    """Latency and answers by kind of delivery."""
    rows: list[list[object]] = []
    for kind in ("opened", "synchronize", "redelivery", *OTHER_EVENTS):
        mine = [s for s in run.sent if s.kind == kind]
        if not mine:
            continue
        lat = [s.latency_s * 1000 for s in mine]
        answers = Counter(f"{s.status} {s.answer}" for s in mine)
        rows.append([
            kind, len(mine), f"{pct(lat, 50):.1f}", f"{pct(lat, 99):.1f}", f"{max(lat):.1f}",
            ", ".join(f"{k}: {v}" for k, v in sorted(answers.items())),
        ])  # fmt: skip
    return rows


def drain_row(run: BurstRun) -> list[object]:
    """Jobs, drain time, reviews per second and GitHub requests."""
    d, jobs = run.drain_s, Counter(run.jobs)
    requests = run.details.get("github_requests", 0)
    posted = jobs["posted"]
    return [
        run.label, sum(jobs.values()), posted, jobs["superseded"], jobs["failed"],
        jobs["queued"] + jobs["running"], f"{d:.1f}" if d else "timed out",
        f"{posted / d:.2f}" if d else "?", requests, f"{requests / posted:.1f}" if posted else "?",
        "PASS" if all(c.ok for c in run.checks) else "FAIL",
    ]  # fmt: skip


def e2e_rows(results: dict[str, list[E2eRun]]) -> list[list[object]]:
    """Median (min-max) of each step, per configuration."""
    rows: list[list[object]] = []
    for label, runs in results.items():

        def col(name: str, scale: float = 1.0, digits: int = 2, runs: list[E2eRun] = runs) -> str:
            values = [getattr(r, name) for r in runs]
            if any(v is None for v in values):
                return "-"
            return Stats.of(values).fmt(scale, digits)

        rows.append([
            label, col("ack_s", 1000, 1), col("start_s", 1000, 0), col("snapshot_s"),
            col("model_first_s"),
            col("model_last_s"), col("review_s"), col("summary_s"), col("check_s"),
            runs[0].findings_inline, col("github_requests", digits=0),
        ])  # fmt: skip
    return rows


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=1000, help="deliveries in the burst")
    parser.add_argument("--prs", type=int, default=200, help="pull requests in the burst")
    parser.add_argument(
        "--repos", type=int, default=50, help="repositories (one installation each)"
    )
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument(
        "--sweep", default="1,8,16,32", help="held bursts at these concurrencies too"
    )
    parser.add_argument("--live-sweep", default="32", help="live bursts at these concurrencies too")
    parser.add_argument("--runs", type=int, default=3, help="runs of part 2 per configuration")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    parser.add_argument("--drain-timeout", type=float, default=1800, help="seconds")
    parser.add_argument(
        "--client", choices=("raw", "httpx"), default="raw", help="the load generator's HTTP client"
    )
    parser.add_argument(
        "--parts",
        default="burst,held,sweep,livesweep,e2e",
        help="which parts to run (comma-separated)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.prs <= args.deliveries or args.repos < 1 or args.concurrency < 1:
        parser.error("need 1 <= --prs <= --deliveries, --repos >= 1, --concurrency >= 1")
    return args


def main(argv: Sequence[str]) -> int:
    """Run the parts, print the tables, write benchmarks/out/webhook.json."""
    args = parse_args(argv)
    parts = set(args.parts.split(","))
    info = machine()
    log(machine_line(info))
    rng = random.Random(args.seed)
    prs = make_prs(args.prs, args.repos, pushes_per_pr(args.prs, args.deliveries, rng), args.seed)
    deliveries = schedule(prs, args.deliveries, args.concurrency, rng)
    mix = Counter(d.kind for d in deliveries)
    log(f"burst: {len(deliveries)} deliveries {dict(mix)} for {len(prs)} PRs in {args.repos} repos")
    bursts = run_bursts(args, parts, prs, deliveries)
    e2e_results: dict[str, list[E2eRun]] = {}
    if "e2e" in parts:
        with tempfile.TemporaryDirectory(prefix="pr-council-e2e-pr-") as tmp:
            e2e_results["with Claude (fake, realistic latency)"] = e2e(args.runs, args.seed, True, Path(tmp))  # fmt: skip
            e2e_results["offline (no key)"] = e2e(args.runs, args.seed, False, Path(tmp))
    print(machine_line(info))
    if bursts:
        report_bursts(bursts, mix, len(prs), args.repos)
    if e2e_results:
        print(f"\nOne delivery of the medium PR to the posted review ({args.runs} runs, "
              "seconds since the delivery was sent, median (min-max)):\n")  # fmt: skip
        headers = ["configuration", "ack ms", "job start ms", "snapshot read", "first model call",
                   "model done", "inline review", "summary", "check run", "inline comments",
                   "GitHub requests"]  # fmt: skip
        print(table(headers, e2e_rows(e2e_results)))
    data = {
        "machine": info,
        "args": vars(args),
        "mix": dict(mix),
        "bursts": [
            {**{k: v for k, v in asdict(r).items() if k not in ("sent", "server_ms")},
             "row": ack_row(r), "by_kind": kind_rows(r),
             "latency_ms": [round(s.latency_s * 1000, 3) for s in r.sent],
             "server_ms": r.server_ms}
            for r in bursts
        ],
        "e2e": {k: [asdict(r) for r in v] for k, v in e2e_results.items()},
    }  # fmt: skip
    print(f"\nwrote {write_json('webhook', data)}")
    return 0


def run_bursts(
    args: argparse.Namespace, parts: set[str], prs: list[BenchPr], deliveries: list[Delivery]
) -> list[BurstRun]:
    """The burst parts that were asked for, each on a fresh fake and server."""
    c, timeout = args.concurrency, args.drain_timeout
    plan_: list[tuple[str, int, dict[str, bool]]] = []
    if "burst" in parts:
        plan_.append(("workers live", c, {"held": False, "drain": True}))
    if "held" in parts:
        plan_.append(("workers held", c, {"held": True, "drain": False}))
    if "sweep" in parts:
        plan_ += [("workers held", int(n), {"held": True, "drain": False})
                  for n in args.sweep.split(",") if n]  # fmt: skip
    if "livesweep" in parts:
        plan_ += [("workers live", int(n), {"held": False, "drain": True})
                  for n in args.live_sweep.split(",") if n]  # fmt: skip
    return [
        burst(label, prs, deliveries, n, drain_timeout_s=timeout, client=args.client, **options)
        for label, n, options in plan_
    ]


def report_bursts(bursts: Sequence[BurstRun], mix: Counter[str], prs: int, repos: int) -> None:
    """Print the burst tables and the verifications."""
    print(f"\nBurst: {sum(mix.values())} deliveries ({', '.join(f'{k} {v}' for k, v in mix.items())})"
          f" for {prs} PRs in {repos} repositories, one installation each\n")  # fmt: skip
    headers = ["workers", "in flight", "deliveries", "burst s", "req/s", "p50 ms", "p90 ms",
               "p99 ms", "max ms", f"< {ACK_TARGET_S * 1000:.0f} ms", "server p50 ms",
               "server p99 ms", "server max ms", "server <= 50 ms (/metrics)",
               "server CPU s", "client CPU s"]  # fmt: skip
    print(table(headers, [ack_row(r) for r in bursts]))
    for run in bursts:
        if run.concurrency > 1:
            print(f"\nBy kind, {run.label}, {run.concurrency} in flight:\n")
            print(table(["kind", "n", "p50 ms", "p99 ms", "max ms", "answers"], kind_rows(run)))
    drained = [r for r in bursts if r.checks]
    if not drained:
        return
    print("\nDrain and verification:\n")
    headers = ["burst", "jobs", "posted", "superseded", "failed", "left", "drain s",
               "reviews/s", "GitHub requests", "per posted review", "verified"]  # fmt: skip
    print(table(headers, [drain_row(r) for r in drained]))
    for run in drained:
        print(f"\n{run.label}:")
        for c in run.checks:
            print(f"- {'PASS' if c.ok else 'FAIL'} {c.name}" + (f" ({c.detail})" if c.detail else ""))  # fmt: skip
        for key, story in list(run.details.get("failing_prs", {}).items())[:2]:
            print(f"  {key}:")
            for line in story:
                print(f"    {line}")


def log(line: str) -> None:
    """Report progress on stderr."""
    print(line, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
