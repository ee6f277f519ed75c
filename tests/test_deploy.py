"""The deployment files say what the code needs, no more."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).parent.parent


def test_the_app_manifest_asks_for_the_minimal_permissions_and_our_events() -> None:
    manifest = yaml.safe_load((ROOT / "app.yml").read_text())
    assert manifest["default_permissions"] == {
        "contents": "read",
        "metadata": "read",
        "pull_requests": "write",
        "issues": "write",
        "checks": "write",
    }
    assert sorted(manifest["default_events"]) == ["issue_comment", "pull_request"]
    assert manifest["hook_attributes"]["url"].endswith("/webhook")


def test_the_image_runs_serve_as_a_non_root_user_with_a_health_check() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    final = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")) :]
    user = [line for line in final if line.startswith("USER ")]
    assert user and user[-1] not in ("USER root", "USER 0")
    assert any(line.startswith("HEALTHCHECK") for line in final)
    assert any("/healthz" in line for line in final)
    assert final[-1] == 'CMD ["pr-council", "serve", "--host", "0.0.0.0", "--port", "8000"]'
