"""TestMapAnalyzer: source-to-test mapping and unreferenced public API."""

from __future__ import annotations

import ast
from collections.abc import Mapping

import pytest

from agents.analyzers.test_map import (
    TestMapAnalyzer,
    imported_modules,
    is_other_source,
    is_python_source,
    is_test_file,
    is_test_path,
    map_tests,
    public_symbols,
    suggested_test_path,
)
from agents.model import AnalyzerResult, Finding
from tests.helpers import context_from

BILLING_BASE = '''"""Billing."""


def total(items):
    return sum(items)
'''

BILLING_HEAD = '''"""Billing."""


def total(items):
    return sum(items)


def create_invoice(customer, items):
    return {"customer": customer, "total": total(items)}
'''

TEST_BILLING = """from shop.billing import total


def test_total():
    assert total([1, 2]) == 3
"""


def run(
    head: Mapping[str, str | None],
    base: dict[str, str] | None = None,
    tests: dict[str, str] | None = None,
) -> AnalyzerResult:
    """Run the analyzer on the change from `base` to `head` with `tests` as test sources."""
    tests = {"tests/test_billing.py": TEST_BILLING} if tests is None else tests
    repo = tuple(sorted({*(p for p, t in head.items() if t is not None), *tests}))
    ctx = context_from(head, base, test_sources=tests, repo_files=repo)
    return TestMapAnalyzer().run(ctx)


def titles(result: AnalyzerResult) -> list[str]:
    """Return the finding titles, in order."""
    return [f.title for f in result.findings]


def only(result: AnalyzerResult) -> Finding:
    """Return the single finding."""
    assert len(result.findings) == 1, titles(result)
    return result.findings[0]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("tests/test_billing.py", True),
        ("pkg/tests/helpers.py", True),
        ("test_billing.py", True),
        ("shop/billing_test.py", True),
        ("conftest.py", True),
        ("web/src/cart.test.ts", True),
        ("shop/billing.py", False),
        ("shop/testing_utils.py", False),
        ("contest.py", False),
    ],
)
def test_is_test_path(path: str, expected: bool) -> None:
    assert is_test_path(path) is expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("shop/billing.py", True),
        ("src/shop/__init__.py", True),
        ("shop/billing.pyi", False),
        ("tests/test_billing.py", False),
        ("shop/migrations/0001_initial.py", False),
        ("setup.py", False),
        ("shop/__main__.py", False),
        ("docs/conf.py", False),
        ("README.md", False),
    ],
)
def test_is_python_source(path: str, expected: bool) -> None:
    assert is_python_source(path) is expected


@pytest.mark.parametrize(
    ("path", "text", "expected"),
    [
        ("agents/test_coverage.py", "def coverage_specialist():\n    return 1\n", False),
        ("agents/test_map.py", "class TestMapAnalyzer:\n    __test__ = False\n", False),
        ("shop/test_billing.py", "def test_total():\n    assert True\n", True),
        ("shop/billing_test.py", "import unittest\n", True),
        ("shop/test_billing.py", None, True),
        ("tests/helpers.py", "def build():\n    return 1\n", True),
        ("shop/billing.py", "def test_x():\n    pass\n", False),
    ],
)
def test_is_test_file_reads_the_text_when_only_the_name_says_test(
    path: str, text: str | None, expected: bool
) -> None:
    assert is_test_file(path, text) is expected


def test_a_test_named_module_that_holds_no_tests_is_checked_as_source() -> None:
    code = "def coverage_specialist():\n    return 1\n"
    # Listed as a test source by name, but it is code: it is checked and is no evidence.
    tests = {"tests/test_billing.py": TEST_BILLING, "agents/test_coverage.py": code}
    result = run({"agents/test_coverage.py": code}, tests=tests)
    assert titles(result) == ["`coverage_specialist` is not exercised by any test"]


def test_test_files_known_only_by_path_still_map_by_name() -> None:
    head = "def refund(order):\n    return order\n"
    ctx = context_from(
        {"shop/refunds.py": head},
        test_sources={"tests/test_billing.py": TEST_BILLING},
        repo_files=("shop/refunds.py", "tests/test_billing.py", "tests/shop/test_refunds.py"),
    )
    finding = only(TestMapAnalyzer().run(ctx))
    assert "Tests for `shop/refunds.py` live in `tests/shop/test_refunds.py`" in finding.body


def test_source_like_files_are_told_apart_from_docs_and_config() -> None:
    assert [
        p for p in ("a.ts", "b.go", "c.md", "d.yml", "e.toml", "f.json") if is_other_source(p)
    ] == [
        "a.ts",
        "b.go",
    ]


def test_new_unreferenced_function_is_flagged_at_its_def_line() -> None:
    result = run({"shop/billing.py": BILLING_HEAD}, {"shop/billing.py": BILLING_BASE})
    finding = only(result)
    assert finding.title == "`create_invoice` is not exercised by any test"
    assert (finding.path, finding.line, finding.rule) == (
        "shop/billing.py",
        8,
        "untested-public-api",
    )
    assert (finding.severity, finding.confidence, finding.agent) == ("minor", 0.6, "test-coverage")
    assert finding.source == "test-map:untested-public-api"
    assert "`tests/test_billing.py`" in finding.body
    assert result.skipped == ()


def test_a_function_named_by_a_test_is_not_flagged() -> None:
    tests = {
        "tests/test_billing.py": TEST_BILLING
        + "\n\ndef test_invoice():\n    create_invoice(1, [])\n"
    }
    result = run({"shop/billing.py": BILLING_HEAD}, {"shop/billing.py": BILLING_BASE}, tests)
    assert result.findings == ()


def test_a_name_inside_a_longer_identifier_is_not_a_reference() -> None:
    tests = {"tests/test_billing.py": TEST_BILLING + "\ncreate_invoice_v2 = None\n"}
    result = run({"shop/billing.py": BILLING_HEAD}, {"shop/billing.py": BILLING_BASE}, tests)
    assert titles(result) == ["`create_invoice` is not exercised by any test"]


def test_unchanged_public_functions_are_not_flagged() -> None:
    base = BILLING_HEAD
    head = BILLING_HEAD.replace("return sum(items)", "return sum(items, 0)")
    # `total` changed and is tested; `create_invoice` is untested but untouched.
    assert run({"shop/billing.py": head}, {"shop/billing.py": base}).findings == ()


def test_body_change_is_anchored_on_the_first_added_line() -> None:
    head = BILLING_HEAD.replace('"total": total(items)}', '"total": total(items), "v": 2}')
    finding = only(run({"shop/billing.py": head}, {"shop/billing.py": BILLING_HEAD}))
    # The def line (8) is unchanged, so the finding sits where the diff can carry it.
    assert (finding.title, finding.line) == ("`create_invoice` is not exercised by any test", 9)


EXCLUDED = """from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Protocol, overload

from .core import reexported

if TYPE_CHECKING:
    def typing_only(x: int) -> int:
        return x


def _private(x):
    return x * 2


def main():
    return _private(1)


class Shape(abc.ABC):
    @abc.abstractmethod
    def area(self):
        return 0

    def __repr__(self):
        return "Shape()"

    @property
    def sides(self):
        return 4

    def _helper(self):
        return 1


class Reader(Protocol):
    def read(self) -> bytes: ...


class Colour:
    RED = 1


class NotImplementedYet:
    def go(self):
        raise NotImplementedError


@overload
def parse(x: int) -> int: ...


@app.get("/health")
def health():
    return {"ok": True}


if __name__ == "__main__":
    def cli():
        return main()
"""


def test_excluded_definitions_are_never_flagged() -> None:
    tests = {"tests/test_shapes.py": "from shop.shapes import Shape, NotImplementedYet\n"}
    result = run({"shop/shapes.py": EXCLUDED}, tests=tests)
    assert result.findings == ()
    assert result.skipped == ()


def test_public_method_of_a_public_class_is_checked_and_dot_name_counts() -> None:
    base = "class Cart:\n    def add(self, item):\n        return item\n"
    head = (
        base
        + "\n    def remove(self, item):\n        return None\n\n    def clear(self):\n        return []\n"
    )
    tests = {
        "tests/test_cart.py": "from shop.cart import Cart\n\ndef test_clear():\n    Cart().clear()\n"
    }
    result = run({"shop/cart.py": head}, {"shop/cart.py": base}, tests)
    finding = only(result)
    assert (finding.title, finding.line) == ("`Cart.remove` is not exercised by any test", 5)


def test_a_new_untested_class_is_one_finding_listing_its_methods() -> None:
    head = "class Ledger:\n    def post(self, x):\n        return x\n\n    def balance(self):\n        return 0\n"
    result = run({"shop/ledger.py": head}, tests={"tests/test_other.py": "import os\n"})
    finding = only(result)
    assert (finding.title, finding.line) == ("`Ledger` is not exercised by any test", 1)
    assert "`Ledger.post`, `Ledger.balance`" in finding.body


def test_a_file_without_tests_gets_higher_confidence_and_the_conventional_path() -> None:
    head = "def refund(order):\n    return order\n"
    result = run({"src/shop/refunds.py": head})
    finding = only(result)
    assert finding.confidence == 0.7
    assert "a test would go in `tests/test_refunds.py`" in finding.body
    assert result.notes == ("test-map: no test file found for src/shop/refunds.py",)


def test_only_test_files_changed_gives_nothing() -> None:
    head = {"tests/test_billing.py": TEST_BILLING + "\n\ndef test_more():\n    assert True\n"}
    result = run(head, {"tests/test_billing.py": TEST_BILLING})
    assert (result.findings, result.skipped, result.notes) == ((), (), ())


def test_excluded_paths_are_not_checked() -> None:
    code = "def upgrade():\n    return 1\n"
    head = {
        "shop/migrations/0002_add.py": code,
        "tests/conftest.py": code,
        "shop/__init__.py": "from shop.billing import total\n\n__all__ = ['total']\n",
        "scripts/release.py": code,
    }
    result = run(head)
    assert (result.findings, result.skipped) == ((), ())


def test_newer_syntax_is_skipped_with_a_reason() -> None:
    head = {"shop/types.py": "type Money = int\n\ndef pay(m: Money) -> Money:\n    return m\n"}
    result = run(head)
    assert result.findings == ()
    assert len(result.skipped) == 1
    skipped = result.skipped[0]
    assert (skipped.path, skipped.by) == ("shop/types.py", "test-map")
    assert "Python 3.11's ast cannot parse it (line 1" in skipped.reason


def test_non_python_source_is_skipped_but_docs_and_config_are_not_listed() -> None:
    head = {"web/cart.ts": "export const x = 1;\n", "README.md": "# hi\n", "ci.yml": "a: 1\n"}
    result = run(head)
    assert [(s.path, s.reason, s.by) for s in result.skipped] == [
        ("web/cart.ts", "test mapping covers Python only", "test-map")
    ]


def test_without_any_test_sources_nothing_is_flagged_but_a_note_says_why() -> None:
    result = run({"shop/billing.py": BILLING_HEAD}, {"shop/billing.py": BILLING_BASE}, tests={})
    assert result.findings == ()
    assert len(result.notes) == 1
    assert "no test sources were available" in result.notes[0]
    assert "shop/billing.py" in result.notes[0]


def test_changed_test_files_in_the_diff_count_as_references() -> None:
    new_test = TEST_BILLING + "\n\ndef test_invoice():\n    assert create_invoice('a', [])\n"
    head = {"shop/billing.py": BILLING_HEAD, "tests/test_billing.py": new_test}
    base = {"shop/billing.py": BILLING_BASE, "tests/test_billing.py": TEST_BILLING}
    ctx = context_from(head, base)
    assert TestMapAnalyzer().run(ctx).findings == ()


def test_fingerprint_survives_the_symbol_moving_down() -> None:
    first = run({"shop/billing.py": BILLING_HEAD}, {"shop/billing.py": BILLING_BASE})
    moved = "# moved\n\n" + BILLING_HEAD
    second = run({"shop/billing.py": moved}, {"shop/billing.py": BILLING_BASE})
    assert only(first).fingerprint == only(second).fingerprint
    assert only(second).line == 10


@pytest.mark.parametrize(
    ("source", "test"),
    [
        ("shop/billing.py", "tests/test_billing.py"),
        ("shop/billing.py", "shop/test_billing.py"),
        ("shop/billing.py", "shop/billing_test.py"),
        ("shop/billing.py", "tests/shop/test_billing.py"),
        ("src/shop/billing.py", "tests/shop/test_billing.py"),
        ("src/shop/billing.py", "tests/unit/shop/test_billing.py"),
        ("agents/analyzers/coverage.py", "tests/analyzers/test_coverage.py"),
        ("shop/__init__.py", "tests/test_shop.py"),
    ],
)
def test_conventional_test_paths_map_to_their_source(source: str, test: str) -> None:
    assert map_tests(source, {test: "", "tests/test_unrelated.py": ""}) == (test,)


def test_a_mirror_of_another_package_does_not_map() -> None:
    assert map_tests("shop/billing.py", {"tests/admin/test_billing.py": ""}) == ()


@pytest.mark.parametrize(
    "text",
    [
        "from shop.billing import total\n",
        "import shop.billing as b\n",
        "from shop import (\n    billing,\n    cart,\n)\n",
        "import os, shop.billing\n",
    ],
)
def test_a_test_that_imports_the_module_maps_to_it(text: str) -> None:
    tests = {
        "tests/test_checkout.py": text + "\n\ndef test_checkout():\n    pass\n",
        "tests/test_other.py": "from shop.cart import x\n\n\ndef test_x():\n    pass\n",
        "tests/helpers.py": text,
    }
    assert map_tests("src/shop/billing.py", tests) == ("tests/test_checkout.py",)


def test_imported_modules_reads_every_import_form() -> None:
    text = (
        "import os, shop.cart as c\n"
        "from shop.billing import (\n    total,  # the sum\n    tax as t,\n)\n"
        "from . import sibling\n"
        "    from shop import refunds  # indented, inside a test\n"
    )
    assert imported_modules(text) == {
        ("os",),
        ("shop", "cart"),
        ("shop", "billing"),
        ("shop", "billing", "total"),
        ("shop", "billing", "tax"),
        ("shop",),
        ("shop", "refunds"),
    }


def test_public_symbols_lists_functions_and_classes_with_their_spans() -> None:
    text = (
        "import functools\n\n\n"
        "@functools.cache\ndef rate(x):\n    return x\n\n\n"
        'class Cart:\n    """A cart."""\n\n    def add(self):\n        return 1\n'
        "\n    def _hidden(self):\n        return 2\n"
        "\n\ntry:\n    from fast import speedy\nexcept ImportError:\n"
        "    def speedy():\n        return 0\n"
    )
    symbols = public_symbols(ast.parse(text))
    assert [(s.name, s.kind, s.line, s.start, s.end, s.header_end) for s in symbols] == [
        ("rate", "function", 5, 4, 6, 5),
        ("Cart", "class", 9, 9, 16, 9),
        ("speedy", "function", 22, 22, 23, 22),
    ]
    assert [(m.name, m.line) for m in symbols[1].methods] == [("Cart.add", 12)]


def test_name_matches_come_before_import_matches() -> None:
    tests = {
        "tests/test_checkout.py": "from shop.billing import total\n\ndef test_a():\n    pass\n",
        "tests/test_billing.py": "",
        "tests/shop/test_billing.py": "",
    }
    assert map_tests("shop/billing.py", tests) == (
        "tests/shop/test_billing.py",
        "tests/test_billing.py",
        "tests/test_checkout.py",
    )


@pytest.mark.parametrize(
    ("source", "tests", "expected"),
    [
        ("shop/billing.py", [], "tests/shop/test_billing.py"),
        ("src/shop/billing.py", ["tests/test_cart.py"], "tests/test_billing.py"),
        ("agents/analyzers/cov.py", ["tests/analyzers/test_x.py"], "tests/analyzers/test_cov.py"),
        ("shop/billing.py", ["shop/test_cart.py"], "shop/test_billing.py"),
        ("shop/billing.py", ["test/shop/test_cart.py"], "test/shop/test_billing.py"),
    ],
)
def test_suggested_test_path_follows_the_repo_layout(
    source: str, tests: list[str], expected: str
) -> None:
    assert suggested_test_path(source, tests) == expected
