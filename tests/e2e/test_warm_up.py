"""The App warms githubkit up at start-up: the first review imports none of its modules.

githubkit imports a REST namespace and a response's pydantic models on first use, ~30-90 ms
of CPU on the event loop that stalls every webhook delivery in flight. Checked in a fresh
interpreter, where nothing has been imported yet by other tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import githubkit.versions.latest.models as models

from bot.github.client import REVIEW_MODELS

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
import anyio
from githubkit.cache import MemCacheStrategy
from pydantic import SecretStr
from bot.config import Settings
from bot.github.client import Pacer, app_client, warm_up
from bot.jobs import ReviewJob
from bot.runner import ReviewJobHandler
from bot.serve import AppClients
from tests.fakes.github_api import FAKE_APP_ID, FakeGitHub, run_fake_github
from tests.test_publish import BASE, HEAD

fake = FakeGitHub()
fake.add_repo("acme", "shop", installation_id=7)
fake.add_pull("acme", "shop", 1, base_files=BASE, head_files=HEAD, head_sha="1" * 40)
with run_fake_github(fake) as url:
    app = app_client(str(FAKE_APP_ID), fake.private_key_pem, url, cache=MemCacheStrategy())
    if sys.argv[1] == "warm":
        warm_up(app)
    before = {name for name in sys.modules if name.startswith("githubkit")}
    settings = Settings(app_id=str(FAKE_APP_ID), private_key=SecretStr(fake.private_key_pem),
                        github_api_url=url)
    handler = ReviewJobHandler(AppClients(app), settings, pacer=Pacer(interval_s=0.0))
    anyio.run(handler, ReviewJob(owner="acme", repo="shop", number=1, head_sha="1" * 40,
                                 installation_id=7))
    after = {name for name in sys.modules if name.startswith("githubkit")}
    print(json.dumps({"imported": sorted(after - before),
                      "check_runs": len(fake.check_runs("acme", "shop"))}))
"""


def _review(mode: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_after_warm_up_a_review_imports_no_githubkit_module() -> None:
    cold, warm = _review("cold"), _review("warm")
    assert cold["check_runs"] == warm["check_runs"] == 1  # both reviews were posted
    assert cold["imported"]  # without the warm-up, the review imports some
    assert warm["imported"] == []


def test_every_warmed_model_exists_in_this_githubkit() -> None:
    # warm_up() skips a missing name silently (an upgrade must not stop the App): catch it here.
    assert [name for name in REVIEW_MODELS if not hasattr(models, name)] == []
