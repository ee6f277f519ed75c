"""The hidden review state in our summary comment."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agents.model import Finding
from bot.github.state import parse_state, state_marker


def finding(i: int, title: str = "t") -> Finding:
    return Finding(
        fingerprint=f"fp{i:04d}",
        agent="security",
        category="security",
        severity="major",
        confidence=0.9,
        path=f"app/m{i}.py",
        line=1,
        title=title,
        rule="R1",
        source="bandit:B608",
    )


def test_round_trip_keeps_what_a_re_review_compares() -> None:
    marker = state_marker([finding(1, "SQL --> injection <!-- x"), finding(2)])
    previous = parse_state(f"summary\n\n{marker}\n")
    assert [(p.fingerprint, p.path, p.severity) for p in previous] == [
        ("fp0001", "app/m1.py", "major"),
        ("fp0002", "app/m2.py", "major"),
    ]
    assert previous[0].title == "SQL --> injection <!-- x"
    assert marker.count("-->") == 1


def test_a_large_state_keeps_the_first_findings_under_its_size() -> None:
    marker = state_marker([finding(i, "x" * 100) for i in range(300)], max_chars=5_000)
    previous = parse_state(marker)
    assert len(marker) <= 5_000 and 0 < len(previous) < 300
    assert previous[0].fingerprint == "fp0000"


@given(st.text(max_size=300))
def test_any_comment_text_parses_to_a_state_or_to_nothing(text: str) -> None:
    for body in (text, f"<!-- pr-council:state={text} -->"):
        assert all(p.fingerprint for p in parse_state(body))


def test_a_tampered_state_is_ignored() -> None:
    assert parse_state("<!-- pr-council:state=bm90IGpzb24= -->") == ()
    assert parse_state("<!-- pr-council:state=W3siZnAiOjF9XQ== -->") == ()
