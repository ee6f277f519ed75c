"""`pr-council action` as a subprocess with real event files, against the fake GitHub server."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from check_jsonschema.builtin_schemas import get_builtin_schema

from agents.render import SUMMARY_MARKER
from bot.action import workflow_annotations
from tests.e2e.conftest import run_cli
from tests.fakes.github_api import FakeGitHub
from tests.test_publish import BASE, HEAD, QUERY

ROOT = Path(__file__).parent.parent.parent
DATA = ROOT / "tests" / "data" / "webhooks"
OWNER, REPO, NUMBER = "Codertocat", "Hello-World", 2
SHA = "3" * 40
WORKFLOW_TOKEN = "ghs_workflow_token_for_tests"
READ_ONLY_TOKEN = "ghs_read_only_fork_token"


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    outputs: dict[str, str]
    summary: str


@pytest.fixture
def github(fake_github: FakeGitHub) -> FakeGitHub:
    fake_github.add_pull(OWNER, REPO, NUMBER, base_files=BASE, head_files=HEAD, head_sha=SHA)
    fake_github.add_token(WORKFLOW_TOKEN, "github-actions[bot]")
    fake_github.add_token(READ_ONLY_TOKEN, "github-actions[bot]", read_only=True)
    return fake_github


def event(name: str, **comment: Any) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text())
    payload.pop("installation", None)  # Actions events carry none
    if "pull_request" in payload:
        payload["pull_request"]["head"]["sha"] = SHA
    if "comment" in payload:
        payload["comment"].update(comment)
    return payload


def run_action(
    tmp_path: Path,
    github: FakeGitHub,
    name: str,
    payload: dict[str, Any],
    token: str = WORKFLOW_TOKEN,
    **inputs: str,
) -> Run:
    files = {k: tmp_path / k for k in ("event.json", "output", "summary")}
    files["event.json"].write_text(json.dumps(payload))
    env = {
        "GITHUB_EVENT_NAME": name,
        "GITHUB_EVENT_PATH": str(files["event.json"]),
        "GITHUB_REPOSITORY": f"{OWNER}/{REPO}",
        "GITHUB_API_URL": github.base_url or "",
        "GITHUB_TOKEN": token,
        "GITHUB_OUTPUT": str(files["output"]),
        "GITHUB_STEP_SUMMARY": str(files["summary"]),
        "GITHUB_WORKSPACE": str(tmp_path),
        "RUNNER_TEMP": str(tmp_path),
        **{f"INPUT_{k.upper()}": v for k, v in inputs.items()},
    }
    proc = run_cli("action", env=env)
    read = {k: p.read_text() if p.exists() else "" for k, p in files.items()}
    outputs = dict(line.split("=", 1) for line in read["output"].splitlines() if line)
    return Run(proc.returncode, proc.stdout, proc.stderr, outputs, read["summary"])


def test_an_opened_pull_request_gets_its_review_outputs_and_sarif(
    github: FakeGitHub, tmp_path: Path
) -> None:
    run = run_action(
        tmp_path, github, "pull_request", event("pull_request.opened"), fail_on="major"
    )
    assert run.code == 1, run.stderr  # the f-string SQL query is major
    [summary] = github.issue_comments(OWNER, REPO, NUMBER)
    assert SUMMARY_MARKER in summary.body and summary.author.login == "github-actions[bot]"
    assert github.review_comments(OWNER, REPO, NUMBER) and github.check_runs(OWNER, REPO) == []
    report = json.loads(Path(run.outputs["report-path"]).read_text())
    assert run.outputs["findings-count"] == str(len(report["findings"])) != "0"
    assert run.outputs["highest-severity"] == "major"
    assert run.outputs["review-url"].endswith(f"#issuecomment-{summary.id}")
    sarif = json.loads(Path(run.outputs["sarif-path"]).read_text())
    assert sarif["version"] == "2.1.0"
    assert any(r["ruleId"].endswith("B608") for x in sarif["runs"] for r in x["results"])
    assert "::error" not in run.stdout  # posted: no duplicate annotations
    assert "query.py" in run.summary


def test_a_read_only_token_falls_back_to_annotations_and_the_job_summary(
    github: FakeGitHub, tmp_path: Path
) -> None:
    payload = event("pull_request.opened")
    strict = run_action(tmp_path, github, "pull_request", payload, READ_ONLY_TOKEN, fail_on="major")
    lenient = run_action(
        tmp_path, github, "pull_request", payload, READ_ONLY_TOKEN, fail_on="never"
    )
    assert (strict.code, lenient.code) == (1, 0)
    assert github.issue_comments(OWNER, REPO, NUMBER) == []
    assert "::error file=app/query.py,line=2" in strict.stdout
    assert "::warning title=pr-council::could not write to the pull request" in strict.stdout
    assert "read-only token" in strict.summary and "query.py" in strict.summary
    assert strict.outputs["review-url"] == "" and strict.outputs["highest-severity"] == "major"


def test_a_command_from_a_user_without_write_access_is_refused_politely(
    github: FakeGitHub, tmp_path: Path
) -> None:
    payload = event("issue_comment.created.command_none")
    run = run_action(tmp_path, github, "issue_comment", payload)
    assert run.code == 0, run.stderr
    assert "needs write access" in run.stdout and "needs write access" in run.summary
    assert github.writes() == [] and run.outputs["findings-count"] == "0"


def test_a_command_from_a_member_reviews_the_current_head(
    github: FakeGitHub, tmp_path: Path
) -> None:
    payload = event("issue_comment.created.command_member")
    run = run_action(tmp_path, github, "issue_comment", payload)
    assert run.code == 0, run.stderr
    assert len(github.issue_comments(OWNER, REPO, NUMBER)) == 1


def test_post_none_writes_nothing_and_annotates(github: FakeGitHub, tmp_path: Path) -> None:
    run = run_action(
        tmp_path, github, "pull_request_target", event("pull_request.opened"), post="none"
    )
    assert run.code == 0 and github.writes() == []
    assert "::error file=app/query.py" in run.stdout


def test_a_coverage_file_gives_diff_coverage(github: FakeGitHub, tmp_path: Path) -> None:
    (tmp_path / "coverage.lcov").write_text("TN:\nSF:app/query.py\nDA:1,1\nDA:2,0\nend_of_record\n")
    run = run_action(
        tmp_path,
        github,
        "pull_request",
        event("pull_request.opened"),
        coverage_file="coverage.lcov",
        post="none",
    )
    report = json.loads(Path(run.outputs["report-path"]).read_text())
    assert any(n.startswith("diff coverage: 50.0%") for n in report["notes"])
    assert any(
        f["rule"] == "uncovered-lines" and f["path"] == "app/query.py" for f in report["findings"]
    )


def test_bad_inputs_are_one_line_errors(github: FakeGitHub, tmp_path: Path) -> None:
    run = run_action(tmp_path, github, "pull_request", event("pull_request.opened"), mode="fast")
    assert run.code == 2 and run.stderr.startswith("pr-council: error: pr-council action: mode")
    assert run.stderr.count("\n") == 1


def test_annotations_cannot_smuggle_workflow_commands() -> None:
    from tests.test_state import finding

    evil = finding(1, "x::warning::fake").model_copy(
        update={"body": "line\n::set-output name=x::pwned\r\n%0A", "path": "a,b:c.py"}
    )
    [line] = workflow_annotations([evil])
    assert "\n" not in line and "\r" not in line
    assert "file=a%2Cb%3Ac.py," in line and line.endswith(
        "line%0A::set-output name=x::pwned%0D%0A%250A"
    )


def test_action_yml_is_valid_action_metadata() -> None:
    metadata = yaml.safe_load((ROOT / "action.yml").read_text())
    jsonschema.validate(metadata, get_builtin_schema("vendor.github-actions"))
    assert set(metadata["inputs"]) == {
        "github-token", "anthropic-api-key", "model", "mode", "fail-on", "config-path",
        "coverage-file", "max-inline-comments", "post",
    }  # fmt: skip
    assert set(metadata["outputs"]) == {
        "findings-count", "highest-severity", "report-path", "sarif-path", "review-url",
    }  # fmt: skip
    assert QUERY  # the fixture's planted finding is what the tests above expect
