"""Our own AST performance rules for what ruff's PERF/ASYNC rules do not see."""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from agents.analyzers.base import is_python, make_finding, parse_python
from agents.analyzers.perf_scope import ScopeWalker, dotted, import_aliases, qualname
from agents.model import AnalyzerResult, Finding, ReviewContext, Severity, Skipped

TOOL = "perf-ast"
AGENT: Literal["performance"] = "performance"
_TOO_DEEP = "nested too deeply for the AST rules; ruff's PERF/ASYNC rules still cover it"
PARSE_SKIP_REASON = (
    f"could not parse with Python {sys.version_info.major}.{sys.version_info.minor}'s ast "
    "(newer syntax?); ruff's PERF/ASYNC rules still cover it"
)

RuleId = Literal[
    "PCA001", "PCA002", "PCA003", "PCA004", "PCA005", "PCA006", "PCA007", "PCA008", "PCA009"
]


@dataclass(frozen=True)
class Rule:
    """One AST rule: what it flags, why it costs, how sure a static heuristic can be."""

    id: RuleId
    # Formatted with `subject`, the flagged call or name as written.
    title: str
    body: str
    severity: Severity
    confidence: float


def _rule(rule_id: RuleId, severity: Severity, confidence: float, title: str, body: str) -> Rule:
    """Build a rule, normalising the body's line breaks."""
    return Rule(rule_id, title, " ".join(body.split()), severity, confidence)


RULES: Mapping[RuleId, Rule] = {
    r.id: r
    for r in (
        _rule(
            "PCA001",
            "major",
            0.75,
            "N+1: `{subject}` makes a network or database round trip on every iteration",
            """Each iteration waits for one request or query, so the loop costs N round trips
            of latency. Fetch in one batch (an `IN (...)` query, `select_related` /
            `prefetch_related` / a join, `executemany`, a bulk endpoint), or issue the
            requests concurrently (`asyncio.gather` with one shared async client).""",
        ),
        _rule(
            "PCA002",
            "minor",
            0.7,
            "File I/O: `{subject}` opens the same file on every iteration",
            """The path does not change inside the loop, so every iteration pays for an open
            (and a read or write) that could happen once. Read the file once before the
            loop, or open it once and write through the same handle.""",
        ),
        _rule(
            "PCA003",
            "minor",
            0.6,
            "Regex: `{subject}` compiles the same pattern inside a loop",
            """`re` keeps a small cache of compiled patterns, so this mostly costs a cache
            lookup per iteration, but a full recompile once the cache overflows. Compile the
            pattern once at module level (`PATTERN = re.compile(...)`) and call its methods
            in the loop.""",
        ),
        _rule(
            "PCA004",
            "minor",
            0.5,
            "Quadratic string building: `{subject}` grows by concatenation inside a loop",
            """Strings and bytes are immutable, so each `+=` may copy everything built so far:
            O(n²) in total. CPython sometimes resizes a str in place, but not for bytes, not
            when another reference exists, and not on other interpreters. Append the pieces
            to a list and `''.join(...)` them once (`bytearray` or `io.BytesIO` for
            bytes).""",
        ),
        _rule(
            "PCA005",
            "minor",
            0.6,
            "`{subject}` shifts the whole list on every iteration",
            """Removing or inserting at the front of a list moves every other element, so the
            loop is O(n²). Use `collections.deque` (`popleft()` / `appendleft()`), or iterate
            and build a new list.""",
        ),
        _rule(
            "PCA006",
            "minor",
            0.5,
            "Membership test against list `{subject}` inside a loop",
            """`x in some_list` scans the list element by element, so testing inside a loop is
            O(n·m). Build a `set` (or `frozenset`) once before the loop and test against it;
            keep the list too if its order matters.""",
        ),
        _rule(
            "PCA007",
            "minor",
            0.6,
            "`{subject}` re-parses the same input on every iteration",
            """The argument does not change inside the loop, so every iteration repeats the
            same parse. Parse once before the loop; if the loop mutates the result, parse once
            and `copy.deepcopy` it (or restructure so it need not be mutated).""",
        ),
        _rule(
            "PCA008",
            "major",
            0.85,
            "Blocking call `{subject}` inside `async def` stalls the event loop",
            """While this call blocks, no other task on the event loop runs: every concurrent
            request waits. Use the async equivalent (`await asyncio.sleep`, an async HTTP
            client, `asyncio.create_subprocess_exec` / `anyio.run_process`) or run it in a
            worker thread with `asyncio.to_thread` / `anyio.to_thread.run_sync`. ruff's
            ASYNC2xx rules may report the same line; the review merges them.""",
        ),
        _rule(
            "PCA009",
            "minor",
            0.7,
            "Blocking file I/O `{subject}` inside `async def`",
            """File reads and writes block the event loop for as long as the disk takes. Use
            `anyio.Path` / `anyio.open_file` (or aiofiles), or move the I/O into
            `asyncio.to_thread`. ruff's ASYNC230/ASYNC240 may report the same line; the
            review merges them.""",
        ),
    )
}


def _words(text: str) -> frozenset[str]:
    """Return the space-separated words of `text`."""
    return frozenset(text.split())


_HTTP_VERBS = _words("get post put patch delete head options request stream send")
_HTTP_MODULES = _words("requests httpx")
_NETWORK_CALLS = _words(
    "urllib.request.urlopen urllib3.request socket.create_connection socket.getaddrinfo"
    " socket.gethostbyname socket.gethostbyname_ex socket.gethostbyaddr"
)
_SUBPROCESS_CALLS = _words(
    "subprocess.run subprocess.call subprocess.check_call subprocess.check_output"
    " subprocess.getoutput subprocess.getstatusoutput os.system os.popen"
)
_SOCKET_METHODS = _words("recv recv_into recvfrom send sendall sendto accept connect")
_HTTP_HANDLES = _words("session client http https api")
_DB_HANDLES = _words("cursor cur conn connection db database session engine tx txn transaction")
_DB_METHODS = _words("execute query scalar scalars fetch fetchrow fetchval")
# Method names specific enough to a database driver (pymongo) to need no receiver evidence.
_MONGO_METHODS = _words(
    "find_one insert_one update_one delete_one replace_one count_documents find_one_and_update"
)
_ORM_METHODS = _words(
    "get filter filter_by exclude create get_or_create update_or_create count exists first"
    " last aggregate values values_list in_bulk one one_or_none"
)
# Dict-like objects named like handles: Flask's and Django's sessions.
_DICT_SESSIONS = _words("flask.session request.session self.request.session")
_OPENERS = _words("open io.open codecs.open")
_PATH_IO = _words("read_text read_bytes write_text write_bytes")
# Other objects have read_text()/write_text() too (rich's terminal): want evidence of a path.
_PATH_METHODS = _words("joinpath with_name with_stem with_suffix resolve absolute expanduser")
_PATH_WORDS = _words("path file dir directory folder root parent")
_REGEX_FUNCS = _words("compile match search fullmatch findall finditer sub subn split")
_PARSERS = _words(
    "json.loads orjson.loads ujson.loads yaml.load yaml.safe_load yaml.full_load"
    " yaml.unsafe_load tomllib.loads tomli.loads toml.loads ast.parse ast.literal_eval"
    " xml.etree.ElementTree.fromstring xml.etree.ElementTree.XML lxml.etree.fromstring"
    " defusedxml.ElementTree.fromstring xml.dom.minidom.parseString pickle.loads"
    " datetime.datetime.strptime time.strptime dateutil.parser.parse dateutil.parser.isoparse"
)
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")


def _tokens(name: str) -> frozenset[str]:
    """Split `httpClient` / `db_conn` into lower-case words."""
    return frozenset(_CAMEL.sub(r"\1_\2", name).lower().split("_"))


def _subject(node: ast.expr) -> str:
    """Return the source of `node`, shortened for a title."""
    text = ast.unparse(node)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True)
class Hit:
    """One rule matched at one node."""

    rule: RuleId
    line: int
    end_line: int | None
    subject: str
    confidence: float


class _RuleVisitor(ScopeWalker):
    """Apply every rule while the walker tracks scopes and loops."""

    def __init__(self, aliases: Mapping[str, str]) -> None:
        super().__init__(aliases)
        self.hits: list[Hit] = []

    def hit(self, rule: RuleId, node: ast.AST, subject: ast.expr, confidence: float) -> None:
        """Record that `rule` matched `node`."""
        line, end = getattr(node, "lineno", 1), getattr(node, "end_lineno", None)
        self.hits.append(Hit(rule, line, end, _subject(subject), confidence))

    def on_call(self, node: ast.Call, awaited: bool) -> None:
        """Check a call against the loop rules and the async rules."""
        q = qualname(node.func, self.aliases) or ""
        if self.frame.loop is not None:
            self._round_trip(node, q, awaited)
            self._same_file(node, q)
            self._regex(node, q)
            self._reparse(node, q)
            self._shift(node)
        if self.frame.is_async and not self.frame.offloaded and not awaited:
            self._blocking(node, q)

    def on_assign(self, node: ast.Assign | ast.AugAssign) -> None:
        """Flag `s += ...` / `s = s + ...` on a str or bytes inside a loop."""
        if self.frame.loop is None:
            return
        name = _concat_target(node)
        if name is None:
            return
        if self.frame.bound_as(name.id, "bytes"):
            self.hit("PCA004", node, name, 0.75)
        elif self.frame.bound_as(name.id, "str"):
            self.hit("PCA004", node, name, RULES["PCA004"].confidence)

    def on_compare(self, node: ast.Compare) -> None:
        """Flag `x in <list>` inside a loop."""
        loop = self.frame.loop
        if loop is None:
            return
        for op, container in zip(node.ops, node.comparators, strict=True):
            if not isinstance(op, ast.In | ast.NotIn):
                continue
            if isinstance(container, ast.Name) and loop.invariant(container):
                if self.frame.bound_as(container.id, "list"):
                    self.hit("PCA006", node, container, RULES["PCA006"].confidence)
            elif (source := _rebuilt_from(container)) is not None and loop.invariant(source):
                self.hit("PCA006", node, container, 0.7)

    def _round_trip(self, node: ast.Call, q: str, awaited: bool) -> None:
        """Flag an HTTP request or database query made once per item (N+1)."""
        # Same arguments every time is a retry or polling loop, not one request per item.
        args = [*node.args, *(k.value for k in node.keywords), *self.chain_args(node)]
        if not self.frame.varies(args):
            return
        if _network_function(q):
            confidence: float | None = 0.85
        elif self.frame.is_async and not awaited:
            return  # an un-awaited call in async code builds a coroutine for gather()
        else:
            confidence = _query_confidence(node, self.aliases)
        if confidence is None:
            return
        if self.frame.loop is not None and self.frame.loop.kind == "while":
            confidence -= 0.15  # while loops are often pagination, which cannot be batched
        self.hit("PCA001", node, node.func, confidence)

    def _same_file(self, node: ast.Call, q: str) -> None:
        """Flag opening or reading the same path on every iteration."""
        path = _file_path(node, q)
        loop = self.frame.loop
        if path is not None and loop is not None and loop.invariant(path):
            self.hit("PCA002", node, node.func, RULES["PCA002"].confidence)

    def _regex(self, node: ast.Call, q: str) -> None:
        """Flag a regex function called with a pattern that does not change in the loop."""
        module, _, func = q.rpartition(".")
        pattern = _first_arg(node, "pattern")
        loop = self.frame.loop
        if module != "re" or func not in _REGEX_FUNCS or pattern is None or loop is None:
            return
        if loop.invariant(pattern):
            self.hit("PCA003", node, node.func, 0.6 if func == "compile" else 0.35)

    def _reparse(self, node: ast.Call, q: str) -> None:
        """Flag parsing an input that does not change in the loop."""
        data = _first_arg(node, "s")
        loop = self.frame.loop
        if q in _PARSERS and data is not None and loop is not None and loop.invariant(data):
            self.hit("PCA007", node, node.func, RULES["PCA007"].confidence)

    def _shift(self, node: ast.Call) -> None:
        """Flag `xs.pop(0)` / `xs.insert(0, x)` inside a loop."""
        func = node.func
        if not isinstance(func, ast.Attribute) or node.keywords or not _front_index(node):
            return
        receiver = func.value
        if isinstance(receiver, ast.Name) and self.frame.bound_as(receiver.id, "dict"):
            return
        listy = isinstance(receiver, ast.Name) and self.frame.bound_as(receiver.id, "list")
        self.hit("PCA005", node, node, 0.75 if listy else RULES["PCA005"].confidence)

    def _blocking(self, node: ast.Call, q: str) -> None:
        """Flag a call that blocks the event loop inside `async def`."""
        if q == "time.sleep":
            self.hit("PCA008", node, node.func, 0.95)
        elif _network_function(q):
            self.hit("PCA008", node, node.func, 0.9)
        elif q in _SUBPROCESS_CALLS:
            self.hit("PCA008", node, node.func, 0.85)
        elif _method(node, _SOCKET_METHODS) and _receiver_tokens(node) & {"sock", "socket"}:
            # Event-loop internals call non-blocking sockets this way too.
            self.hit("PCA008", node, node.func, 0.5)
        elif _file_path(node, q) is not None:
            self.hit("PCA009", node, node.func, RULES["PCA009"].confidence)


def _network_function(q: str) -> bool:
    """Tell whether the qualified name `q` is a blocking network function (`requests.get`)."""
    module, _, func = q.rpartition(".")
    return (module in _HTTP_MODULES and func in _HTTP_VERBS) or q in _NETWORK_CALLS


def _query_confidence(node: ast.Call, aliases: Mapping[str, str]) -> float | None:
    """Return how sure we are that a method call is an HTTP request or a database query."""
    path = dotted(node.func) or ""
    parts = path.split(".")
    if len(parts) >= 3 and parts[-2] == "objects" and parts[-1] in _ORM_METHODS:
        return 0.75  # Django: Model.objects.get(...)
    if len(parts) >= 3 and parts[-2] == "query" and parts[-3][:1].isupper():
        return 0.7  # Flask-SQLAlchemy: Model.query.filter_by(...)
    if _method(node, _MONGO_METHODS) and parts[0] not in ("self", "cls"):
        return 0.7
    return _handle_confidence(node, aliases)


def _handle_confidence(node: ast.Call, aliases: Mapping[str, str]) -> float | None:
    """Judge a method call by its receiver's name: `session.get`, `cursor.execute`."""
    if not isinstance(node.func, ast.Attribute):
        return None
    tokens = _receiver_tokens(node)
    if qualname(node.func.value, aliases) in _DICT_SESSIONS:
        return None
    if _method(node, _DB_METHODS) and tokens & _DB_HANDLES:
        return 0.7
    # An ORM session's delete() only marks a row; a requests.Session's is a request.
    verbs = _HTTP_VERBS - {"delete"} if tokens & _HTTP_HANDLES == {"session"} else _HTTP_VERBS
    if _method(node, verbs) and tokens & _HTTP_HANDLES:
        return 0.65
    return None


def _receiver_tokens(node: ast.Call) -> frozenset[str]:
    """Return the words of the last name in the receiver: `self.db_conn` -> {db, conn}."""
    if not isinstance(node.func, ast.Attribute):
        return frozenset()
    path = dotted(node.func.value)
    return _tokens(path.rpartition(".")[2]) if path else frozenset()


def _method(node: ast.Call, names: frozenset[str]) -> bool:
    """Tell whether `node` calls a method named one of `names`."""
    return isinstance(node.func, ast.Attribute) and node.func.attr in names


def _first_arg(node: ast.Call, keyword: str) -> ast.expr | None:
    """Return the first positional argument, or the keyword argument of that name."""
    if node.args:
        first = node.args[0]
        return None if isinstance(first, ast.Starred) else first
    return next((k.value for k in node.keywords if k.arg == keyword), None)


def _file_path(node: ast.Call, q: str) -> ast.expr | None:
    """Return the path a file-opening call uses: `open(p)` or `Path(p).read_text()`."""
    if q in _OPENERS:
        return _first_arg(node, "file")
    if isinstance(node.func, ast.Attribute) and node.func.attr in _PATH_IO:
        receiver = node.func.value
        return receiver if _path_like(receiver) else None
    return None


def _path_like(expr: ast.expr) -> bool:
    """Tell whether `expr` looks like a filesystem path: `Path(...)`, `base / x`, `cfg_path`."""
    match expr:
        case ast.Call(func=func):
            name = (dotted(func) or "").rpartition(".")[2]
            return name == "Path" or name in _PATH_METHODS
        case ast.BinOp(op=ast.Div()):
            return True
        case ast.Name() | ast.Attribute():
            return bool(_tokens((dotted(expr) or "").rpartition(".")[2]) & _PATH_WORDS)
    return False


def _front_index(node: ast.Call) -> bool:
    """Tell whether `node` is `.pop(0)` or `.insert(0, x)`."""
    func = node.func
    if not isinstance(func, ast.Attribute) or not node.args:
        return False
    first = node.args[0]
    zero = isinstance(first, ast.Constant) and type(first.value) is int and first.value == 0
    arity = {"pop": 1, "insert": 2}.get(func.attr)
    return zero and len(node.args) == arity


def _concat_target(node: ast.Assign | ast.AugAssign) -> ast.Name | None:
    """Return `s` for `s += x` or `s = s + x`, else None."""
    match node:
        case ast.AugAssign(target=ast.Name() as target, op=ast.Add()):
            return target
        case ast.Assign(
            targets=[ast.Name(id=name) as target],
            value=ast.BinOp(op=ast.Add(), left=ast.Name(id=left)),
        ) if left == name:
            return target
    return None


def _rebuilt_from(expr: ast.expr) -> ast.expr | None:
    """Return what `[... for x in src]` or `list(src)` is built from, else None."""
    match expr:
        case ast.ListComp(generators=[first, *_]):
            return first.iter
        case ast.Call(func=ast.Name(id="list"), args=[source], keywords=[]):
            return source
    return None


def scan(tree: ast.Module) -> list[Hit]:
    """Apply every rule to a parsed module; return the hits in source order, one per rule and line."""
    visitor = _RuleVisitor(import_aliases(tree))
    visitor.visit(tree)
    unique = {(h.rule, h.line): h for h in reversed(visitor.hits)}
    return sorted(unique.values(), key=lambda h: (h.line, h.rule))


def _finding(ctx: ReviewContext, path: str, hit: Hit) -> Finding:
    """Turn a hit into a performance finding."""
    rule = RULES[hit.rule]
    return make_finding(
        ctx,
        agent=AGENT,
        severity=rule.severity,
        confidence=hit.confidence,
        path=path,
        line=hit.line,
        end_line=hit.end_line,
        title=rule.title.format(subject=hit.subject),
        body=rule.body,
        rule=rule.id,
        source=f"{TOOL}:{rule.id}",
    )


class PerfRulesAnalyzer:
    """Our AST performance rules: N+1, work repeated in loops, blocking calls in async code."""

    name = TOOL

    def run(self, ctx: ReviewContext) -> AnalyzerResult:
        """Analyze every changed Python file; files we cannot parse are skipped, not fatal."""
        findings: list[Finding] = []
        skipped: list[Skipped] = []
        for path in sorted(p for p in ctx.files if is_python(p)):
            outcome = _analyze(ctx, path)
            if isinstance(outcome, Skipped):
                skipped.append(outcome)
            else:
                findings.extend(outcome)
        return AnalyzerResult(tool=TOOL, findings=tuple(findings), skipped=tuple(skipped))


def _analyze(ctx: ReviewContext, path: str) -> list[Finding] | Skipped:
    """Return the findings for one file, or why it was skipped."""
    try:
        tree = parse_python(ctx.files[path], filename=path)
    except RecursionError:
        return Skipped(path=path, reason=_TOO_DEEP, by=TOOL)
    except (SyntaxError, ValueError, MemoryError):
        return Skipped(path=path, reason=PARSE_SKIP_REASON, by=TOOL)
    try:
        return [_finding(ctx, path, hit) for hit in scan(tree)]
    except RecursionError:
        return Skipped(path=path, reason=_TOO_DEEP, by=TOOL)
    # The reviewed code must never sink the review: an unforeseen shape costs this file only.
    except Exception as exc:
        return Skipped(path=path, reason=f"the AST rules failed on this file ({exc!r})", by=TOOL)
