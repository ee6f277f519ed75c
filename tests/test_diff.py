"""Unified diff parsing: real git output, renames, deletions, binaries, garbage."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.diff import DiffError, from_file_patches, parse_diff


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def git_diff(tmp_path: Path) -> str:
    """A real `git diff -M` with an add, a delete, a rename+edit, a binary and an edit."""
    git(tmp_path, "init", "-q")
    (tmp_path / "x.py").write_text("a\nb\nc\n")
    (tmp_path / "gone.txt").write_text("keep\n")
    (tmp_path / "old.py").write_text("r1\nr2\nr3\nr4\n")
    (tmp_path / "img.png").write_bytes(b"\x89PNG\0\0\1")
    git(tmp_path, "add", "-A")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "1")
    (tmp_path / "x.py").write_text("a\nB\nc\nd\n")
    (tmp_path / "gone.txt").unlink()
    (tmp_path / "old.py").rename(tmp_path / "new.py")
    (tmp_path / "new.py").write_text("r1\nr2\nr3\nr4x\n")
    (tmp_path / "img.png").write_bytes(b"\x89PNG\0\0\2")
    (tmp_path / "added.py").write_text("n\n")
    git(tmp_path, "add", "-A")
    return git(tmp_path, "diff", "--cached", "-M")


def test_real_git_diff(git_diff: str) -> None:
    diff = parse_diff(git_diff)
    by_path = {f.path: f for f in diff.files}
    assert set(by_path) == {"added.py", "gone.txt", "new.py", "x.py", "img.png"}
    assert by_path["added.py"].status == "added" and by_path["added.py"].added == {1}
    assert by_path["gone.txt"].status == "deleted" and by_path["gone.txt"].removed == {1}
    renamed = by_path["new.py"]
    assert (renamed.status, renamed.old_path, renamed.added, renamed.removed) == (
        "renamed",
        "old.py",
        {4},
        {4},
    )
    assert by_path["img.png"].binary and not by_path["img.png"].has_patch
    x = by_path["x.py"]
    assert (x.added, x.removed, x.context) == ({2, 4}, {2}, {1, 3})
    assert x.commentable(3) and x.commentable(2, "LEFT") and not x.commentable(1, "LEFT")
    assert not x.commentable(7)
    assert diff.changed_lines == 2 + 1 + 1 + 2 + 1


def test_diff_filters() -> None:
    x = parse_diff("--- a/x.py\n+++ b/x.py\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n").files[0]
    assert x.in_scope(2, "added") and not x.in_scope(1, "added")
    assert x.in_scope(1, "diff_context") and not x.in_scope(9, "diff_context")
    assert x.in_scope(9, "file") and x.in_scope(None, "added")


def test_pure_rename_without_content_change() -> None:
    text = "diff --git a/a.py b/b.py\nsimilarity index 100%\nrename from a.py\nrename to b.py\n"
    [f] = parse_diff(text).files
    assert (f.path, f.old_path, f.status, f.added) == ("b.py", "a.py", "renamed", frozenset())


def test_github_file_patches_without_headers() -> None:
    diff = from_file_patches(
        [
            ("src/a.py", "@@ -1 +1,2 @@\n x = 1\n+y = 2", "modified", None),
            ("logo.png", None, "added", None),
            ("old.py", "@@ -1 +0,0 @@\n-z", "deleted", None),
            ("new.py", "@@ -0,0 +1 @@\n+n\n", "added", None),
            ("b.py", "@@ -1 +1 @@\n-a\n+b", "renamed", "a.py"),
        ]
    )
    by_path = {f.path: f for f in diff.files}
    assert by_path["src/a.py"].added == {2} and by_path["src/a.py"].context == {1}
    assert not by_path["logo.png"].has_patch
    assert by_path["old.py"].status == "deleted"
    assert by_path["new.py"].added == {1}
    assert (by_path["b.py"].status, by_path["b.py"].old_path) == ("renamed", "a.py")


def test_empty_input_is_an_empty_diff() -> None:
    assert parse_diff("").files == ()
    assert parse_diff("\n\n").files == ()


@pytest.mark.parametrize(
    "text",
    [
        "hello, this is not a diff\n",
        "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n-only one line\n",
        "--- a/x\n+++ b/x\n@@ garbage @@\n+x\n",
    ],
)
def test_malformed_input_is_a_diff_error(text: str) -> None:
    with pytest.raises(DiffError):
        parse_diff(text)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("+- @\n\\abc-/diff0123,")), max_size=300))
def test_arbitrary_text_parses_or_raises_diff_error(text: str) -> None:
    with contextlib.suppress(DiffError):
        parse_diff(text)


def test_five_thousand_files_parse(tmp_path: Path) -> None:
    text = "".join(
        f"diff --git a/f{i}.py b/f{i}.py\nnew file mode 100644\n--- /dev/null\n+++ b/f{i}.py\n@@ -0,0 +1 @@\n+x = {i}\n"
        for i in range(5000)
    )
    diff = parse_diff(text)
    assert len(diff.files) == 5000 and diff.files[-1].added == {1}
