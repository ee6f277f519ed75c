"""Generate realistic pull requests as real git repositories, deterministically.

The base commit is on `main`; the change is one commit on the branch `feature`, so
`pr-council review REPO` (merge-base with `main` .. HEAD) reviews exactly the change.
Run `python benchmarks/prgen.py medium /tmp/pr` to inspect one.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

# --- sizes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Size:
    """How big a pull request is, and the repository it lands in."""

    name: str
    base_modules: int  # Python modules at base (the modified ones included)
    base_tests: int  # test modules at base (the modified ones included)
    modified: int  # modules the change edits
    added: int  # modules the change adds
    added_tests: int
    modified_tests: int
    other: int  # non-Python files the change adds or edits (.md, .yml, .json)

    @property
    def files_changed(self) -> int:
        """Return how many files the change touches."""
        return self.modified + self.added + self.added_tests + self.modified_tests + self.other


SIZES: dict[str, Size] = {
    s.name: s
    for s in (
        Size("small", base_modules=8, base_tests=3, modified=1, added=1, added_tests=1,
             modified_tests=0, other=0),
        Size("medium", base_modules=60, base_tests=20, modified=10, added=12, added_tests=4,
             modified_tests=1, other=3),
        Size("large", base_modules=500, base_tests=150, modified=100, added=120, added_tests=40,
             modified_tests=10, other=30),
    )
}  # fmt: skip

# --- vocabulary ------------------------------------------------------------------------

ENTITIES = (
    "order", "invoice", "customer", "shipment", "product", "payment", "account", "ticket",
    "report", "session", "coupon", "refund", "warehouse", "supplier", "review", "address",
    "subscription", "cart", "basket", "voucher", "carrier", "parcel", "ledger", "receipt",
)  # fmt: skip
DOMAINS = (
    "billing", "catalog", "shipping", "accounts", "analytics", "support", "inventory",
    "checkout", "notifications", "reporting",
)  # fmt: skip
KINDS = ("models", "client", "service", "workers", "utils")
STATUSES = ("new", "pending", "paid", "shipped", "cancelled", "archived")
FINDING_KINDS = ("sql_fstring", "http_in_loop", "sleep_in_async", "hardcoded_key")


@dataclass(frozen=True)
class Names:
    """The identifiers one block is written about."""

    entity: str
    domain: str

    @property
    def subs(self) -> dict[str, str]:
        """Return the template substitutions for these names."""
        pascal = "".join(p.title() for p in self.entity.split("_"))
        return {
            "entity": self.entity,
            "Entity": pascal,
            "ENTITY": self.entity.upper(),
            "table": f"{self.entity}s",
            "domain": self.domain,
        }


# --- code blocks -----------------------------------------------------------------------


@dataclass(frozen=True)
class BlockTemplate:
    """A block of code: its text, the imports it needs, and an optional pytest."""

    key: str
    imports: tuple[str, ...]
    code: str
    test: str = ""


def _t(key: str, imports: str, code: str, test: str = "") -> BlockTemplate:
    """Build a block template; imports are separated by ';'."""
    parts = tuple(i.strip() for i in imports.split(";") if i.strip())
    return BlockTemplate(
        key, parts, code.strip("\n") + "\n", test.strip("\n") + "\n" if test else ""
    )


MODEL = _t(
    "model",
    "from dataclasses import dataclass",
    '''
@dataclass(frozen=True)
class $Entity:
    """One $entity record."""

    id: int
    name: str
    status: str = "$status"
    total_cents: int = 0

    @property
    def total(self) -> float:
        """Return the total in currency units."""
        return self.total_cents / $cents
''',
    """
def test_${entity}_total_is_in_currency_units() -> None:
    assert $Entity(id=1, name="a", total_cents=250).total == 250 / $cents
""",
)

REPOSITORY = _t(
    "repository",
    "import sqlite3",
    '''
class ${Entity}Repository:
    """Store ${entity} records in SQLite."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def get(self, ${entity}_id: int) -> $Entity | None:
        """Fetch one $entity by id."""
        row = self._conn.execute(
            "SELECT id, name, status, total_cents FROM $table WHERE id = ?",
            (${entity}_id,),
        ).fetchone()
        return $Entity(*row) if row else None

    def by_status(self, status: str, limit: int = $limit) -> list[$Entity]:
        """List ${entity}s with a status, oldest first."""
        rows = self._conn.execute(
            "SELECT id, name, status, total_cents FROM $table"
            " WHERE status = ? ORDER BY id LIMIT ?",
            (status, limit),
        ).fetchall()
        return [$Entity(*row) for row in rows]

    def save(self, item: $Entity) -> None:
        """Insert or update one $entity."""
        with self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO $table (id, name, status, total_cents)"
                " VALUES (?, ?, ?, ?)",
                (item.id, item.name, item.status, item.total_cents),
            )
''',
)

CLIENT = _t(
    "client",
    "import requests",
    '''
class ${Entity}Client:
    """Talk to the $domain service's $entity API."""

    def __init__(self, base_url: str, session: requests.Session | None = None) -> None:
        self._base = base_url.rstrip("/")
        self._session = session or requests.Session()

    def fetch(self, ${entity}_id: int) -> dict[str, object]:
        """Fetch one $entity as JSON."""
        response = self._session.get(f"{self._base}/$table/{${entity}_id}", timeout=$timeout)
        response.raise_for_status()
        return dict(response.json())

    def fetch_many(self, ids: list[int]) -> list[dict[str, object]]:
        """Fetch several ${entity}s in one request."""
        response = self._session.get(
            f"{self._base}/$table", params={"ids": ",".join(map(str, ids))}, timeout=$timeout
        )
        response.raise_for_status()
        return list(response.json()["items"])
''',
)

SETTINGS = _t(
    "settings",
    "import os",
    '''
def ${entity}_settings() -> dict[str, str]:
    """Read the $entity settings from the environment."""
    return {
        "url": os.environ.get("${ENTITY}_URL", "http://localhost:$port"),
        "timeout": os.environ.get("${ENTITY}_TIMEOUT", "$timeout"),
        "region": os.environ.get("${ENTITY}_REGION", "eu-west-1"),
    }
''',
)

TOTALS = _t(
    "totals",
    "from collections import defaultdict; from collections.abc import Iterable",
    '''
def ${entity}_totals(items: Iterable[tuple[str, int, int]]) -> dict[str, int]:
    """Sum quantity times unit price (in cents) per $entity key."""
    totals: dict[str, int] = defaultdict(int)
    for key, quantity, unit_cents in items:
        totals[key] += quantity * unit_cents
    return {key: cents for key, cents in totals.items() if cents >= $mincents}
''',
    """
def test_${entity}_totals_sums_per_key() -> None:
    assert ${entity}_totals([("a", 2, 150), ("a", 1, 100), ("b", 1, 5)]) == {"a": 400, "b": 5}


def test_${entity}_totals_of_nothing_is_empty() -> None:
    assert ${entity}_totals([]) == {}
""",
)

VALIDATE = _t(
    "validate",
    "from collections.abc import Mapping",
    '''
def validate_${entity}(payload: Mapping[str, object]) -> list[str]:
    """Return the problems with the $entity payload, empty when valid."""
    problems = []
    name = payload.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append("name is required")
    total = payload.get("total_cents", 0)
    if not isinstance(total, int) or total < 0:
        problems.append("total_cents must be a non-negative integer")
    allowed = $statuses
    if payload.get("status", "$status") not in allowed:
        problems.append("unknown status")
    return problems
''',
    """
def test_validate_${entity}_accepts_a_good_payload() -> None:
    assert validate_${entity}({"name": "x", "total_cents": 5, "status": "$status"}) == []


def test_validate_${entity}_names_each_problem() -> None:
    problems = validate_${entity}({"name": " ", "total_cents": -1, "status": "??"})
    assert len(problems) == 3
""",
)

FORMAT = _t(
    "format",
    "",
    '''
def format_${entity}_line(name: str, total_cents: int, width: int = $width) -> str:
    """Render one $entity as a fixed-width report line."""
    amount = f"{total_cents / 100:,.2f}"
    room = max(1, width - len(amount) - 1)
    return f"{name[:room]:<{room}} {amount}"
''',
    """
def test_format_${entity}_line_right_aligns_the_amount() -> None:
    line = format_${entity}_line("widget", 123456, width=$width)
    assert line.endswith("1,234.56")
    assert len(line) == $width
""",
)

BATCHES = _t(
    "batches",
    "from collections.abc import Iterator, Sequence",
    '''
def batches_of_${table}(ids: Sequence[int], size: int = $limit) -> Iterator[list[int]]:
    """Yield ids in batches of at most `size`."""
    if size < 1:
        raise ValueError("size must be positive")
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])
''',
    """
def test_batches_of_${table}_keeps_every_id_in_order() -> None:
    ids = list(range(2 * $limit + 3))
    assert [i for batch in batches_of_${table}(ids) for i in batch] == ids
""",
)

SLUG = _t(
    "slug",
    "import re",
    '''
_${ENTITY}_NON_WORD = re.compile(r"[^a-z0-9]+")


def slugify_${entity}(name: str) -> str:
    """Turn the $entity name into a URL slug."""
    slug = _${ENTITY}_NON_WORD.sub("-", name.lower()).strip("-")
    return slug[:$width] or "$entity"
''',
    """
def test_slugify_${entity}_joins_words_with_dashes() -> None:
    assert slugify_${entity}("Big  Blue Box!") == "big-blue-box"
""",
)

SERVICE = _t(
    "service",
    "",
    '''
class ${Entity}Service:
    """Business rules for ${entity}s."""

    def __init__(self, max_total_cents: int = $maxtotal) -> None:
        self._max_total_cents = max_total_cents
        self._seen: set[str] = set()

    def accept(self, name: str, total_cents: int) -> bool:
        """Accept a new $entity unless it is a duplicate or over the limit."""
        key = name.strip().lower()
        if key in self._seen or total_cents > self._max_total_cents:
            return False
        self._seen.add(key)
        return True

    def discount(self, total_cents: int, percent: int) -> int:
        """Apply a percentage discount, never below zero."""
        if not 0 <= percent <= 100:
            raise ValueError(f"bad discount: {percent}")
        return max(0, total_cents - total_cents * percent // 100)
''',
    """
def test_${entity}_service_refuses_duplicates() -> None:
    service = ${Entity}Service()
    assert service.accept("A", 10)
    assert not service.accept(" a ", 10)


def test_${entity}_service_discount_never_goes_negative() -> None:
    assert ${Entity}Service().discount(1000, 100) == 0
""",
)

DRAIN = _t(
    "drain",
    "import asyncio",
    '''
async def drain_${entity}_queue(queue: asyncio.Queue[int], batch: int = $limit) -> list[int]:
    """Take up to `batch` $entity ids off the queue without waiting."""
    taken: list[int] = []
    while len(taken) < batch and not queue.empty():
        taken.append(queue.get_nowait())
        queue.task_done()
    return taken
''',
)

NOTIFY = _t(
    "notify",
    "import asyncio",
    '''
async def notify_${entity}_watchers(watchers: list[str], ${entity}_id: int) -> int:
    """Tell each watcher about a change, a few at a time."""
    semaphore = asyncio.Semaphore($concurrency)

    async def one(address: str) -> bool:
        async with semaphore:
            await asyncio.sleep(0)
            return bool(address) and ${entity}_id > 0

    results = await asyncio.gather(*(one(w) for w in watchers))
    return sum(results)
''',
)

# --- blocks with a finding (each one of FINDING_KINDS) ----------------------------------

SQL_FSTRING = _t(
    "sql_fstring",
    "import sqlite3",
    '''
def search_${table}(conn: sqlite3.Connection, term: str) -> list[tuple[object, ...]]:
    """Find ${entity}s whose name contains a term."""
    query = f"SELECT id, name FROM $table WHERE name LIKE '%{term}%' LIMIT $limit"
    return conn.execute(query).fetchall()
''',
)

HTTP_IN_LOOP = _t(
    "http_in_loop",
    "import requests",
    '''
def refresh_${table}(base_url: str, ids: list[int]) -> list[dict[str, object]]:
    """Re-read each $entity from the upstream API."""
    results = []
    for item_id in ids:
        response = requests.get(f"{base_url}/$table/{item_id}", timeout=$timeout)
        results.append(response.json())
    return results
''',
)

SLEEP_IN_ASYNC = _t(
    "sleep_in_async",
    "import asyncio; import time",
    '''
async def _sync_${entity}_once() -> bool:
    """Push pending ${entity}s upstream once."""
    await asyncio.sleep(0)
    return True


async def retry_${entity}_sync(attempts: int = 3) -> bool:
    """Retry the $entity sync with a pause between attempts."""
    for attempt in range(attempts):
        if attempt > 0:
            time.sleep(0.5 * attempt)
        if await _sync_${entity}_once():
            return True
    return False
''',
)

HARDCODED_KEY = _t(
    "hardcoded_key",
    "",
    """
${ENTITY}_AWS_ACCESS_KEY_ID = "$akid"
${ENTITY}_AWS_SECRET_ACCESS_KEY = "$secret"
""",
)

FINDINGS: dict[str, BlockTemplate] = {
    "sql_fstring": SQL_FSTRING,
    "http_in_loop": HTTP_IN_LOOP,
    "sleep_in_async": SLEEP_IN_ASYNC,
    "hardcoded_key": HARDCODED_KEY,
}

# Core blocks per module kind (in order), then extras drawn from the pure pool.
CORE: dict[str, tuple[BlockTemplate, ...]] = {
    "models": (MODEL, REPOSITORY),
    "client": (CLIENT, SETTINGS),
    "service": (SERVICE, TOTALS),
    "workers": (DRAIN, NOTIFY),
    "utils": (SLUG, FORMAT),
}
EXTRAS: tuple[BlockTemplate, ...] = (TOTALS, VALIDATE, FORMAT, BATCHES, SLUG, SETTINGS, SERVICE)
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_B64 = _ALNUM + "abcdefghijklmnopqrstuvwxyz+/"


def _params(rng: random.Random) -> dict[str, str]:
    """Draw the numbers a block is written with (a revision redraws them)."""
    return {
        "limit": str(rng.choice((25, 50, 100, 200, 500))),
        "timeout": str(rng.choice((5, 10, 15, 30))),
        "width": str(rng.choice((40, 48, 60, 72, 80))),
        "port": str(rng.choice((8000, 8080, 9000, 5000))),
        "concurrency": str(rng.choice((4, 8, 16))),
        "maxtotal": str(rng.choice((100_000, 250_000, 1_000_000))),
        "cents": "100",
        "mincents": str(rng.choice((0, 1, 5))),
        "status": rng.choice(STATUSES[:3]),
        "statuses": _tuple_literal({*rng.sample(STATUSES, 2), "new", "pending", "paid"}),
        # Shaped like an AWS key pair, random, never a real credential.
        "akid": "AKIA" + "".join(rng.choice(_ALNUM) for _ in range(16)),
        "secret": "".join(rng.choice(_B64) for _ in range(40)),
    }


def _tuple_literal(words: set[str]) -> str:
    """Write a sorted tuple of strings as black would."""
    return "(" + ", ".join(f'"{w}"' for w in sorted(words)) + ")"


@dataclass
class Block:
    """One rendered block of a module."""

    template: BlockTemplate
    names: Names
    params: dict[str, str]

    @property
    def code(self) -> str:
        """Return the block's source text."""
        return Template(self.template.code).substitute(self.names.subs, **self.params)

    @property
    def test(self) -> str:
        """Return the block's pytest text ('' when it has none)."""
        return Template(self.template.test).substitute(self.names.subs, **self.params)

    @property
    def ident(self) -> tuple[str, str]:
        """Return what makes the block unique inside one module."""
        return (self.template.key, self.names.entity)


_THIRD_PARTY = frozenset({"requests"})


def render_module(doc: str, blocks: Sequence[Block]) -> str:
    """Render a module: docstring, grouped imports, then the blocks."""
    imports = sorted({i for b in blocks for i in b.template.imports})
    std = [i for i in imports if i.split()[1].split(".")[0] not in _THIRD_PARTY]
    third = [i for i in imports if i not in std]
    header = [f'"""{doc}"""', ""]
    header += [*sorted(std, key=_import_key), ""] if std else []
    header += [*third, ""] if third else []
    return "\n".join(header) + "\n\n" + "\n\n".join(b.code for b in blocks)


def _import_key(line: str) -> tuple[int, str]:
    """Sort `import x` before `from x import y`, like isort's force-sort-within-sections off."""
    return (0 if line.startswith("import ") else 1, line)


# --- modules ---------------------------------------------------------------------------


@dataclass
class Module:
    """A Python module being generated: where it lives and its blocks."""

    path: str
    kind: str
    entity: str
    domain: str
    blocks: list[Block] = field(default_factory=list)

    @property
    def dotted(self) -> str:
        """Return the module's import path."""
        return self.path.removesuffix(".py").replace("/", ".")

    @property
    def text(self) -> str:
        """Return the module's source."""
        doc = f"{self.kind.title()} for {self.entity}s in the {self.domain} domain."
        return render_module(doc, self.blocks)

    def test_text(self) -> str:
        """Return a pytest module exercising the blocks that have tests."""
        tested = [b for b in self.blocks if b.template.test]
        names = sorted({n for b in tested for n in _public_names(b)})
        doc = f'"""Tests for {self.dotted}."""\n\n'
        return doc + _from_import(self.dotted, names) + "\n\n" + "\n\n".join(b.test for b in tested)

    def testable(self) -> bool:
        """Tell whether any block has a test."""
        return any(b.template.test for b in self.blocks)


def _from_import(module: str, names: Sequence[str]) -> str:
    """Write `from module import names`, wrapped in parentheses as ruff format would."""
    line = f"from {module} import {', '.join(names)}\n"
    if len(line) <= 100:
        return line
    return f"from {module} import (\n" + "".join(f"    {n},\n" for n in names) + ")\n"


def _public_names(block: Block) -> list[str]:
    """Return the public names a block's test imports."""
    code = block.code
    names = []
    for line in code.splitlines():
        for prefix in ("def ", "class ", "async def "):
            if line.startswith(prefix):
                name = line[len(prefix) :].split("(")[0].split(":")[0]
                if not name.startswith("_"):
                    names.append(name)
    return [n for n in names if n in block.test]


class Generator:
    """Deterministic source of modules, tests and documents."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.used_paths: set[str] = set()

    def module(self, extras: tuple[int, int] = (2, 3)) -> Module:
        """Create a module with its kind's core blocks and a few extras."""
        kind = self.rng.choice(KINDS)
        entity, domain = self.rng.choice(ENTITIES), self.rng.choice(DOMAINS)
        path = self._unique(f"app/{domain}/{entity}_{kind}", ".py")
        mod = Module(path, kind, entity, domain)
        for template in CORE[kind]:
            self.add_block(mod, template, entity)
        for _ in range(self.rng.randint(*extras)):
            self.add_extra(mod)
        return mod

    def add_block(
        self, mod: Module, template: BlockTemplate, entity: str, at: int | None = None
    ) -> bool:
        """Add a block about `entity`; False when the module already has it."""
        block = Block(template, Names(entity, mod.domain), _params(self.rng))
        if any(b.ident == block.ident for b in mod.blocks):
            return False
        mod.blocks.insert(len(mod.blocks) if at is None else at, block)
        return True

    def add_extra(self, mod: Module, at: int | None = None) -> None:
        """Add one pure block, about the module's entity or a related one."""
        for _ in range(20):
            entity = mod.entity if self.rng.random() < 0.5 else self.rng.choice(ENTITIES)
            if self.add_block(mod, self.rng.choice(EXTRAS), entity, at):
                return

    def revise(self, mod: Module, finding: str | None) -> None:
        """Edit a module as a pull request would: retune two blocks, add a few."""
        for target in self.rng.sample(range(len(mod.blocks)), 2):
            old = mod.blocks[target]
            while mod.blocks[target].code == old.code:
                mod.blocks[target] = Block(old.template, old.names, _params(self.rng))
        for _ in range(self.rng.randint(2, 3)):
            self.add_extra(mod, at=self.rng.randint(1, len(mod.blocks)))
        if finding:
            self.add_block(mod, FINDINGS[finding], mod.entity, at=len(mod.blocks))

    def _unique(self, stem: str, suffix: str) -> str:
        """Return `stem + suffix`, numbered when the path is taken."""
        path, n = f"{stem}{suffix}", 2
        while path in self.used_paths:
            path, n = f"{stem}_{n}{suffix}", n + 1
        self.used_paths.add(path)
        return path

    def document(self, entity: str, revision: int = 0) -> tuple[str, str]:
        """Return a non-Python file (.md, .yml or .json) about `entity`."""
        kind = self.rng.choice(("md", "yml", "json"))
        path = self._unique(f"{_DOC_DIRS[kind]}/{entity}", f".{kind}")
        return path, _DOCUMENTS[kind](entity, self.rng, revision)


def _markdown(entity: str, rng: random.Random, revision: int) -> str:
    """Write a short design note."""
    steps = "\n".join(f"{i}. {rng.choice(_STEPS).format(e=entity)}" for i in range(1, 6))
    extra = f"\n## Changes in revision {revision}\n\nLimits are now configurable.\n" * bool(
        revision
    )
    return (
        f"# {entity.title()}s\n\nHow {entity}s move through the system.\n\n## Lifecycle\n\n"
        f"{steps}\n\n## Configuration\n\nSet `{entity.upper()}_URL` and "
        f"`{entity.upper()}_TIMEOUT`.\n{extra}"
    )


def _yaml(entity: str, rng: random.Random, revision: int) -> str:
    """Write a service configuration."""
    return (
        f"{entity}:\n  url: http://{entity}.internal:{rng.choice((80, 8080))}\n"
        f"  timeout_s: {rng.choice((5, 10, 30)) + revision}\n  retries: {rng.randint(1, 5)}\n"
        f"  batch_size: {rng.choice((50, 100, 200))}\n  regions:\n    - eu-west-1\n    - us-east-1\n"
    )


def _json(entity: str, rng: random.Random, revision: int) -> str:
    """Write a fixture of records."""
    rows = [
        {"id": i, "name": f"{entity}-{i}", "status": rng.choice(STATUSES), "total_cents": i * 100}
        for i in range(1, 6 + revision)
    ]
    return json.dumps(rows, indent=2) + "\n"


_STEPS = (
    "A {e} is created as `new`.",
    "Payment moves the {e} to `paid`.",
    "The warehouse picks the {e} and marks it `shipped`.",
    "Support may cancel a {e} before it ships.",
    "Nightly jobs archive each closed {e}.",
    "Every change to a {e} is written to the audit log.",
)
_DOC_DIRS = {"md": "docs", "yml": "config", "json": "fixtures"}
_DOCUMENTS: dict[str, Callable[[str, random.Random, int], str]] = {
    "md": _markdown,
    "yml": _yaml,
    "json": _json,
}

# --- repositories ----------------------------------------------------------------------

PYPROJECT = """[project]
name = "shopfront"
version = "1.4.0"
requires-python = ">=3.11"
dependencies = ["requests>=2.31"]

[tool.ruff]
line-length = 100

[tool.ruff.lint]
select = ["E", "F", "W", "B", "UP"]
"""


@dataclass(frozen=True)
class GeneratedPr:
    """A pull request on disk, with its measured shape."""

    root: Path
    size: str
    files_changed: int
    lines_added: int
    lines_removed: int
    repo_files: int
    planted: tuple[str, ...]

    @property
    def lines_changed(self) -> int:
        """Return added plus removed lines."""
        return self.lines_added + self.lines_removed


def plan(size: Size, seed: int) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """Return (base files, head files, planted finding kinds) for a size."""
    gen = Generator(seed)
    modules = [gen.module() for _ in range(size.base_modules)]
    tested = [m for m in modules if m.testable()][: size.base_tests]
    base = _files(modules, tested)
    base["pyproject.toml"] = PYPROJECT
    base["README.md"] = "# shopfront\n\nThe shop's back office.\n"
    docs = [gen.document(gen.rng.choice(ENTITIES)) for _ in range(size.other // 2)]
    base.update(docs)
    base.update(_packages())
    return base, *_change(gen, size, modules, tested, base, docs)


def _packages() -> dict[str, str]:
    """Return an empty `__init__.py` for every source and test package."""
    tops = [f"{top}/__init__.py" for top in ("app", "tests")]
    return dict.fromkeys(
        [*tops, *(f"{t}/{d}/__init__.py" for t in ("app", "tests") for d in DOMAINS)], ""
    )


def _files(modules: Sequence[Module], tested: Sequence[Module]) -> dict[str, str]:
    """Render modules and their test files."""
    files = {m.path: m.text for m in modules}
    files.update({_test_path(m): m.test_text() for m in tested})
    return files


def _test_path(mod: Module) -> str:
    """Return where a module's tests live."""
    return f"tests/{mod.domain}/test_{Path(mod.path).stem}.py"


def _change(
    gen: Generator,
    size: Size,
    modules: list[Module],
    tested: list[Module],
    base: dict[str, str],
    docs: list[tuple[str, str]],
) -> tuple[dict[str, str], list[str]]:
    """Apply the pull request to the base files; return head files and planted findings."""
    head = dict(base)
    untested = [m for m in modules if m not in tested]
    edited = gen.rng.sample(tested[: size.modified_tests], size.modified_tests)
    edited += gen.rng.sample(untested, size.modified - len(edited))
    added = [gen.module(extras=(3, 4)) for _ in range(size.added)]
    plants = _plants(gen.rng, len(edited) + len(added))
    for i, (mod, finding) in enumerate(zip(edited + added, plants, strict=True)):
        if i < len(edited):
            gen.revise(mod, finding)
        elif finding:
            gen.add_block(mod, FINDINGS[finding], mod.entity)
    head.update({m.path: m.text for m in edited + added})
    new_tests = [m for m in added if m.testable()][: size.added_tests]
    head.update(_files([], [*edited[: size.modified_tests], *new_tests]))
    for path, _ in docs:
        head[path] = _DOCUMENTS[Path(path).suffix[1:]](Path(path).stem, gen.rng, 1)
    head.update(gen.document(gen.rng.choice(ENTITIES)) for _ in range(size.other - len(docs)))
    return head, [p for p in plants if p]


def _plants(rng: random.Random, n: int) -> list[str | None]:
    """Plant a finding in about one changed module in five, every kind at least once."""
    count = max(1, round(n / 5))
    kinds = [FINDING_KINDS[i % len(FINDING_KINDS)] for i in range(count)]
    chosen = set(rng.sample(range(n), count))
    it = iter(kinds)
    return [next(it) if i in chosen else None for i in range(n)]


_GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench Author",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench Author",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


def _git(root: Path, *args: str, date: str = "2024-05-01T12:00:00+00:00") -> str:
    """Run git in `root` with a fixed identity and dates (same input, same commits)."""
    env = {**os.environ, **_GIT_ENV, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    done = subprocess.run(
        ["git", "-C", str(root), *args], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


def _write(root: Path, files: dict[str, str], previous: dict[str, str]) -> None:
    """Write the files that differ from `previous`."""
    for rel, text in files.items():
        if previous.get(rel) != text:
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")


def generate(size: str, root: Path, seed: int = 0) -> GeneratedPr:
    """Create the repository for `size` at `root` (which must not exist or be empty)."""
    base, head, planted = plan(SIZES[size], seed)
    root.mkdir(parents=True, exist_ok=True)
    _git(root, "init", "-q", "-b", "main")
    _write(root, base, {})
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "Base: the shop as it is")
    _git(root, "checkout", "-q", "-b", "feature")
    _write(root, head, base)
    _git(root, "add", "-A")
    title = f"Feature: {SIZES[size].files_changed} files"
    _git(root, "commit", "-q", "-m", title, date="2024-05-02T12:00:00+00:00")
    return _measure(root, size, len(head), tuple(planted))


def _measure(root: Path, size: str, repo_files: int, planted: tuple[str, ...]) -> GeneratedPr:
    """Count what the change touches, as git sees it."""
    stat = _git(root, "diff", "--numstat", "main", "feature").splitlines()
    counts = [line.split("\t")[:2] for line in stat]
    return GeneratedPr(
        root=root,
        size=size,
        files_changed=len(counts),
        lines_added=sum(int(a) for a, _ in counts),
        lines_removed=sum(int(r) for _, r in counts),
        repo_files=repo_files,
        planted=planted,
    )


def main(argv: Sequence[str]) -> int:
    """Generate one repository: `prgen.py SIZE DEST [SEED]`."""
    if len(argv) not in (2, 3) or argv[0] not in SIZES:
        print(f"usage: prgen.py {{{','.join(SIZES)}}} DEST [SEED]", file=sys.stderr)
        return 2
    pr = generate(argv[0], Path(argv[1]), int(argv[2]) if len(argv) == 3 else 0)
    print(
        f"{pr.size}: {pr.files_changed} files changed, +{pr.lines_added} -{pr.lines_removed}"
        f" lines, {pr.repo_files} files in the repository; planted: "
        + ", ".join(f"{n} {kind}" for kind, n in Counter(pr.planted).items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
