"""Bad input to `pr-council review`: a one-line error or a partial review, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import GitRepo, assert_one_line_error, run_cli


def test_malformed_diff_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.diff"
    bad.write_text("this is not a diff at all\n")
    assert_one_line_error(
        run_cli("review", str(tmp_path), "--diff", str(bad)), "not a unified diff"
    )


def test_malformed_hunk_on_stdin(tmp_path: Path) -> None:
    proc = run_cli(
        "review", str(tmp_path), "--diff", "-", stdin=b"--- a/x\n+++ b/x\n@@ nope @@\n+x\n"
    )
    assert_one_line_error(proc, "malformed hunk header")


def test_missing_diff_file(tmp_path: Path) -> None:
    assert_one_line_error(
        run_cli("review", str(tmp_path), "--diff", str(tmp_path / "nope.diff")), "cannot read"
    )


def test_missing_base_revision(repo: GitRepo) -> None:
    repo.commit({"a.py": "x = 1\n"})
    assert_one_line_error(
        run_cli("review", str(repo.root), "--base", "no-such-branch"),
        "unknown revision: no-such-branch",
    )


def test_not_a_git_repository(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("review", str(tmp_path)), "not a git repository")


def test_invalid_config_file_names_file_and_key(repo: GitRepo) -> None:
    repo.commit({".github/pr-council.yml": "max_inline_comments: many\n", "a.py": "x = 1\n"})
    repo.git("checkout", "-q", "-b", "feature")
    repo.commit({"a.py": "x = 2\n"})
    proc = run_cli("review", str(repo.root))
    assert_one_line_error(proc, ".github/pr-council.yml", "max_inline_comments")


def test_config_is_read_from_the_base_side_not_the_change(repo: GitRepo) -> None:
    repo.commit({"a.py": "x = 1\n"})
    repo.git("checkout", "-q", "-b", "feature")
    # A change cannot switch its own reviewer off: this file is not in force yet.
    repo.commit(
        {".github/pr-council.yml": "specialists: []\n", "a.py": 'password = "hunter2hunter2"\n'}
    )
    proc = run_cli("review", str(repo.root), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert {a["name"]: a["status"] for a in report["agents"]}["security"] == "ok"


def test_binary_and_non_utf8_files_are_skipped_with_reasons(repo: GitRepo) -> None:
    repo.commit({"a.py": "x = 1\n"})
    repo.git("checkout", "-q", "-b", "feature")
    repo.commit(
        {
            "logo.png": b"\x89PNG\r\n\x1a\n\0\0\0binary",
            "latin.py": "s = 'caf\xe9'\n".encode("latin-1"),
            "a.py": "x = 2\n",
        }
    )
    proc = run_cli("review", str(repo.root), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    skipped = {s["path"]: s["reason"] for s in json.loads(proc.stdout)["skipped"]}
    assert skipped["logo.png"] == "binary file"
    assert skipped["latin.py"] == "not UTF-8 text"


def test_five_thousand_file_diff_gets_a_partial_review(tmp_path: Path) -> None:
    text = "".join(
        f"diff --git a/pkg/m{i}.py b/pkg/m{i}.py\nnew file mode 100644\n--- /dev/null\n+++ b/pkg/m{i}.py\n"
        f"@@ -0,0 +1,2 @@\n+def f{i}(x):\n+    return x + {i}\n"
        for i in range(5000)
    )
    diff = tmp_path / "huge.diff"
    diff.write_text(text)
    proc = run_cli("review", str(tmp_path), "--diff", str(diff), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    over = [s for s in report["skipped"] if "500-file limit" in s["reason"]]
    assert len(over) == 4500
    assert "4500" in report["summary_markdown"] or "500-file limit" in report["summary_markdown"]
    assert all(a["status"] == "ok" for a in report["agents"])


def test_post_without_a_pull_request_url_is_refused(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("review", str(tmp_path), "--post"), "--post")
