"""Ruff rules: which ones each specialist runs, how grave each one is, and their CWEs."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from agents.model import Severity

SYNTAX_ERROR = "invalid-syntax"

# Without a repository config: ruff's own defaults (E4, E7, E9, F: real errors, no
# formatter overlap) plus bugbear (likely bugs), pyupgrade (bounded by the repo's
# requires-python) and ruff's own correctness rules. Import sorting (I) and
# simplify (SIM) are left out: they impose a convention the repository has not
# chosen (or has chosen through an isort config we do not read) and would nag on
# nearly every pull request.
DEFAULT_STYLE_SELECT: tuple[str, ...] = ("E4", "E7", "E9", "F", "B", "UP", "RUF")
# B008 fights FastAPI/Typer `Depends()` defaults, B905 (zip strict) is a policy
# choice, RUF001-003 flag legitimate non-English text, RUF012 wants ClassVar on
# every ORM/framework class attribute.
DEFAULT_STYLE_IGNORE: tuple[str, ...] = ("B008", "B905", "RUF001", "RUF002", "RUF003", "RUF012")
# Rules other specialists own; the style agent never reports them.
STYLE_NEVER: tuple[str, ...] = ("PERF", "ASYNC", "S")
# Performance: ruff's perflint and async rules, plus the few rules elsewhere whose
# point is avoidable work (a whole list built for one element, quadratic sums,
# sorting for a min, any()/all() that cannot short-circuit, a file read into memory).
PERF_SELECT: tuple[str, ...] = (
    "PERF",
    "ASYNC",
    "C414",
    "C419",
    "RUF015",
    "RUF017",
    "FURB129",
    "FURB192",
)
SECURITY_SELECT: tuple[str, ...] = ("S",)

SeverityRule = tuple[str, Severity, float]
SeverityFn = Callable[[str], tuple[Severity, float]]

# --- Severity tables: code prefix -> (severity, confidence); the longest prefix wins.

STYLE_TABLE: tuple[SeverityRule, ...] = (
    (SYNTAX_ERROR, "major", 1.0),
    ("E9", "major", 1.0),  # E902: file unreadable
    ("F", "major", 0.9),  # undefined names, redefinitions, `is` on literals, bad % / format
    ("F401", "minor", 0.9),
    ("F402", "minor", 0.8),
    ("F403", "minor", 0.8),
    ("F405", "minor", 0.7),
    ("F541", "nit", 0.9),
    ("F60", "minor", 0.8),  # repeated dict keys
    ("F841", "minor", 0.9),
    ("F842", "minor", 0.8),
    ("B", "minor", 0.7),
    ("E721", "minor", 0.8),
    ("E722", "minor", 0.8),
    ("PLE", "major", 0.8),
    ("PLW", "minor", 0.6),
    ("RUF006", "minor", 0.8),  # un-awaited task may be garbage-collected
)
STYLE_DEFAULT: tuple[Severity, float] = ("nit", 0.8)

PERF_TABLE: tuple[SeverityRule, ...] = (
    ("ASYNC", "minor", 0.7),
    ("ASYNC110", "major", 0.7),  # busy-wait loop
    ("ASYNC2", "major", 0.8),  # blocking I/O, sleep or subprocess inside async def
    ("RUF017", "major", 0.8),  # quadratic list summation
    ("PERF203", "minor", 0.5),  # only costly before 3.11's zero-cost exceptions
    ("PERF4", "nit", 0.6),  # loop -> comprehension: a small constant factor
)
PERF_DEFAULT: tuple[Severity, float] = ("minor", 0.7)

# Mirrors bandit's ratings for the same checks (ruff's S123 is bandit's B123);
# ruff cannot tell a literal argument from user input, hence no `critical`.
SECURITY_TABLE: tuple[SeverityRule, ...] = (
    ("S101", "nit", 0.3),
    ("S102", "major", 0.7),
    ("S104", "major", 0.6),
    ("S113", "major", 0.6),
    ("S201", "major", 0.6),
    ("S301", "major", 0.6),
    ("S307", "major", 0.7),
    ("S310", "major", 0.5),
    ("S312", "major", 0.7),
    ("S321", "major", 0.7),
    ("S324", "major", 0.7),
    ("S4", "nit", 0.5),  # importing a risky module is information, not a finding
    ("S413", "major", 0.8),
    ("S5", "major", 0.7),
    ("S601", "major", 0.6),
    ("S602", "major", 0.8),
    ("S603", "nit", 0.3),
    ("S604", "major", 0.6),
    ("S605", "major", 0.8),
    ("S607", "nit", 0.3),
    ("S608", "major", 0.6),
    ("S609", "major", 0.6),
    ("S61", "major", 0.6),
    ("S7", "major", 0.7),
)
SECURITY_DEFAULT: tuple[Severity, float] = ("minor", 0.6)

SECURITY_CWE: Mapping[str, int] = {
    "S102": 78,
    "S104": 605,
    "S105": 259,
    "S106": 259,
    "S107": 259,
    "S108": 377,
    "S113": 400,
    "S301": 502,
    "S307": 78,
    "S311": 330,
    "S324": 327,
    "S501": 295,
    "S506": 20,
    "S602": 78,
    "S605": 78,
    "S608": 89,
    "S701": 94,
}


def lookup(
    table: Sequence[SeverityRule], code: str, default: tuple[Severity, float]
) -> tuple[Severity, float]:
    """Return (severity, confidence) of the longest table prefix matching `code`."""
    best: SeverityRule | None = None
    for rule in table:
        if code.startswith(rule[0]) and (best is None or len(rule[0]) > len(best[0])):
            best = rule
    return (best[1], best[2]) if best else default


def style_severity(code: str) -> tuple[Severity, float]:
    """Rate a style diagnostic."""
    return lookup(STYLE_TABLE, code, STYLE_DEFAULT)


def perf_severity(code: str) -> tuple[Severity, float]:
    """Rate a performance diagnostic."""
    return lookup(PERF_TABLE, code, PERF_DEFAULT)


def security_severity(code: str) -> tuple[Severity, float]:
    """Rate a flake8-bandit diagnostic."""
    return lookup(SECURITY_TABLE, code, SECURITY_DEFAULT)
