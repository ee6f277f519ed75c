"""Map changed Python sources to their tests and flag public API that no test mentions."""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

from agents.analyzers.base import is_python, make_finding, parse_python
from agents.model import AnalyzerResult, ChangedFile, Finding, ReviewContext, Skipped


def _words(text: str) -> frozenset[str]:
    """Return the space-separated words of `text`."""
    return frozenset(text.split())


TOOL = "test-map"
RULE = "untested-public-api"

# Directory names that make everything under them a test file.
_TEST_DIRS = frozenset({"tests", "test", "__tests__"})
_TEST_STEM_SUFFIXES = ("_test", "_tests", ".test", ".spec", "_spec")
# Layout directories inside a test tree that do not mirror a source package.
_LAYOUT_DIRS = _TEST_DIRS | {"unit", "unittests", "unit_tests", "integration", "functional", "e2e"}
# Code that is run rather than imported, so unit tests rarely name what it defines.
_UNTESTED_DIRS = frozenset(
    {"migrations", "alembic", "docs", "doc", "examples", "example", "scripts", "benchmarks"}
)
_UNTESTED_NAMES = frozenset({"setup.py", "noxfile.py", "fabfile.py", "manage.py", "__main__.py"})
_OTHER_SOURCE = _words(
    ".js .jsx .mjs .cjs .ts .tsx .vue .svelte .go .rs .java .kt .kts .scala .groovy .rb .php"
    " .c .h .cc .cpp .cxx .hpp .cs .swift .m .mm .ex .exs .erl .clj .hs .lua .pl .dart .r"
)
# Decorators whose function is never called by name: accessors, stubs, and handlers a
# framework dispatches (a test reaches `@app.get("/x")` through its URL, not its name).
_SILENT_DECORATORS = _words(
    "property cached_property setter getter deleter overload abstractmethod abstractproperty"
    " route get post put patch delete head options websocket command group task fixture hookimpl"
)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FROM_IMPORT = re.compile(r"^[ \t]*from[ \t]+([\w.]+)[ \t]+import[ \t]+(\([^)]*\)|[^\n#;]+)", re.M)
_IMPORT = re.compile(r"^[ \t]*import[ \t]+([^\n#;]+)", re.M)
# What a Python test module contains: test functions, or a test framework import.
_TEST_CODE = re.compile(
    r"^[ \t]*(?:(?:async[ \t]+)?def[ \t]+test\w*[ \t]*\(|(?:import|from)[ \t]+(?:pytest|unittest)\b)",
    re.M,
)

SymbolKind = Literal["function", "class", "method"]
FuncDef = ast.FunctionDef | ast.AsyncFunctionDef


def is_test_path(path: str) -> bool:
    """Tell whether `path` is a test file (any language) by the usual layouts and names."""
    p = PurePosixPath(path)
    if any(part in _TEST_DIRS for part in p.parts[:-1]):
        return True
    stem = p.stem
    return (
        p.name in ("conftest.py", "tests.py")
        or stem.startswith("test_")
        or stem.endswith(_TEST_STEM_SUFFIXES)
    )


def is_test_file(path: str, text: str | None = None) -> bool:
    """Tell whether `path` is a test file, reading `text` when only its name says so.

    A `test_*.py` module outside a test directory can be ordinary code (this project's
    own `agents/test_coverage.py`); with its text at hand it counts only if it holds tests.
    """
    if not is_test_path(path):
        return False
    p = PurePosixPath(path)
    in_test_dir = any(part in _TEST_DIRS for part in p.parts[:-1])
    if text is None or p.suffix != ".py" or p.name == "conftest.py" or in_test_dir:
        return True
    return _TEST_CODE.search(text) is not None


def is_python_source(path: str, text: str | None = None) -> bool:
    """Tell whether `path` is Python code whose public API unit tests should reach."""
    p = PurePosixPath(path)
    if p.suffix != ".py" or is_test_file(path, text) or p.name in _UNTESTED_NAMES:
        return False
    return not any(part in _UNTESTED_DIRS for part in p.parts[:-1])


def is_other_source(path: str) -> bool:
    """Tell whether `path` is non-Python source code (not docs or configuration)."""
    return PurePosixPath(path).suffix.lower() in _OTHER_SOURCE and not is_test_path(path)


@dataclass(frozen=True)
class PublicSymbol:
    """A public function, class or method and the lines it spans."""

    name: str
    kind: SymbolKind
    line: int
    start: int
    end: int
    header_end: int
    methods: tuple[PublicSymbol, ...] = ()

    def touched(self, added: frozenset[int]) -> list[int]:
        """Return the added lines inside this symbol, in order."""
        return sorted(n for n in added if self.start <= n <= self.end)

    def header_touched(self, added: frozenset[int]) -> bool:
        """Tell whether the decorators or def/class line itself were added."""
        return any(self.start <= n <= self.header_end for n in added)


def public_symbols(tree: ast.Module) -> list[PublicSymbol]:
    """List the module's public top-level functions and classes, with their methods."""
    found: dict[str, PublicSymbol] = {}
    for node in _top_level(tree.body):
        symbol = _class_symbol(node) if isinstance(node, ast.ClassDef) else _function(node, "")
        if symbol is not None:
            found.setdefault(symbol.name, symbol)
    return list(found.values())


def _top_level(body: list[ast.stmt]) -> Iterator[FuncDef | ast.ClassDef]:
    """Yield definitions at module level, looking through runtime `if` and `try` blocks."""
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test) and not _is_main_guard(node.test):
                yield from _top_level(node.body)
            yield from _top_level(node.orelse)
        elif isinstance(node, ast.Try | ast.TryStar):
            for block in (node.body, *(h.body for h in node.handlers), node.orelse):
                yield from _top_level(block)


def _is_type_checking(test: ast.expr) -> bool:
    """Tell whether an `if` test is `TYPE_CHECKING` (its body never runs)."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _is_main_guard(test: ast.expr) -> bool:
    """Tell whether an `if` test is `__name__ == "__main__"`."""
    if not isinstance(test, ast.Compare) or len(test.comparators) != 1:
        return False
    sides = [test.left, test.comparators[0]]
    has_name = any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides)
    return has_name and any(isinstance(s, ast.Constant) and s.value == "__main__" for s in sides)


def _function(node: FuncDef, owner: str) -> PublicSymbol | None:
    """Describe a public function or method, or None when it is excluded."""
    # `main` is entry-point glue: exercised by running the program, not by name.
    if node.name.startswith("_") or (not owner and node.name == "main"):
        return None
    if _decorated_silently(node) or _is_stub(node.body):
        return None
    qualified = f"{owner}.{node.name}" if owner else node.name
    start = _start(node)
    kind: SymbolKind = "method" if owner else "function"
    return PublicSymbol(qualified, kind, node.lineno, start, _end(node), node.lineno)


def _class_symbol(node: ast.ClassDef) -> PublicSymbol | None:
    """Describe a public class that has behaviour, or None when it is excluded."""
    if node.name.startswith("_") or _is_protocol(node):
        return None
    defs = [n for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    # A class with no methods (an exception, enum or record) has no behaviour to test.
    if not defs:
        return None
    methods = tuple(m for m in (_function(d, node.name) for d in defs) if m is not None)
    first = node.body[0]
    first_line = _start(first) if isinstance(first, FuncDef | ast.ClassDef) else first.lineno
    header_end = max(node.lineno, first_line - 1)
    return PublicSymbol(
        node.name, "class", node.lineno, _start(node), _end(node), header_end, methods
    )


def _start(node: FuncDef | ast.ClassDef) -> int:
    """Return the first line of a definition, decorators included."""
    return min([node.lineno, *(d.lineno for d in node.decorator_list)])


def _end(node: ast.stmt) -> int:
    """Return the last line of a statement."""
    return node.end_lineno or node.lineno


def _decorated_silently(node: FuncDef) -> bool:
    """Tell whether a decorator marks the function as not called by name."""
    return any(_tail(d) in _SILENT_DECORATORS for d in node.decorator_list)


def _tail(expr: ast.expr) -> str:
    """Return the last name of a decorator: `functools.cached_property` -> `cached_property`."""
    if isinstance(expr, ast.Call):
        return _tail(expr.func)
    if isinstance(expr, ast.Attribute):
        return expr.attr
    return expr.id if isinstance(expr, ast.Name) else ""


def _is_stub(body: list[ast.stmt]) -> bool:
    """Tell whether a body is only a docstring, `...`, `pass` or `raise NotImplementedError`."""
    return all(_is_placeholder(s) for s in body)


def _is_placeholder(stmt: ast.stmt) -> bool:
    """Tell whether one statement does nothing a test could observe."""
    if isinstance(stmt, ast.Pass):
        return True
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
        return stmt.value.value is Ellipsis or isinstance(stmt.value.value, str)
    if isinstance(stmt, ast.Raise) and stmt.exc is not None:
        return _tail(stmt.exc) == "NotImplementedError"
    return False


def _is_protocol(node: ast.ClassDef) -> bool:
    """Tell whether a class is a typing Protocol (an interface, nothing to run)."""
    bases = [b.value if isinstance(b, ast.Subscript) else b for b in node.bases]
    return any(_tail(b) == "Protocol" for b in bases)


def referenced_names(test_texts: Iterable[str]) -> frozenset[str]:
    """Collect every identifier the tests mention (a word-boundary name match)."""
    return frozenset(name for text in test_texts for name in _IDENT.findall(text))


# map_tests runs once per changed source over every test file: cache the per-test work so
# a large PR stays linear (measured in benchmarks/: 3.3 s -> 1.2 s on 300 files).
@functools.lru_cache(maxsize=8192)
def imported_modules(test_text: str) -> frozenset[tuple[str, ...]]:
    """Return the absolute modules a test file imports, `from a import b` as `a` and `a.b`."""
    modules: set[tuple[str, ...]] = set()
    for match in _FROM_IMPORT.finditer(test_text):
        if match.group(1).startswith("."):
            continue
        base = tuple(match.group(1).split("."))
        modules.add(base)
        modules.update((*base, name) for name in _import_names(match.group(2)))
    for match in _IMPORT.finditer(test_text):
        modules.update(tuple(name.split(".")) for name in _import_names(match.group(1)))
    return frozenset(modules)


def _import_names(clause: str) -> list[str]:
    """Split `a as x, b.c` (optionally parenthesised) into `['a', 'b.c']`."""
    code = re.sub(r"#[^\n]*", "", clause).strip("()\\ \t\n")
    names = (part.split(" as ")[0].strip("()\\ \t\n") for part in code.split(","))
    return [n for n in names if n and n != "*"]


def _module_parts(path: str) -> tuple[str, ...]:
    """Return a source file's dotted-name parts: `src/pkg/__init__.py` -> ('pkg',)."""
    p = PurePosixPath(path)
    parts = p.parts[:-1] if p.stem == "__init__" else (*p.parts[:-1], p.stem)
    return parts[1:] if parts[:1] == ("src",) else parts


def _imports(modules: AbstractSet[tuple[str, ...]], parts: tuple[str, ...]) -> bool:
    """Tell whether any imported module names the source (at least two trailing parts)."""
    n = len(parts)
    return any(
        0 < len(m) <= n and m == parts[n - len(m) :] and (len(m) >= 2 or len(m) == n)
        for m in modules
    )


def _name_score(test_path: str, source_path: str) -> int | None:
    """Score a test file named after the source by how much of its package it mirrors."""
    parts = _module_parts(source_path)
    if not parts:
        return None
    stem, source_dirs = parts[-1], parts[:-1]
    name, dirs = _test_layout(test_path)
    if name not in (f"test_{stem}.py", f"{stem}_test.py", f"tests_{stem}.py"):
        return None
    if len(dirs) > len(source_dirs) or source_dirs[len(source_dirs) - len(dirs) :] != dirs:
        return None
    return len(dirs)


@functools.lru_cache(maxsize=65536)
def _test_layout(test_path: str) -> tuple[str, tuple[str, ...]]:
    """Split a test path into its file name and its non-layout directories."""
    test = PurePosixPath(test_path)
    return test.name, tuple(d for d in test.parts[:-1] if d not in _LAYOUT_DIRS)


def map_tests(source_path: str, test_sources: Mapping[str, str]) -> tuple[str, ...]:
    """Return the test files that belong to `source_path`: by name first, then by import.

    `test_sources` maps test paths to their text; a path known without its text ('')
    can still match by name.
    """
    by_name = {t: _name_score(t, source_path) for t in test_sources if is_python(t)}
    named = sorted(
        (t for t, s in by_name.items() if s is not None), key=lambda t: -(by_name[t] or 0)
    )
    parts = _module_parts(source_path)
    importing = sorted(
        t
        for t, text in test_sources.items()
        # A helper module that imports the source is no place for its tests.
        if t not in named and _TEST_CODE.search(text) and _imports(imported_modules(text), parts)
    )
    return (*named, *importing)


def suggested_test_path(source_path: str, test_paths: Iterable[str]) -> str:
    """Return where a new test for `source_path` would go, following the repo's layout."""
    parts = _module_parts(source_path)
    name = f"test_{parts[-1] if parts else PurePosixPath(source_path).stem}.py"
    paths = [PurePosixPath(t) for t in test_paths]
    test_dirs = {p.parent.as_posix() for p in paths}
    here = PurePosixPath(source_path).parent.as_posix()
    if here in test_dirs and here != ".":
        return f"{here}/{name}"
    roots = {p.parts[0] for p in paths if len(p.parts) > 1}
    root = "test" if "test" in roots and "tests" not in roots else "tests"
    package = parts[:-1]
    for mirror in (package, package[1:]):
        folder = "/".join((root, *mirror))
        if folder in test_dirs:
            return f"{folder}/{name}"
    return "/".join((root, *package, name))


class TestMapAnalyzer:
    """Flag changed public functions and classes that no test refers to by name."""

    name = TOOL
    # Not a test class, despite the name (pytest would otherwise try to collect it).
    __test__ = False

    def run(self, ctx: ReviewContext) -> AnalyzerResult:
        """Map each changed Python source to its tests and flag unreferenced public API."""
        scan = _Scan(ctx)
        for changed in _reviewable(ctx):
            scan.file(changed)
        return scan.result()


def _reviewable(ctx: ReviewContext) -> list[ChangedFile]:
    """Return changed files with head content that the council did not already set aside."""
    set_aside = {s.path for s in ctx.skipped}
    return [f for f in ctx.diff.files if f.status != "deleted" and f.path not in set_aside]


class _Scan:
    """One run's state: the tests known, and what was found so far."""

    def __init__(self, ctx: ReviewContext) -> None:
        self.ctx = ctx
        self.tests = _test_texts(ctx)
        # Test files known only by path still count for name-based mapping.
        known = {*ctx.test_sources, *ctx.files}
        unread = {p: "" for p in ctx.repo_files if p not in known and is_test_path(p)}
        self.mappable = {**unread, **self.tests}
        self.test_paths = sorted(self.mappable)
        self.names = referenced_names(self.tests.values())
        self.findings: list[Finding] = []
        self.skipped: list[Skipped] = []
        self.untested_files: list[str] = []
        self.unjudged: list[str] = []

    def file(self, changed: ChangedFile) -> None:
        """Check one changed file."""
        path = changed.path
        if is_other_source(path):
            self.skipped.append(
                Skipped(path=path, reason="test mapping covers Python only", by=TOOL)
            )
        elif is_python_source(path, self.ctx.files.get(path)) and changed.added:
            self._python(changed)

    def _python(self, changed: ChangedFile) -> None:
        """Parse one changed Python source and flag its untested public symbols."""
        text = self.ctx.files.get(changed.path)
        if text is None:
            self.skipped.append(
                Skipped(path=changed.path, reason="head text not available", by=TOOL)
            )
            return
        tree = _parse(text)
        if isinstance(tree, str):
            self.skipped.append(Skipped(path=changed.path, reason=tree, by=TOOL))
            return
        symbols = [s for s in public_symbols(tree) if s.touched(changed.added)]
        if symbols and not self.tests:
            self.unjudged.append(changed.path)
        elif symbols:
            self._flag(changed, symbols)

    def _flag(self, changed: ChangedFile, symbols: list[PublicSymbol]) -> None:
        """Emit a finding for each changed public symbol that no test names."""
        mapped = map_tests(changed.path, self.mappable)
        if not mapped:
            self.untested_files.append(changed.path)
        for symbol in symbols:
            for target in _untested(symbol, changed.added, self.names):
                self.findings.append(self._finding(changed, target, mapped))

    def _finding(
        self, changed: ChangedFile, symbol: PublicSymbol, mapped: tuple[str, ...]
    ) -> Finding:
        """Build the finding for one unreferenced symbol."""
        # The specialist keeps only findings on added lines, so a symbol whose def line is
        # unchanged is anchored on its first added line instead.
        line = symbol.line if symbol.line in changed.added else symbol.touched(changed.added)[0]
        return make_finding(
            self.ctx,
            agent="test-coverage",
            severity="minor",
            # Less likely to be reached indirectly when the module has no tests at all.
            confidence=0.6 if mapped else 0.7,
            path=changed.path,
            line=line,
            title=f"`{symbol.name}` is not exercised by any test",
            body=self._body(changed.path, symbol, mapped),
            rule=RULE,
            source=f"{TOOL}:{RULE}",
        )

    def _body(self, path: str, symbol: PublicSymbol, mapped: tuple[str, ...]) -> str:
        """Explain the evidence and where a test would go."""
        short = symbol.name.rsplit(".", 1)[-1]
        text = (
            f"No test file refers to `{short}` by name "
            f"(searched {len(self.tests)} test file{'s' if len(self.tests) != 1 else ''})."
        )
        if symbol.kind == "class" and symbol.methods:
            text += " Public methods: " + ", ".join(f"`{m.name}`" for m in symbol.methods) + "."
        if mapped:
            where = ", ".join(f"`{t}`" for t in mapped[:3])
            return f"{text} Tests for `{path}` live in {where}; add a test there."
        suggestion = suggested_test_path(path, self.test_paths)
        return f"{text} No test file was found for `{path}`; a test would go in `{suggestion}`."

    def result(self) -> AnalyzerResult:
        """Return what this run found, with notes on what it could not judge."""
        return AnalyzerResult(
            tool=TOOL,
            findings=tuple(self.findings),
            skipped=tuple(self.skipped),
            notes=self._notes(),
        )

    def _notes(self) -> tuple[str, ...]:
        """Say when there were no tests to search, and which files have no tests."""
        notes: list[str] = []
        if self.unjudged:
            notes.append(
                "test-map: no test sources were available (the repository may have no tests), "
                "so changed public API in " + ", ".join(self.unjudged) + " was not checked"
            )
        if self.untested_files:
            notes.append("test-map: no test file found for " + ", ".join(self.untested_files))
        return tuple(notes)


def _test_texts(ctx: ReviewContext) -> dict[str, str]:
    """Return every test file's text: the given test sources plus changed test files."""
    texts = {**ctx.test_sources, **ctx.files}
    return {p: t for p, t in texts.items() if is_test_file(p, t)}


def _parse(text: str) -> ast.Module | str:
    """Parse with this interpreter's grammar; return the skip reason on failure."""
    try:
        return parse_python(text)
    except SyntaxError as exc:
        return f"Python 3.11's ast cannot parse it (line {exc.lineno}: {exc.msg}); test mapping skipped"
    except (ValueError, RecursionError, MemoryError) as exc:
        return f"Python 3.11's ast cannot parse it ({type(exc).__name__}); test mapping skipped"


def _untested(
    symbol: PublicSymbol, added: frozenset[int], names: frozenset[str]
) -> list[PublicSymbol]:
    """Return the changed parts of `symbol` that the tests never name."""
    if symbol.kind != "class":
        return [] if symbol.name in names else [symbol]
    # A new, unnamed class is one finding; its methods are listed in it, not flagged apart.
    if symbol.header_touched(added) and symbol.name not in names:
        return [symbol]
    return [
        m for m in symbol.methods if m.touched(added) and m.name.rsplit(".", 1)[-1] not in names
    ]
