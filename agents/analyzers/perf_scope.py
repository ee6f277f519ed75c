"""Scope and loop tracking for the AST performance rules: functions, loops, bindings."""

from __future__ import annotations

import ast
import functools
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

# How a name is bound in one function; "extend" is `x = x + ...`, which keeps the kind.
BindingKind = Literal["str", "bytes", "list", "dict", "extend", "other"]
LoopKind = Literal["for", "while", "comprehension"]
ScopeNode = ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef
Comprehension = ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp

_NESTED_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_STORE = (ast.Store, ast.Del)
_BLOCKS = (ast.stmt, ast.excepthandler, ast.match_case)
# Calls that run their callable argument in a worker thread, off the event loop.
OFFLOADERS = frozenset(
    {
        "asyncio.to_thread",
        "anyio.to_thread.run_sync",
        "trio.to_thread.run_sync",
        "starlette.concurrency.run_in_threadpool",
        "fastapi.concurrency.run_in_threadpool",
        "asgiref.sync.sync_to_async",
    }
)
# Cheap, pure constructors: `Path(p)` is as loop-invariant as `p` itself.
_PURE_CALLS = frozenset({"Path", "pathlib.Path", "PurePath", "os.path.join", "str"})


def dotted(expr: ast.AST) -> str | None:
    """Return `a.b.c` for a chain of attribute accesses on a name, else None."""
    if isinstance(expr, ast.Name):
        return expr.id
    if isinstance(expr, ast.Attribute):
        base = dotted(expr.value)
        return f"{base}.{expr.attr}" if base else None
    return None


def _is_expr(node: ast.AST) -> bool:
    """Tell an expression child from an operator or context child."""
    return isinstance(node, ast.expr)


def import_aliases(tree: ast.AST) -> dict[str, str]:
    """Map each imported local name to the qualified name it stands for."""
    aliases: dict[str, str] = {}
    for node in _statements(tree):
        if isinstance(node, ast.Import):
            # `import a.b` binds `a`, which is already its own qualified name.
            aliases.update({a.asname: a.name for a in node.names if a.asname})
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            aliases.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
    return aliases


def _statements(tree: ast.AST) -> Iterator[ast.AST]:
    """Yield every statement in `tree`, not descending into expressions (imports are statements)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(c for c in ast.iter_child_nodes(node) if isinstance(c, _BLOCKS))


def qualname(expr: ast.AST, aliases: Mapping[str, str]) -> str | None:
    """Resolve `ET.fromstring` to `xml.etree.ElementTree.fromstring` through the imports."""
    path = dotted(expr)
    if path is None:
        return None
    head, _, rest = path.partition(".")
    base = aliases.get(head, head)
    return f"{base}.{rest}" if rest else base


def local_nodes(roots: Iterable[ast.AST]) -> Iterator[ast.AST]:
    """Yield `roots` and their descendants, parents first, without entering nested scopes."""
    stack = list(roots)[::-1]
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, _NESTED_SCOPES):
            stack.extend(reversed(list(ast.iter_child_nodes(node))))


class Loop:
    """One loop or comprehension, and what each of its iterations rebinds."""

    def __init__(self, kind: LoopKind, parts: Sequence[ast.AST]) -> None:
        self.kind = kind
        self._parts = parts

    @functools.cached_property
    def names(self) -> frozenset[str]:
        """Return the names an iteration binds."""
        return self._rebound[0]

    @functools.cached_property
    def paths(self) -> frozenset[str]:
        """Return the dotted objects an iteration stores into: `self.x = ...`, `d[k] = ...`."""
        return self._rebound[1]

    @functools.cached_property
    def _rebound(self) -> tuple[frozenset[str], frozenset[str]]:
        """Scan the loop's code once, only if a rule asks about invariance."""
        return rebound(self._parts)

    def invariant(self, expr: ast.AST) -> bool:
        """Tell whether `expr` evaluates to the same value on every iteration."""
        match expr:
            case ast.Constant():
                return True
            case ast.Name(id=name):
                return name not in self.names
            case ast.Attribute(value=value):
                path = dotted(expr)
                return path is not None and self.invariant(value) and not self._stored(path)
            case ast.Subscript(value=value, slice=index):
                return self.invariant(value) and self.invariant(index)
            case ast.JoinedStr(values=values):
                return all(self.invariant(v) for v in values)
            case ast.FormattedValue(value=value):
                return self.invariant(value)
            case ast.BinOp(left=left, right=right):
                return self.invariant(left) and self.invariant(right)
            case ast.Call(func=func, args=args, keywords=[]) if dotted(func) in _PURE_CALLS:
                return all(self.invariant(a) for a in args)
            # Containers and operators: as invariant as their parts.
            case (
                ast.Tuple()
                | ast.List()
                | ast.Set()
                | ast.Dict()
                | ast.Compare()
                | ast.BoolOp()
                | ast.UnaryOp()
                | ast.IfExp()
                | ast.Starred()
            ):
                return all(self.invariant(c) for c in ast.iter_child_nodes(expr) if _is_expr(c))
        return False

    def _stored(self, path: str) -> bool:
        """Tell whether the loop stores into `path`, into a part of it, or replaces it."""
        return any(
            p == path or p.startswith(path + ".") or path.startswith(p + ".") for p in self.paths
        )


def rebound(parts: Iterable[ast.AST]) -> tuple[frozenset[str], frozenset[str]]:
    """Return the names and the dotted objects that `parts` (a loop's code) store into."""
    names: set[str] = set()
    paths: set[str] = set()
    for node in local_nodes(parts):
        if isinstance(node, ast.Name) and isinstance(node.ctx, _STORE):
            names.add(node.id)
        elif isinstance(node, ast.Attribute | ast.Subscript) and isinstance(node.ctx, _STORE):
            path = dotted(node.value if isinstance(node, ast.Subscript) else node)
            paths.update([path] if path else [])
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).partition(".")[0] for a in node.names)
        elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and node.name:
            names.add(node.name)
    return frozenset(names), frozenset(paths)


def _classify(name: str, value: ast.expr) -> BindingKind:
    """Tell what kind of object `name = value` binds."""
    match value:
        case ast.Constant(value=str()) | ast.JoinedStr():
            return "str"
        case ast.Constant(value=bytes()):
            return "bytes"
        case ast.List() | ast.ListComp() | ast.Call(func=ast.Name(id="list")):
            return "list"
        case ast.Dict() | ast.DictComp() | ast.Call(func=ast.Name(id="dict")):
            return "dict"
        case ast.BinOp(op=ast.Add() | ast.Mult(), left=left, right=right) if name in (
            dotted(left),
            dotted(right),
        ):
            return "extend"
    return "other"


def _params(scope: ScopeNode) -> list[str]:
    """Return the parameter names of a function or lambda; none for other scopes."""
    if not isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
        return []
    a = scope.args
    extra = [v for v in (a.vararg, a.kwarg) if v is not None]
    return [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs, *extra)]


def _body(scope: ScopeNode) -> list[ast.AST]:
    """Return the statements (or the lambda's expression) a scope runs."""
    return [scope.body] if isinstance(scope, ast.Lambda) else list(scope.body)


def _binds(node: ast.AST, handled: set[int]) -> Iterator[tuple[str, BindingKind]]:
    """Yield the names `node` binds in its scope and what kind each is."""
    match node:
        case ast.Assign(targets=targets, value=value):
            for target in targets:
                if isinstance(target, ast.Name):
                    handled.add(id(target))
                    yield target.id, _classify(target.id, value)
        case (
            ast.AnnAssign(target=ast.Name(id=name) as target, value=value)
            | ast.NamedExpr(target=ast.Name(id=name) as target, value=value)
        ) if value is not None:
            handled.add(id(target))
            yield name, _classify(name, value)
        case ast.AugAssign(target=ast.Name() as target):
            # `x += y` keeps whatever kind `x` already had.
            handled.add(id(target))
        case ast.comprehension(target=target):
            # Comprehension variables live in the comprehension's own scope.
            handled.update(id(n) for n in ast.walk(target))
        case ast.FunctionDef(name=name) | ast.AsyncFunctionDef(name=name) | ast.ClassDef(name=name):
            yield name, "other"
        case ast.Import(names=aliases) | ast.ImportFrom(names=aliases):
            yield from (((a.asname or a.name).partition(".")[0], "other") for a in aliases)
        case ast.Global(names=names) | ast.Nonlocal(names=names):
            yield from ((n, "other") for n in names)
        case ast.Name(id=name, ctx=ast.Store()) if id(node) not in handled:
            yield name, "other"
        case ast.ExceptHandler(name=str() as name) | ast.MatchAs(name=str() as name):
            yield name, "other"


def bindings(scope: ScopeNode) -> dict[str, frozenset[BindingKind]]:
    """Return, for each name bound in `scope` itself, every kind it is bound to."""
    kinds: defaultdict[str, set[BindingKind]] = defaultdict(set)
    for name in _params(scope):
        kinds[name].add("other")
    handled: set[int] = set()
    for node in local_nodes(_body(scope)):
        for name, kind in _binds(node, handled):
            kinds[name].add(kind)
    return {name: frozenset(k) for name, k in kinds.items()}


@dataclass
class Frame:
    """One function (or module, class, lambda) body being walked."""

    is_async: bool
    scope: ScopeNode
    loops: list[Loop] = field(default_factory=list)
    # How many offloading calls (`asyncio.to_thread(...)`) we are inside the arguments of.
    offloaded: int = 0

    @functools.cached_property
    def kinds(self) -> Mapping[str, frozenset[BindingKind]]:
        """Scan the scope's bindings once, only if a rule asks about them."""
        return bindings(self.scope)

    @property
    def loop(self) -> Loop | None:
        """Return the innermost loop around the current node, if any."""
        return self.loops[-1] if self.loops else None

    def bound_as(self, name: str, kind: BindingKind) -> bool:
        """Tell whether every binding of `name` in this scope gives it kind `kind`."""
        kinds = self.kinds.get(name, frozenset())
        return kind in kinds and kinds <= {kind, "extend"}

    def varies(self, exprs: Iterable[ast.AST]) -> bool:
        """Tell whether any of `exprs` changes from one iteration to the next of some loop."""
        return any(not loop.invariant(e) for e in exprs for loop in self.loops)


class ScopeWalker(ast.NodeVisitor):
    """Walk a module tracking scopes and loops; subclasses react in the `on_*` hooks."""

    def __init__(self, aliases: Mapping[str, str]) -> None:
        self.aliases = aliases
        self.frames: list[Frame] = []
        self._awaited: set[int] = set()
        self._chained: dict[int, list[ast.expr]] = {}

    @property
    def frame(self) -> Frame:
        """Return the innermost scope being walked."""
        return self.frames[-1]

    def on_call(self, node: ast.Call, awaited: bool) -> None:
        """React to a call; `awaited` when it is awaited or entered with `async with`."""

    def on_compare(self, node: ast.Compare) -> None:
        """React to a comparison."""

    def on_assign(self, node: ast.Assign | ast.AugAssign) -> None:
        """React to an assignment."""

    def visit_Module(self, node: ast.Module) -> None:
        """Walk the module body as the outermost scope."""
        self._scope(node, False, node.body)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        """Walk decorators and defaults here, the body in a fresh scope."""
        self._outer_parts(node)
        self._scope(node, False, node.body)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        """Walk decorators and defaults here, the body in a fresh async scope."""
        self._outer_parts(node)
        self._scope(node, True, node.body)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        """Walk the defaults here, the body in a fresh (never async) scope."""
        self._visit_all([*node.args.defaults, *node.args.kw_defaults])
        self._scope(node, False, [node.body])

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        """Walk decorators and bases here, the class body in a fresh scope."""
        self._visit_all([*node.decorator_list, *node.bases, *node.keywords])
        self._scope(node, False, node.body)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        """Walk the iterable once, then the target and body as the loop."""
        self.visit(node.iter)
        with self._loop("for", [node.target, *node.body]):
            self._visit_all([node.target, *node.body])
        self._visit_all(node.orelse)

    def visit_AsyncFor(self, node: ast.AsyncFor) -> None:
        """Walk an `async for` like a `for`, its iterable being async."""
        self._mark_awaited(node.iter)
        self.visit_For(node)

    def visit_While(self, node: ast.While) -> None:
        """Walk the test and body as the loop."""
        with self._loop("while", [node.test, *node.body]):
            self._visit_all([node.test, *node.body])
        self._visit_all(node.orelse)

    def visit_ListComp(self, node: ast.ListComp) -> None:
        """Walk a list comprehension as a loop."""
        self._comprehension(node, [node.elt])

    def visit_SetComp(self, node: ast.SetComp) -> None:
        """Walk a set comprehension as a loop."""
        self._comprehension(node, [node.elt])

    def visit_GeneratorExp(self, node: ast.GeneratorExp) -> None:
        """Walk a generator expression as a loop."""
        self._comprehension(node, [node.elt])

    def visit_DictComp(self, node: ast.DictComp) -> None:
        """Walk a dict comprehension as a loop."""
        self._comprehension(node, [node.key, node.value])

    def visit_Await(self, node: ast.Await) -> None:
        """Note that the awaited call is asynchronous."""
        self._mark_awaited(node.value)
        self.generic_visit(node)

    def visit_AsyncWith(self, node: ast.AsyncWith) -> None:
        """Note that `async with` context managers are asynchronous."""
        for item in node.items:
            self._mark_awaited(item.context_expr)
        self.generic_visit(node)

    def chain_args(self, node: ast.Call) -> list[ast.expr]:
        """Return the arguments of calls chained onto `node`: `.filter(x)` in `q(...).filter(x)`."""
        return self._chained.get(id(node), [])

    def visit_Call(self, node: ast.Call) -> None:
        """Report the call, then walk its arguments, noting when they run off the loop."""
        if isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Call):
            args = [*node.args, *(k.value for k in node.keywords), *self.chain_args(node)]
            self._chained[id(node.func.value)] = args
        self.on_call(node, id(node) in self._awaited)
        self.visit(node.func)
        offload = int(self._offloads(node))
        self.frame.offloaded += offload
        self._visit_all([*node.args, *node.keywords])
        self.frame.offloaded -= offload

    def visit_Compare(self, node: ast.Compare) -> None:
        """Report the comparison, then walk it."""
        self.on_compare(node)
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        """Report the assignment, then walk it."""
        self.on_assign(node)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        """Report the augmented assignment, then walk it."""
        self.on_assign(node)
        self.generic_visit(node)

    def _outer_parts(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        """Walk what a `def` evaluates in the enclosing scope: decorators and defaults."""
        self._visit_all([*node.decorator_list, *node.args.defaults, *node.args.kw_defaults])

    def _scope(self, node: ScopeNode, is_async: bool, body: Iterable[ast.AST]) -> None:
        """Walk `body` as a fresh scope: no enclosing loops, its own bindings."""
        self.frames.append(Frame(is_async, node))
        self._visit_all(body)
        self.frames.pop()

    def _comprehension(self, node: Comprehension, results: list[ast.expr]) -> None:
        """Walk the first iterable once and everything else per iteration."""
        first, *rest = node.generators
        self.visit(first.iter)
        with self._loop("comprehension", [node]):
            self._visit_all([first.target, *first.ifs, *rest, *results])

    @contextmanager
    def _loop(self, kind: LoopKind, parts: list[ast.AST]) -> Iterator[None]:
        """Treat what is walked inside as running once per iteration."""
        self.frame.loops.append(Loop(kind, parts))
        try:
            yield
        finally:
            self.frame.loops.pop()

    def _offloads(self, node: ast.Call) -> bool:
        """Tell whether `node` hands its callable argument to a worker thread."""
        if isinstance(node.func, ast.Attribute) and node.func.attr == "run_in_executor":
            return True
        return qualname(node.func, self.aliases) in OFFLOADERS

    def _mark_awaited(self, expr: ast.AST) -> None:
        """Remember that the call `expr` (if a call) does not block."""
        if isinstance(expr, ast.Call):
            self._awaited.add(id(expr))

    def _visit_all(self, nodes: Iterable[ast.AST | None]) -> None:
        """Walk each node in turn, skipping the None of absent defaults."""
        for node in nodes:
            if node is not None:
                self.visit(node)
