"""detect-secrets: hard-coded credentials in any changed text file."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from detect_secrets.settings import get_settings

from agents.analyzers.secrets import SecretsAnalyzer, detectors_for, slug
from agents.model import AnalyzerResult, ReviewContext
from tests.helpers import context_from

API_KEY = "x7Kp2mQ9vL4nR8sT1wY6zB3c"  # pragma: allowlist secret
AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"  # pragma: allowlist secret
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # pragma: allowlist secret
GITHUB_TOKEN = "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"  # pragma: allowlist secret
VALUES = (API_KEY, AWS_KEY_ID, AWS_SECRET, GITHUB_TOKEN)

FILES: dict[str, str | None] = {
    "app/settings.py": (
        f'API_KEY = "{API_KEY}"\n'
        'GREETING = "hello there, general kenobi"\n'
        'DIGEST = "9f86d081884c7d659a2feaea0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a0"\n'
        'TOKEN = os.environ["TOKEN"]\n'
    ),
    "deploy/aws.yaml": (
        f"aws:\n  access_key_id: {AWS_KEY_ID}\n  region: eu-west-1\n"
        f"  secret_access_key: {AWS_SECRET}\n"
    ),
    "web/client.js": f'const githubToken = "{GITHUB_TOKEN}";\n',
    "web/allowed.js": f'const token = "{GITHUB_TOKEN}"; // pragma: allowlist secret\n',
    "docs/guide.md": "Set the `API_KEY` environment variable before you start.\n",
}


@pytest.fixture(scope="module")
def ctx() -> ReviewContext:
    return context_from(FILES)


@pytest.fixture(scope="module")
def result(ctx: ReviewContext) -> AnalyzerResult:
    return SecretsAnalyzer().run(ctx)


def located(result: AnalyzerResult) -> set[tuple[str, int, str]]:
    return {(f.path, f.line or 0, f.rule) for f in result.findings}


def test_finds_credentials_in_any_language_and_nothing_else(result: AnalyzerResult) -> None:
    assert located(result) == {
        ("app/settings.py", 1, "secret-keyword"),
        ("deploy/aws.yaml", 2, "aws-access-key"),
        ("deploy/aws.yaml", 4, "secret-keyword"),
        ("web/client.js", 1, "github-token"),
    }
    assert result.skipped == ()


def test_findings_are_critical_security_cwe_798(result: AnalyzerResult) -> None:
    for finding in result.findings:
        assert (finding.severity, finding.category, finding.agent) == (
            "critical",
            "security",
            "security",
        )
        assert finding.cwe == 798
        assert finding.source == f"detect-secrets:{finding.rule}"
    aws = next(f for f in result.findings if f.rule == "aws-access-key")
    assert aws.title == "Hard-coded AWS Access Key"
    assert (
        aws.confidence > next(f for f in result.findings if f.path == "app/settings.py").confidence
    )


def test_secret_values_never_appear_in_findings(result: AnalyzerResult) -> None:
    dumped = result.model_dump_json()
    assert result.findings
    for value in VALUES:
        assert value not in dumped


def test_concurrent_scans_agree_and_leave_global_settings_alone(
    ctx: ReviewContext, result: AnalyzerResult
) -> None:
    before = get_settings().json()
    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = list(pool.map(lambda _: SecretsAnalyzer().run(ctx), range(4)))
    assert all(run.findings == result.findings for run in runs)
    assert get_settings().json() == before


def test_prefilter_picks_the_detectors_that_could_fire() -> None:
    assert "AWSKeyDetector" in detectors_for(f'key_id = "{AWS_KEY_ID}"\n')
    assert detectors_for("db_password: hunter2\n") == {"KeywordDetector"}
    assert detectors_for("def add(a, b):\n    return a + b\n") == frozenset()


def test_oversized_files_are_skipped() -> None:
    big = "x = '" + "a" * 2_100_000 + "'\n"
    result = SecretsAnalyzer().run(context_from({"big.py": big}))
    assert [(s.path, s.by) for s in result.skipped] == [("big.py", "detect-secrets")]


def test_slug() -> None:
    assert slug("AWS Access Key") == "aws-access-key"
    assert slug("Public IP (ipv4)") == "public-ip-ipv4"
