"""PerfRulesAnalyzer: our AST performance rules, positive and negative cases per rule."""

from __future__ import annotations

import sys
import textwrap

import pytest

from agents.analyzers.base import Analyzer
from agents.analyzers.perf_rules import PARSE_SKIP_REASON, RULES, PerfRulesAnalyzer
from agents.model import SEVERITIES, AnalyzerResult, Finding, fingerprint
from tests.helpers import context_from

PATH = "app/service.py"
# Lines ending with this marker are where the case expects its rule to fire.
MARK = "# hit"


def run(source: str, path: str = PATH, **files: str) -> AnalyzerResult:
    """Run the analyzer on one changed file (plus any others)."""
    head = {path: textwrap.dedent(source), **files}
    return PerfRulesAnalyzer().run(context_from(head))


def marked(source: str) -> list[int]:
    """Return the line numbers of `source` that carry the hit marker."""
    lines = textwrap.dedent(source).splitlines()
    return [n for n, text in enumerate(lines, start=1) if text.rstrip().endswith(MARK)]


def fired(result: AnalyzerResult, rule: str) -> list[Finding]:
    """Return the findings of one rule."""
    return [f for f in result.findings if f.rule == rule]


POSITIVE: list[tuple[str, str, str]] = [
    # --- PCA001: N+1 network / database round trips ---
    (
        "PCA001",
        "major",
        """
        import requests

        def load(users):
            for user in users:
                requests.get(user.url, timeout=5)  # hit
        """,
    ),
    (
        "PCA001",
        "major",
        """
        import httpx

        def load(ids):
            return [httpx.post(URL, json={"id": i}) for i in ids]  # hit
        """,
    ),
    (
        "PCA001",
        "major",
        """
        from urllib.request import urlopen

        def load(urls):
            return {u: urlopen(u).read() for u in urls}  # hit
        """,
    ),
    (
        "PCA001",
        "major",
        """
        def save(cursor, rows):
            for row in rows:
                cursor.execute("INSERT INTO t VALUES (?)", (row.id,))  # hit
        """,
    ),
    (
        "PCA001",
        "major",
        """
        def authors(books):
            return [Author.objects.get(pk=b.author_id) for b in books]  # hit
        """,
    ),
    (
        "PCA001",
        "major",
        """
        def users(db, ids):
            out = []
            for uid in ids:
                out.append(db.session.query(User).filter(User.id == uid).first())  # hit
            return out
        """,
    ),
    (
        "PCA001",
        "major",
        """
        class Fetcher:
            def all(self, paths):
                for p in paths:
                    self.http_client.get(p)  # hit
        """,
    ),
    (
        "PCA001",
        "major",
        """
        async def load(client, urls):
            async for url in urls:
                await client.get(url)  # hit
        """,
    ),
    (
        "PCA001",
        "major",
        """
        import requests

        def drain(queue):
            while queue:
                item = queue.pop()
                requests.post(URL, json=item)  # hit
        """,
    ),
    (
        "PCA001",
        "major",
        """
        def lookup(collection, ids):
            return [collection.find_one({"_id": i}) for i in ids]  # hit
        """,
    ),
    # --- PCA002: the same file opened on every iteration ---
    (
        "PCA002",
        "minor",
        """
        def log_all(events):
            for event in events:
                with open("events.log", "a") as fh:  # hit
                    fh.write(event)
        """,
    ),
    (
        "PCA002",
        "minor",
        """
        from pathlib import Path

        def check(items):
            for item in items:
                if item.name in Path(CONFIG_DIR, "allow.txt").read_text():  # hit
                    yield item
        """,
    ),
    (
        "PCA002",
        "minor",
        """
        class Store:
            def lines(self, keys):
                return [self.path.read_text().count(k) for k in keys]  # hit
        """,
    ),
    (
        "PCA002",
        "minor",
        """
        def merge(rows, out_dir):
            for row in rows:
                (out_dir / "all.csv").write_text(row)  # hit
        """,
    ),
    # --- PCA003: regex compiled in a loop ---
    (
        "PCA003",
        "minor",
        """
        import re

        def ids(lines):
            for line in lines:
                m = re.compile(r"id=(\\d+)").search(line)  # hit
                yield m
        """,
    ),
    (
        "PCA003",
        "minor",
        """
        import re as regex

        def clean(words):
            return [regex.sub(PATTERN, "", w) for w in words]  # hit
        """,
    ),
    # --- PCA004: quadratic string building ---
    (
        "PCA004",
        "minor",
        """
        def render(rows):
            html = ""
            for row in rows:
                html += f"<tr>{row}</tr>"  # hit
            return html
        """,
    ),
    (
        "PCA004",
        "minor",
        """
        def render(rows):
            text = f"{len(rows)} rows:"
            for row in rows:
                text = text + str(row)  # hit
            return text
        """,
    ),
    (
        "PCA004",
        "minor",
        """
        def read_all(sock):
            data = b""
            while chunk := sock.recv(4096):
                data += chunk  # hit
            return data
        """,
    ),
    # --- PCA005: list.pop(0) / insert(0, x) in a loop ---
    (
        "PCA005",
        "minor",
        """
        def bfs(start):
            queue = [start]
            while queue:
                node = queue.pop(0)  # hit
                queue.extend(node.children)
        """,
    ),
    (
        "PCA005",
        "minor",
        """
        def reverse(items, out):
            for item in items:
                out.insert(0, item)  # hit
        """,
    ),
    # --- PCA006: membership test against a list in a loop ---
    (
        "PCA006",
        "minor",
        """
        def dedupe(items):
            seen = []
            for item in items:
                if item not in seen:  # hit
                    seen.append(item)
            return seen
        """,
    ),
    (
        "PCA006",
        "minor",
        """
        def known(rows, users):
            return [r for r in rows if r.user_id in [u.id for u in users]]  # hit
        """,
    ),
    (
        "PCA006",
        "minor",
        """
        def keep(rows, banned_source):
            banned = list(banned_source)
            return [r for r in rows if r in banned]  # hit
        """,
    ),
    # --- PCA007: the same input parsed on every iteration ---
    (
        "PCA007",
        "minor",
        """
        import json

        def apply(items):
            for item in items:
                defaults = json.loads(DEFAULTS_JSON)  # hit
                item.update(defaults)
        """,
    ),
    (
        "PCA007",
        "minor",
        """
        import xml.etree.ElementTree as ET

        class Doc:
            def titles(self, keys):
                return [ET.fromstring(self.xml).find(k) for k in keys]  # hit
        """,
    ),
    (
        "PCA007",
        "minor",
        """
        from datetime import datetime

        def since(events, start):
            return [e for e in events if e.at > datetime.strptime(start, "%Y-%m-%d")]  # hit
        """,
    ),
    # --- PCA008: blocking call inside async def ---
    (
        "PCA008",
        "major",
        """
        import time

        async def handler():
            time.sleep(1)  # hit
        """,
    ),
    (
        "PCA008",
        "major",
        """
        from time import sleep

        async def handler():
            sleep(0.5)  # hit
        """,
    ),
    (
        "PCA008",
        "major",
        """
        import requests

        async def handler(url):
            return requests.get(url).json()  # hit
        """,
    ),
    (
        "PCA008",
        "major",
        """
        import subprocess

        async def handler(cmd):
            subprocess.run(cmd, check=True)  # hit
        """,
    ),
    (
        "PCA008",
        "major",
        """
        import urllib.request

        async def handler(url):
            return urllib.request.urlopen(url)  # hit
        """,
    ),
    (
        "PCA008",
        "major",
        """
        async def handler(sock):
            return sock.recv(1024)  # hit
        """,
    ),
    # --- PCA009: blocking file I/O inside async def ---
    (
        "PCA009",
        "minor",
        """
        async def handler(path):
            with open(path) as fh:  # hit
                return fh.read()
        """,
    ),
    (
        "PCA009",
        "minor",
        """
        from pathlib import Path

        async def handler(path):
            return Path(path).read_text()  # hit
        """,
    ),
]


NEGATIVE: list[tuple[str, str]] = [
    # --- PCA001 ---
    ("PCA001", "import requests\n\ndef one(url):\n    return requests.get(url)\n"),
    (
        "PCA001",
        """
        def counts(d, keys, cache, environ):
            for k in keys:
                d.get(k)
                cache.get(k)
                environ.get(k)
                d["x"].get(k)
        """,
    ),
    (
        "PCA001",
        """
        import requests

        def retry():
            for attempt in range(3):
                r = requests.get(URL, headers={"a": TOKEN}, timeout=5)
        """,
    ),
    (
        "PCA001",
        """
        from flask import session

        def names(keys, request):
            for k in keys:
                session.get(k)
                request.session.get(k)
        """,
    ),
    (
        "PCA001",
        """
        import asyncio

        async def load(client, urls):
            return await asyncio.gather(*(client.get(u) for u in urls))
        """,
    ),
    (
        "PCA001",
        """
        import requests

        def rows(db, url):
            for row in db.execute("SELECT 1"):
                pass
            return [x for x in requests.get(url).json()]
        """,
    ),
    (
        "PCA001",
        """
        import requests

        def callbacks(urls):
            out = []
            for u in urls:
                def fetch(u=u):
                    return requests.get(u)
                out.append(fetch)
                out.append(lambda u=u: requests.get(u))
            return out
        """,
    ),
    (
        "PCA001",
        """
        def purge(session, objs, df, exprs):
            for obj in objs:
                session.delete(obj)
            for e in exprs:
                df.query(e)
        """,
    ),
    # --- PCA002 ---
    (
        "PCA002",
        """
        from pathlib import Path

        def read_all(names, paths, term):
            for name in names:
                with open(name) as fh:
                    fh.read()
            for p in paths:
                p.read_text()
                Path(BASE, p).read_bytes()
                term.write_text("ok")
        """,
    ),
    ("PCA002", "def once():\n    with open('config.ini') as fh:\n        return fh.read()\n"),
    # --- PCA003 ---
    (
        "PCA003",
        """
        import re

        WORD = re.compile(r"[a-z]+")

        def scan(lines, patterns):
            for line in lines:
                WORD.match(line)
            compiled = [re.compile(p) for p in patterns]
            return re.compile("x"), compiled
        """,
    ),
    # --- PCA004 ---
    (
        "PCA004",
        """
        def render(rows, prefix):
            parts = []
            total = 0
            for row in rows:
                parts.append(str(row))
                total += row.size
                prefix += "x"
            return "".join(parts), total, prefix
        """,
    ),
    (
        "PCA004",
        """
        def render(rows):
            text = ""
            text = compute()
            for row in rows:
                text += row
            return text
        """,
    ),
    ("PCA004", "def once(a):\n    s = ''\n    s += a\n    return s\n"),
    # --- PCA005 ---
    (
        "PCA005",
        """
        from collections import deque

        def drain(stack, dq, first):
            d = {}
            while stack:
                stack.pop()
                stack.pop(-1)
                dq.popleft()
                d.pop(0)
            return first.pop(0)
        """,
    ),
    # --- PCA006 ---
    (
        "PCA006",
        """
        def pick(rows, params):
            allowed = {"a", "b"}
            lookup = dict.fromkeys(params)
            names = ["a", "b"]
            ok = "a" in names
            for r in rows:
                if r in ("a", "b") or r in {"c"} or r in [1, 2, 3] or r in allowed:
                    pass
                if r in lookup or r in params:
                    pass
                row = [r.a, r.b]
                if "a" in row:
                    pass
                if r in [c for c in r.children]:
                    pass
            return ok
        """,
    ),
    # --- PCA007 ---
    (
        "PCA007",
        """
        import json

        def parse(lines, raw):
            out = [json.loads(line) for line in lines]
            for line in lines:
                text = line.strip()
                out.append(json.loads(text))
            return out, json.loads(raw)
        """,
    ),
    # --- PCA008 / PCA009 ---
    (
        "PCA008",
        """
        import asyncio
        import time

        def sync_handler():
            time.sleep(1)

        async def handler():
            await asyncio.sleep(1)
        """,
    ),
    (
        "PCA008",
        """
        import asyncio
        import functools
        import subprocess
        import time

        import anyio
        import requests

        async def handler(loop, url, sock, cmd):
            def blocking():
                time.sleep(1)
            await asyncio.to_thread(time.sleep, 1)
            await asyncio.to_thread(requests.get, url)
            await loop.run_in_executor(None, functools.partial(subprocess.run, cmd))
            await anyio.to_thread.run_sync(lambda: subprocess.run(cmd))
            await loop.sock_recv(sock, 10)
            return blocking
        """,
    ),
    (
        "PCA009",
        """
        import asyncio

        import aiofiles
        import anyio

        async def handler(path):
            async with aiofiles.open(path) as fh:
                await fh.read()
            await anyio.Path(path).read_text()
            await asyncio.to_thread(open(path).read)
            reader = lambda: open(path).read()
            console.write_text(path)
            return reader
        """,
    ),
]


@pytest.mark.parametrize(("rule", "severity", "source"), POSITIVE)
def test_rule_fires_on_the_marked_lines(rule: str, severity: str, source: str) -> None:
    result = run(source)
    hits = fired(result, rule)
    assert [f.line for f in hits] == marked(source)
    assert {f.severity for f in hits} == {severity}
    assert all(f.source == f"perf-ast:{rule}" and f.agent == "performance" for f in hits)


@pytest.mark.parametrize(("rule", "source"), NEGATIVE)
def test_rule_stays_quiet(rule: str, source: str) -> None:
    result = run(source)
    assert result.skipped == ()
    assert fired(result, rule) == []


def test_the_positive_cases_cover_every_rule_and_a_negative_each() -> None:
    assert {rule for rule, _, _ in POSITIVE} == set(RULES)
    assert {rule for rule, _ in NEGATIVE} == set(RULES)


def test_while_loops_count_for_less_than_for_loops() -> None:
    result = run(
        """
        import requests

        def both(items, queue):
            for item in items:
                requests.post(URL, json=item)
            while queue:
                item = queue.pop()
                requests.post(URL, json=item)
        """
    )
    by_line = {f.line: f.confidence for f in fired(result, "PCA001")}
    assert by_line.keys() == {6, 9}
    assert by_line[9] < by_line[6]


def test_a_compiled_regex_is_surer_than_a_cached_module_call() -> None:
    result = run(
        """
        import re

        def scan(lines):
            for line in lines:
                re.compile("a+").match(line)
                re.match("b+", line)
        """
    )
    confidence = {f.line: f.confidence for f in fired(result, "PCA003")}
    assert confidence[6] > confidence[7]


def test_blocking_network_call_in_an_async_loop_reports_both_rules() -> None:
    result = run(
        """
        import requests

        async def handler(urls):
            for url in urls:
                requests.get(url)
        """
    )
    assert sorted((f.rule, f.line) for f in result.findings) == [("PCA001", 6), ("PCA008", 6)]


def test_nested_loops_and_functions_are_tracked() -> None:
    result = run(
        """
        import json

        def outer(groups):
            for group in groups:
                def helper(x):
                    return json.loads(RAW)
                for _ in group:
                    json.loads(group.raw)
            return json.loads(RAW)
        """
    )
    # Only the inner loop re-parses `group.raw`: the helper's body is not the loop's, and
    # the last call runs once.
    assert [(f.rule, f.line) for f in result.findings] == [("PCA007", 9)]


def test_finding_fields_and_fingerprint() -> None:
    source = "import time\n\nasync def h():\n    time.sleep(\n        1,\n    )\n"
    ctx = context_from({PATH: source})
    [finding] = PerfRulesAnalyzer().run(ctx).findings
    assert finding.rule == "PCA008"
    assert finding.category == "performance"
    assert (finding.line, finding.end_line) == (4, 6)
    assert "`time.sleep`" in finding.title and "async def" in finding.title
    assert "asyncio.to_thread" in finding.body
    assert 0.9 <= finding.confidence <= 1.0
    assert finding.fingerprint == fingerprint("performance", "PCA008", PATH, "    time.sleep(")


def test_one_finding_per_rule_and_line() -> None:
    result = run(
        "import requests\n\ndef f(a):\n    for x in a: requests.get(x); requests.post(x)\n"
    )
    assert [(f.rule, f.line) for f in result.findings] == [("PCA001", 4)]


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="PEP 695 parses from Python 3.12 on")
def test_newer_syntax_is_skipped_and_other_files_still_analyzed() -> None:
    result = run(
        "type Alias = int\n",
        path="app/new.py",
        **{"app/old.py": "import time\n\nasync def h():\n    time.sleep(1)\n"},
    )
    assert [(s.path, s.reason, s.by) for s in result.skipped] == [
        ("app/new.py", PARSE_SKIP_REASON, "perf-ast")
    ]
    assert "3.11" in PARSE_SKIP_REASON
    assert [(f.path, f.rule) for f in result.findings] == [("app/old.py", "PCA008")]


def test_broken_code_is_skipped_not_raised() -> None:
    result = run("def broken(:\n    pass\n")
    assert [(s.path, s.reason) for s in result.skipped] == [(PATH, PARSE_SKIP_REASON)]
    assert "ruff's PERF/ASYNC rules still cover it" in result.skipped[0].reason
    assert result.findings == ()


def test_pathologically_deep_code_is_skipped() -> None:
    deep = "x = " + " + ".join(["a"] * 3000) + "\n"
    result = run(deep)
    assert [s.path for s in result.skipped] == [PATH]
    assert "nested too deeply" in result.skipped[0].reason


def test_non_python_files_are_neither_analyzed_nor_skipped() -> None:
    source = "import time\nasync def h():\n    time.sleep(1)\n"
    result = run(source, path="docs/example.md", **{"app/tool.txt": source})
    assert result == AnalyzerResult(tool="perf-ast")


def test_analyzer_meets_the_protocol() -> None:
    analyzer: Analyzer = PerfRulesAnalyzer()
    assert analyzer.name == "perf-ast"


def test_rule_table_is_well_formed() -> None:
    assert list(RULES) == [f"PCA{n:03d}" for n in range(1, len(RULES) + 1)]
    for rule_id, rule in RULES.items():
        assert rule.id == rule_id
        assert "{subject}" in rule.title
        assert rule.severity in SEVERITIES and rule.severity in ("major", "minor")
        assert 0.0 < rule.confidence <= 1.0
        assert len(rule.body) > 80 and "\n" not in rule.body
