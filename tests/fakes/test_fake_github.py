"""The fake GitHub REST API, exercised through the real githubkit client."""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import jwt
import pydantic
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from githubkit import AppAuthStrategy, GitHub
from githubkit.cache import MemCacheStrategy
from githubkit.exception import (
    PrimaryRateLimitExceeded,
    RequestFailed,
    SecondaryRateLimitExceeded,
)

from tests.fakes.github_api import (
    DEFAULT_INSTALLATION_ID,
    FAKE_APP_ID,
    FAKE_USER_TOKEN,
    FakeGitHub,
    Pull,
    run_fake_github,
)
from tests.fakes.github_state import as_files, diff_files

pytestmark = pytest.mark.anyio

OWNER, REPO, NUMBER = "acme", "widgets", 7
APP_PY = (
    "import os\n\n\ndef handler(event):\n    value = event['x']\n    check(value)\n"
    "    log(value)\n    store(value)\n    return value\n"
)
BASE: dict[str, bytes | str] = {
    "app.py": APP_PY,
    "README.md": "# Widgets\n",
    "old_name.py": "print('moved')\n",
    "gone.txt": "bye\n",
    "logo.png": b"\x89PNG\r\n\x1a\n\x00\x01",
    ".github/pr-council.yml": "fail_on: major\n",
}
HEAD: dict[str, bytes | str] = {
    "app.py": APP_PY.replace("store(value)", "save(value)"),
    "README.md": "# Widgets\n",
    "pkg/new_name.py": "print('moved')\n",
    "new.py": "x = 1\ny = 2",
    "logo.png": b"\x89PNG\r\n\x1a\n\x00\x02",
    ".github/pr-council.yml": "fail_on: never\n",
    "empty.txt": "",
}
APP_PY_DIFF = """\
diff --git a/app.py b/app.py
index 3aa9b5c..ea38e43 100644
--- a/app.py
+++ b/app.py
@@ -5,5 +5,5 @@ def handler(event):
     value = event['x']
     check(value)
     log(value)
-    store(value)
+    save(value)
     return value
"""


def open_pr(fake: FakeGitHub, **options: Any) -> Pull:
    """The standard PR #7 on acme/widgets."""
    return fake.add_pull(
        OWNER, REPO, NUMBER, base_files=BASE, head_files=HEAD, title="Save instead of store",
        body="Please review.", base_sha="b" * 40, head_sha="c" * 40, **options,
    )  # fmt: skip


@pytest.fixture
def pr(fake_github: FakeGitHub) -> Pull:
    """The standard PR, opened on the fake."""
    return open_pr(fake_github)


@contextlib.asynccontextmanager
async def installation(
    fake: FakeGitHub, installation_id: int = DEFAULT_INSTALLATION_ID, **options: Any
) -> Any:
    """An installation client with a persistent connection."""
    async with fake.installation_client(installation_id, **options) as gh:
        yield gh


def _epoch(value: Any) -> Any:
    """A datetime as a Unix timestamp; anything else unchanged."""
    return int(value.timestamp()) if isinstance(value, datetime) else value


def status_of(caught: pytest.ExceptionInfo[RequestFailed]) -> int:
    """The HTTP status of a failed githubkit request."""
    return caught.value.response.status_code


# --------------------------------------------------------------------------- diffs


def test_diff_format_matches_git() -> None:
    files = {f.path: f for f in diff_files(as_files(BASE), as_files(HEAD))}
    assert files["app.py"].text == APP_PY_DIFF
    assert files["new.py"].text.splitlines()[1:] == [
        "new file mode 100644",
        "index 0000000..dcfab70",
        "--- /dev/null",
        "+++ b/new.py",
        "@@ -0,0 +1,2 @@",
        "+x = 1",
        "+y = 2",
        "\\ No newline at end of file",
    ]
    assert files["gone.txt"].text.splitlines()[1:3] == [
        "deleted file mode 100644",
        "index b023018..0000000",
    ]
    assert (
        files["logo.png"].text.splitlines()[-1] == "Binary files a/logo.png and b/logo.png differ"
    )
    assert files["logo.png"].patch is None
    assert files["pkg/new_name.py"].text.splitlines() == [
        "diff --git a/old_name.py b/pkg/new_name.py",
        "similarity index 100%",
        "rename from old_name.py",
        "rename to pkg/new_name.py",
    ]
    assert files["empty.txt"].text.splitlines()[1:] == [
        "new file mode 100644",
        "index 0000000..e69de29",
    ]
    assert "old_name.py" not in files


def test_diff_quotes_unusual_paths() -> None:
    diffs = diff_files({}, as_files({"docs/read me.md": "hi\n", "café.py": "x\n"}))
    by_path = {d.path: d.text.splitlines() for d in diffs}
    assert by_path["café.py"][0] == 'diff --git "a/caf\\303\\251.py" "b/caf\\303\\251.py"'
    assert by_path["docs/read me.md"][3:5] == ["--- /dev/null\t", "+++ b/docs/read me.md\t"]


def git(cwd: Path, *args: str, stdin: bytes | None = None) -> str:
    """Run git quietly in `cwd`; its stdout."""
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args]
    return subprocess.run(
        command, cwd=cwd, input=stdin, capture_output=True, check=True
    ).stdout.decode()


def write_tree(root: Path, files: dict[str, bytes | str]) -> None:
    """Write files under root."""
    for name, data in as_files(files).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_diff_is_what_git_prints(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    write_tree(tmp_path, BASE)
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "base")
    for path in BASE:
        (tmp_path / path).unlink()
    write_tree(tmp_path, HEAD)
    git(tmp_path, "add", "-A")
    expected = git(tmp_path, "diff", "--cached", "-M", "--no-color", "--no-ext-diff")
    assert "".join(d.text for d in diff_files(as_files(BASE), as_files(HEAD))) == expected


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_diff_applies_with_git_apply(tmp_path: Path) -> None:
    base = {f"mod{i}.py": "".join(f"line {k}\n" for k in range(40)) for i in range(3)}
    head = {
        "mod0.py": base["mod0.py"].replace("line 3\n", "LINE 3\n").replace("line 30\n", ""),
        "mod1.py": base["mod1.py"] + "tail without newline",
        "added.py": "a\nb\n",
    }
    for name, text in base.items():
        (tmp_path / name).write_text(text)
    patch = "".join(d.text for d in diff_files(as_files(base), as_files(head)))
    git(tmp_path, "apply", "-", stdin=patch.encode())
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == head


# --------------------------------------------------------------------------- auth


async def test_app_jwt_then_installation_token(fake_github: FakeGitHub, pr: Pull) -> None:
    async with fake_github.app_client() as app:
        integration = (await app.rest.apps.async_get_authenticated()).parsed_data
        found = (await app.rest.apps.async_get_repo_installation(OWNER, REPO)).parsed_data
        gh = app.with_auth(app.auth.as_installation(found.id))
        pull = (await gh.rest.pulls.async_get(OWNER, REPO, NUMBER)).parsed_data
        await gh.rest.pulls.async_get(OWNER, REPO, NUMBER)
    assert (integration.slug, integration.id, found.id) == (
        "pr-council",
        FAKE_APP_ID,
        DEFAULT_INSTALLATION_ID,
    )
    assert pull.head.sha == "c" * 40
    kinds = [(r.method, r.path, r.auth.kind, r.status) for r in fake_github.requests]
    assert kinds == [
        ("GET", "/app", "jwt", 200),
        ("GET", f"/repos/{OWNER}/{REPO}/installation", "jwt", 200),
        ("POST", f"/app/installations/{DEFAULT_INSTALLATION_ID}/access_tokens", "jwt", 201),
        ("GET", f"/repos/{OWNER}/{REPO}/pulls/{NUMBER}", "installation", 200),
        # githubkit's HTTP cache (hishel) revalidates with If-None-Match: 304 Not Modified
        ("GET", f"/repos/{OWNER}/{REPO}/pulls/{NUMBER}", "installation", 304),
    ]
    assert len(fake_github.minted) == 1  # the token is cached by githubkit
    assert all(r.auth.installation_id == DEFAULT_INSTALLATION_ID for r in fake_github.requests[3:])
    assert all(
        "ghs_" not in str(r.headers) and "eyJ" not in str(r.headers) for r in fake_github.requests
    )


async def test_installation_token_outside_its_installation_is_404(fake_github: FakeGitHub) -> None:
    open_pr(fake_github)
    fake_github.add_repo("other", "secret", installation_id=2002)
    fake_github.add_pull("other", "secret", 1, base_files={}, head_files={"a": "b\n"})
    async with installation(fake_github) as gh:
        with pytest.raises(RequestFailed) as caught:
            await gh.rest.pulls.async_get("other", "secret", 1)
    assert status_of(caught) == 404
    async with installation(fake_github, 2002) as gh:
        assert (await gh.rest.pulls.async_get("other", "secret", 1)).parsed_data.number == 1


async def test_bad_jwts_are_401(fake_github: FakeGitHub, pr: Pull) -> None:
    now = datetime.now(UTC)
    good = {
        "iss": str(FAKE_APP_ID),
        "iat": now - timedelta(seconds=60),
        "exp": now + timedelta(minutes=9),
    }
    cases = {
        "expired": {**good, "exp": now - timedelta(seconds=1)},
        "too long": {**good, "exp": now + timedelta(minutes=20)},
        "wrong issuer": {**good, "iss": "999"},
        "int issuer ok": {**good, "iss": FAKE_APP_ID},
    }
    statuses = {}
    async with httpx.AsyncClient(base_url=str(fake_github.base_url)) as http:
        for name, claims in cases.items():
            payload = json.dumps({k: _epoch(v) for k, v in claims.items()}).encode()
            token = jwt.PyJWS().encode(payload, fake_github.private_key_pem, algorithm="RS256")
            response = await http.get("/app", headers={"Authorization": f"Bearer {token}"})
            statuses[name] = response.status_code
        jwt_on_repo = await http.get(
            f"/repos/{OWNER}/{REPO}/pulls/{NUMBER}", headers={"Authorization": f"Bearer {token}"}
        )
    assert statuses == {"expired": 401, "too long": 401, "wrong issuer": 401, "int issuer ok": 200}
    assert jwt_on_repo.status_code == 403
    assert [r.unexpected for r in fake_github.acknowledge_unexpected()] == [
        "a JWT used outside the app endpoints"
    ]


async def test_jwt_signed_with_another_key_is_401(fake_github: FakeGitHub) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    async with GitHub(
        AppAuthStrategy(str(FAKE_APP_ID), pem), base_url=str(fake_github.base_url),
        auto_retry=False, cache_strategy=MemCacheStrategy(),
    ) as app:  # fmt: skip
        with pytest.raises(RequestFailed) as caught:
            await app.rest.apps.async_get_authenticated()
    assert status_of(caught) == 401
    assert (
        caught.value.response.raw_response.json()["message"]
        == "A JSON web token could not be decoded"
    )


async def test_wrong_kind_of_credentials_is_unexpected(fake_github: FakeGitHub, pr: Pull) -> None:
    async with fake_github.client() as gh:
        with pytest.raises(RequestFailed) as caught:
            await gh.rest.apps.async_get_authenticated()
    assert status_of(caught) == 401
    bad = fake_github.acknowledge_unexpected()
    assert [r.path for r in bad] == ["/app"]
    assert fake_github.unexpected == []


async def test_user_endpoint(fake_github: FakeGitHub, pr: Pull) -> None:
    fake_github.add_token("ghp_other", "hubot")
    async with fake_github.client() as gh, fake_github.client("ghp_other") as other:
        assert (await gh.rest.users.async_get_authenticated()).parsed_data.login == "octocat"
        assert (await other.rest.users.async_get_authenticated()).parsed_data.login == "hubot"
    async with installation(fake_github) as gh:
        with pytest.raises(RequestFailed) as caught:
            await gh.rest.users.async_get_authenticated()
    assert status_of(caught) == 403
    async with fake_github.client("ghp_wrong") as gh:
        with pytest.raises(RequestFailed) as caught:
            await gh.rest.users.async_get_authenticated()
    assert status_of(caught) == 401


async def test_expired_installation_token_is_401(fake_github: FakeGitHub, pr: Pull) -> None:
    async with installation(fake_github) as gh:
        await gh.rest.pulls.async_get(OWNER, REPO, NUMBER)
        fake_github.expire_tokens()
        with pytest.raises(RequestFailed) as caught:
            await gh.rest.pulls.async_get(OWNER, REPO, NUMBER)
    assert status_of(caught) == 401


async def test_token_limited_to_some_repositories(fake_github: FakeGitHub, pr: Pull) -> None:
    fake_github.add_pull(OWNER, "gadgets", 1, base_files={}, head_files={"a": "b\n"})
    async with fake_github.app_client() as app:
        gh = app.with_auth(app.auth.as_installation(DEFAULT_INSTALLATION_ID, repositories=[REPO]))
        await gh.rest.pulls.async_get(OWNER, REPO, NUMBER)
        with pytest.raises(RequestFailed) as caught:
            await gh.rest.pulls.async_get(OWNER, "gadgets", 1)
    assert status_of(caught) == 404


# --------------------------------------------------------------------------- pull requests


async def test_pull_request_json(fake_github: FakeGitHub, pr: Pull) -> None:
    fake_github.seed_issue_comment(OWNER, REPO, NUMBER, "LGTM", author="alice")
    async with installation(fake_github) as gh:
        pull = (await gh.rest.pulls.async_get(OWNER, REPO, NUMBER)).parsed_data
    assert (pull.title, pull.body, pull.state, pull.draft) == (
        "Save instead of store",
        "Please review.",
        "open",
        False,
    )
    assert (pull.base.ref, pull.base.sha, pull.head.ref) == ("main", "b" * 40, "feature-7")
    assert (pull.user.login, pull.author_association, pull.comments) == ("octocat", "NONE", 1)
    assert (pull.changed_files, pull.additions, pull.deletions) == (7, 4, 3)
    assert pull.base.repo.full_name == f"{OWNER}/{REPO}"


async def test_diff_text(fake_github: FakeGitHub, pr: Pull) -> None:
    async with installation(fake_github) as gh:
        for accept in ("application/vnd.github.diff", "application/vnd.github.v3.diff"):
            response = await gh.rest.pulls.async_get(
                OWNER, REPO, NUMBER, headers={"Accept": accept}
            )
            assert response.text == pr.diff.text
            assert response.headers["content-type"].startswith("application/vnd.github.diff")
    assert pr.diff.text.startswith("diff --git a/.github/pr-council.yml b/.github/pr-council.yml\n")
    assert "@@ -5,5 +5,5 @@ def handler(event):\n" in pr.diff.text


async def test_files_list(fake_github: FakeGitHub, pr: Pull) -> None:
    async with installation(fake_github) as gh:
        files = (await gh.rest.pulls.async_list_files(OWNER, REPO, NUMBER)).parsed_data
    by_name = {f.filename: f for f in files}
    assert by_name["app.py"].status == "modified"
    assert by_name["app.py"].patch == APP_PY_DIFF.split("+++ b/app.py\n")[1].rstrip("\n")
    assert (
        by_name["app.py"].additions,
        by_name["app.py"].deletions,
        by_name["app.py"].changes,
    ) == (1, 1, 2)
    assert by_name["gone.txt"].status == "removed"
    assert by_name["new.py"].status == "added"
    assert by_name["pkg/new_name.py"].status == "renamed"
    assert by_name["pkg/new_name.py"].previous_filename == "old_name.py"
    assert "patch" not in by_name["logo.png"].model_dump(exclude_unset=True)


async def test_big_pr_406_and_paginated_files(fake_github: FakeGitHub) -> None:
    head = {f"f{i:03}.py": "x = 1\n" for i in range(301)}
    fake_github.add_pull(OWNER, REPO, 8, base_files={}, head_files=head)
    async with installation(fake_github) as gh:
        with pytest.raises(RequestFailed) as caught:
            await gh.rest.pulls.async_get(
                OWNER, REPO, 8, headers={"Accept": "application/vnd.github.diff"}
            )
        first = await gh.rest.pulls.async_list_files(OWNER, REPO, 8, per_page=100)
        second = await gh.rest.pulls.async_list_files(OWNER, REPO, 8, per_page=100, page=2)
        paged = [
            f.filename
            async for f in gh.rest.paginate(
                gh.rest.pulls.async_list_files, owner=OWNER, repo=REPO, pull_number=8, per_page=100
            )
        ]
    body = caught.value.response.raw_response.json()
    assert status_of(caught) == 406
    assert body["message"].startswith("Sorry, the diff exceeded the maximum number of files (300).")
    assert body["errors"] == [{"resource": "PullRequest", "field": "diff", "code": "too_large"}]
    assert paged == sorted(head)
    assert [
        rel for rel in ("prev", "next", "last", "first") if f'rel="{rel}"' in first.headers["link"]
    ] == ["next", "last"]
    assert "page=4" in first.headers["link"].split(",")[1]
    assert [
        rel for rel in ("prev", "next", "last", "first") if f'rel="{rel}"' in second.headers["link"]
    ] == ["prev", "next", "last", "first"]


async def test_diff_406_on_lines_and_knob(fake_github: FakeGitHub) -> None:
    fake_github.add_pull(OWNER, REPO, 9, base_files={}, head_files={"big.txt": "x\n" * 20001})
    fake_github.add_pull(
        OWNER, REPO, 10, base_files={}, head_files={"a.txt": "x\n"}, too_large_for_diff=True
    )
    async with installation(fake_github) as gh:
        messages = []
        for number in (9, 10):
            with pytest.raises(RequestFailed) as caught:
                await gh.rest.pulls.async_get(
                    OWNER, REPO, number, headers={"Accept": "application/vnd.github.diff"}
                )
            messages.append(caught.value.response.raw_response.json()["message"])
        files = (await gh.rest.pulls.async_list_files(OWNER, REPO, 9)).parsed_data
    assert "maximum number of lines (20000)" in messages[0]
    assert "maximum number of files (300)" in messages[1]
    assert files[0].additions == 20001


async def test_files_capped_at_3000(fake_github: FakeGitHub) -> None:
    head = {f"d/f{i:04}.txt": "x\n" for i in range(3001)}
    fake_github.add_pull(OWNER, REPO, 11, base_files={}, head_files=head)
    async with installation(fake_github) as gh:
        count = 0
        async for _ in gh.rest.paginate(
            gh.rest.pulls.async_list_files, owner=OWNER, repo=REPO, pull_number=11, per_page=100
        ):
            count += 1
    assert count == 3000


async def test_patchless_files(fake_github: FakeGitHub) -> None:
    fake_github.add_pull(
        OWNER, REPO, 12, base_files={}, head_files={"huge.txt": "x\n"}, patchless={"huge.txt"}
    )
    async with installation(fake_github) as gh:
        files = (await gh.rest.pulls.async_list_files(OWNER, REPO, 12)).parsed_data
    assert "patch" not in files[0].model_dump(exclude_unset=True)


async def test_push_moves_the_head_and_keeps_comments(fake_github: FakeGitHub, pr: Pull) -> None:
    async with installation(fake_github) as gh:
        await gh.rest.issues.async_create_comment(OWNER, REPO, NUMBER, body="first")
        fake_github.push(OWNER, REPO, NUMBER, "d" * 40, {**HEAD, "app.py": APP_PY})
        pull = (await gh.rest.pulls.async_get(OWNER, REPO, NUMBER)).parsed_data
        # a review on the older head is checked against that head's diff
        await gh.rest.pulls.async_create_review(
            OWNER, REPO, NUMBER, commit_id="c" * 40, event="COMMENT", body="old",
            comments=[{"path": "app.py", "line": 8, "side": "RIGHT", "body": "here"}],
        )  # fmt: skip
        with pytest.raises(RequestFailed) as caught:
            await gh.rest.pulls.async_create_review(
                OWNER, REPO, NUMBER, event="COMMENT", body="new",
                comments=[{"path": "app.py", "line": 8, "side": "RIGHT", "body": "here"}],
            )  # fmt: skip
    assert (pull.head.sha, pull.commits, pull.comments) == ("d" * 40, 2, 1)
    assert "app.py" not in pr.diff.by_path
    assert status_of(caught) == 422
    assert [c.body for c in fake_github.issue_comments(OWNER, REPO, NUMBER)] == ["first"]


# --------------------------------------------------------------------------- contents and trees


async def test_contents_base_vs_head(fake_github: FakeGitHub, pr: Pull) -> None:
    path = ".github/pr-council.yml"
    async with installation(fake_github) as gh:
        at_base = (
            await gh.rest.repos.async_get_content(OWNER, REPO, path, ref="b" * 40)
        ).parsed_data
        at_head = (
            await gh.rest.repos.async_get_content(OWNER, REPO, path, ref="c" * 40)
        ).parsed_data
        on_main = (await gh.rest.repos.async_get_content(OWNER, REPO, path, ref="main")).parsed_data
        default = (await gh.rest.repos.async_get_content(OWNER, REPO, path)).parsed_data
        raw = await gh.rest.repos.async_get_content(
            OWNER, REPO, "logo.png", ref="c" * 40, headers={"Accept": "application/vnd.github.raw"}
        )
        listing = (
            await gh.rest.repos.async_get_content(OWNER, REPO, ".github", ref="main")
        ).parsed_data
        with pytest.raises(RequestFailed) as absent:
            await gh.rest.repos.async_get_content(OWNER, REPO, "new.py", ref="b" * 40)
        with pytest.raises(RequestFailed) as bad_ref:
            await gh.rest.repos.async_get_content(OWNER, REPO, "app.py", ref="nope")
    decoded = [base64.b64decode(c.content).decode() for c in (at_base, at_head, on_main, default)]
    assert decoded == [
        "fail_on: major\n",
        "fail_on: never\n",
        "fail_on: major\n",
        "fail_on: major\n",
    ]
    assert raw.content == b"\x89PNG\r\n\x1a\n\x00\x02"
    assert [(i.name, i.type) for i in listing] == [("pr-council.yml", "file")]
    assert (status_of(absent), status_of(bad_ref)) == (404, 404)


async def test_git_tree(fake_github: FakeGitHub, pr: Pull) -> None:
    async with installation(fake_github) as gh:
        full = (await gh.rest.git.async_get_tree(OWNER, REPO, "c" * 40, recursive="1")).parsed_data
        top = (await gh.rest.git.async_get_tree(OWNER, REPO, "main")).parsed_data
        pkg = next(i for i in top.tree if i.path == ".github")
        sub = (await gh.rest.git.async_get_tree(OWNER, REPO, pkg.sha)).parsed_data
    blobs = [i.path for i in full.tree if i.type == "blob"]
    assert blobs == sorted(as_files(HEAD))
    assert {i.path for i in full.tree if i.type == "tree"} == {".github", "pkg"}
    assert full.truncated is False
    assert [(i.path, i.type) for i in top.tree] == [
        (".github", "tree"),
        ("README.md", "blob"),
        ("app.py", "blob"),
        ("gone.txt", "blob"),
        ("logo.png", "blob"),
        ("old_name.py", "blob"),
    ]
    assert [i.path for i in sub.tree] == ["pr-council.yml"]


# --------------------------------------------------------------------------- comments


async def test_issue_comments_create_list_update(fake_github: FakeGitHub, pr: Pull) -> None:
    human = fake_github.seed_issue_comment(OWNER, REPO, NUMBER, "please fix", author="alice")
    async with installation(fake_github) as gh:
        created = (
            await gh.rest.issues.async_create_comment(
                OWNER, REPO, NUMBER, body="<!-- pr-council -->\nv1"
            )
        ).parsed_data
        for i in range(3):
            await gh.rest.issues.async_create_comment(OWNER, REPO, NUMBER, body=f"more {i}")
        page = await gh.rest.issues.async_list_comments(OWNER, REPO, NUMBER, per_page=2)
        everything = [
            c
            async for c in gh.rest.paginate(
                gh.rest.issues.async_list_comments,
                owner=OWNER,
                repo=REPO,
                issue_number=NUMBER,
                per_page=2,
            )
        ]
        updated = (
            await gh.rest.issues.async_update_comment(
                OWNER, REPO, created.id, body="<!-- pr-council -->\nv2"
            )
        ).parsed_data
        fetched = (await gh.rest.issues.async_get_comment(OWNER, REPO, created.id)).parsed_data
        with pytest.raises(RequestFailed) as caught:
            await gh.rest.issues.async_update_comment(OWNER, REPO, human.id, body="hijacked")
    assert (created.user.login, created.user.type) == ("pr-council[bot]", "Bot")
    assert created.performed_via_github_app is not None
    assert 'rel="next"' in page.headers["link"]
    assert [c.user.login for c in everything] == ["alice"] + ["pr-council[bot]"] * 4
    assert updated.body == fetched.body == "<!-- pr-council -->\nv2"
    assert status_of(caught) == 403
    stored = fake_github.issue_comments(OWNER, REPO, NUMBER)
    assert [c.body for c in stored][0:2] == ["please fix", "<!-- pr-council -->\nv2"]
    assert stored[1].author.login == "pr-council[bot]"


async def test_personal_token_comments_as_the_user(fake_github: FakeGitHub, pr: Pull) -> None:
    async with fake_github.client() as gh:
        created = (
            await gh.rest.issues.async_create_comment(OWNER, REPO, NUMBER, body="hi")
        ).parsed_data
    assert created.user.login == "octocat"
    assert fake_github.issue_comments(OWNER, REPO, NUMBER)[0].author.type == "User"


async def test_comment_of_another_repo_is_404(fake_github: FakeGitHub, pr: Pull) -> None:
    fake_github.add_pull(OWNER, "gadgets", 1, base_files={}, head_files={"a": "b\n"})
    other = fake_github.seed_issue_comment(OWNER, "gadgets", 1, "elsewhere")
    async with installation(fake_github) as gh:
        with pytest.raises(RequestFailed) as caught:
            await gh.rest.issues.async_get_comment(OWNER, REPO, other.id)
    assert status_of(caught) == 404


# --------------------------------------------------------------------------- reviews


async def test_review_on_diff_lines_is_stored(fake_github: FakeGitHub, pr: Pull) -> None:
    comments = [
        {"path": "app.py", "line": 8, "side": "RIGHT", "body": "added line"},
        {"path": "app.py", "line": 6, "side": "RIGHT", "body": "context line"},
        {"path": "app.py", "line": 8, "side": "LEFT", "body": "removed line"},
        {
            "path": "app.py",
            "start_line": 6,
            "start_side": "RIGHT",
            "line": 9,
            "side": "RIGHT",
            "body": "range",
        },
        {"path": "new.py", "line": 2, "side": "RIGHT", "body": "no newline"},
    ]
    async with installation(fake_github) as gh:
        review = (
            await gh.rest.pulls.async_create_review(
                OWNER,
                REPO,
                NUMBER,
                commit_id="c" * 40,
                body="Summary",
                event="COMMENT",
                comments=comments,
            )
        ).parsed_data
        listed = (await gh.rest.pulls.async_list_reviews(OWNER, REPO, NUMBER)).parsed_data
        inline = (await gh.rest.pulls.async_list_review_comments(OWNER, REPO, NUMBER)).parsed_data
    assert (review.state, review.body, review.commit_id, review.user.login) == (
        "COMMENTED",
        "Summary",
        "c" * 40,
        "pr-council[bot]",
    )
    assert [r.id for r in listed] == [review.id]
    assert [(c.path, c.line, c.side, c.body) for c in inline] == [
        (c["path"], c["line"], c["side"], c["body"]) for c in comments
    ]
    assert {c.pull_request_review_id for c in inline} == {review.id}
    assert inline[3].start_line == 6
    assert inline[0].diff_hunk.endswith("+    save(value)")
    stored = fake_github.review_comments(OWNER, REPO, NUMBER)
    assert [c.review_id for c in stored] == [review.id] * 5
    assert fake_github.reviews(OWNER, REPO, NUMBER)[0].body == "Summary"


@pytest.mark.parametrize(
    ("comment", "error"),
    [
        ({"path": "app.py", "line": 2, "side": "RIGHT"}, "Line could not be resolved"),
        (
            {"path": "app.py", "line": 8, "side": "LEFT", "start_line": 2, "start_side": "LEFT"},
            "Start line could not be resolved",
        ),
        ({"path": "README.md", "line": 1, "side": "RIGHT"}, "Path could not be resolved"),
        (
            {"path": "app.py", "line": 5, "side": "LEFT", "start_line": 7, "start_side": "LEFT"},
            "start_line must be part of the same hunk as the line, and precede it",
        ),
    ],
)
async def test_review_off_the_diff_is_422_and_nothing_stored(
    fake_github: FakeGitHub, pr: Pull, comment: dict[str, Any], error: str
) -> None:
    comments = [
        {"path": "app.py", "line": 8, "side": "RIGHT", "body": "fine"},
        {**comment, "body": "bad"},
    ]
    async with installation(fake_github) as gh:
        with pytest.raises(RequestFailed) as caught:
            await gh.rest.pulls.async_create_review(
                OWNER, REPO, NUMBER, body="s", event="COMMENT", comments=comments
            )
    assert status_of(caught) == 422
    body = caught.value.response.raw_response.json()
    assert (body["message"], body["errors"]) == ("Unprocessable Entity", [error])
    assert fake_github.reviews(OWNER, REPO, NUMBER) == []
    assert fake_github.review_comments(OWNER, REPO, NUMBER) == []


async def test_review_events(fake_github: FakeGitHub, pr: Pull) -> None:
    async with fake_github.client() as own, installation(fake_github) as bot:
        with pytest.raises(RequestFailed) as own_approval:
            await own.rest.pulls.async_create_review(OWNER, REPO, NUMBER, event="APPROVE")
        approved = (
            await bot.rest.pulls.async_create_review(OWNER, REPO, NUMBER, event="APPROVE")
        ).parsed_data
        pending = (
            await bot.rest.pulls.async_create_review(OWNER, REPO, NUMBER, body="draft")
        ).parsed_data
        with pytest.raises(RequestFailed) as empty:
            await bot.rest.pulls.async_create_review(OWNER, REPO, NUMBER, event="COMMENT")
    assert status_of(own_approval) == status_of(empty) == 422
    assert (approved.state, pending.state) == ("APPROVED", "PENDING")


# --------------------------------------------------------------------------- check runs


def make_annotations(count: int) -> list[dict[str, Any]]:
    """`count` valid annotations on app.py."""
    return [
        {
            "path": "app.py",
            "start_line": 8,
            "end_line": 8,
            "annotation_level": "warning",
            "message": f"m{i}",
        }
        for i in range(count)
    ]


async def test_githubkit_refuses_over_50_annotations_itself(
    fake_github: FakeGitHub, pr: Pull
) -> None:
    output = {"title": "t", "summary": "s", "annotations": make_annotations(51)}
    async with installation(fake_github) as gh:
        with pytest.raises(pydantic.ValidationError):
            await gh.rest.checks.async_create(
                OWNER, REPO, name="c", head_sha="c" * 40, output=output
            )
    assert fake_github.check_runs(OWNER, REPO) == []


async def test_check_runs(fake_github: FakeGitHub, pr: Pull) -> None:
    # githubkit checks request bodies itself; switch that off to see the server's answer
    async with installation(fake_github, rest_api_validate_body=False) as gh:
        output = {
            "title": "pr-council",
            "summary": "2 findings",
            "annotations": make_annotations(50),
        }
        run = (
            await gh.rest.checks.async_create(
                OWNER,
                REPO,
                name="pr-council",
                head_sha="c" * 40,
                status="in_progress",
                output=output,
            )
        ).parsed_data
        with pytest.raises(RequestFailed) as too_many:
            await gh.rest.checks.async_update(
                OWNER, REPO, run.id, output={**output, "annotations": make_annotations(51)}
            )
        done = (
            await gh.rest.checks.async_update(
                OWNER,
                REPO,
                run.id,
                conclusion="failure",
                output={**output, "annotations": make_annotations(10)},
            )
        ).parsed_data
        listed = (await gh.rest.checks.async_list_for_ref(OWNER, REPO, "c" * 40)).parsed_data
        on_branch = (await gh.rest.checks.async_list_for_ref(OWNER, REPO, "feature-7")).parsed_data
        with pytest.raises(RequestFailed) as unknown_sha:
            await gh.rest.checks.async_create(OWNER, REPO, name="x", head_sha="e" * 40)
    assert (run.status, run.output.annotations_count) == ("in_progress", 50)
    assert status_of(too_many) == status_of(unknown_sha) == 422
    assert (done.status, done.conclusion, done.output.annotations_count) == (
        "completed",
        "failure",
        60,
    )
    assert done.completed_at is not None
    assert [r.id for r in listed.check_runs] == [r.id for r in on_branch.check_runs] == [run.id]
    assert listed.check_runs[0].pull_requests[0].number == NUMBER
    stored = fake_github.check_runs(OWNER, REPO)
    assert len(stored) == 1 and len(stored[0].annotations) == 60
    assert stored[0].author.login == "pr-council[bot]"


async def test_check_runs_need_an_app(fake_github: FakeGitHub, pr: Pull) -> None:
    async with fake_github.client() as gh:
        with pytest.raises(RequestFailed) as caught:
            await gh.rest.checks.async_create(OWNER, REPO, name="pr-council", head_sha="c" * 40)
    assert status_of(caught) == 403
    assert fake_github.check_runs(OWNER, REPO) == []


# --------------------------------------------------------------------------- limits and permissions


async def test_bodies_over_65536_chars_are_422(fake_github: FakeGitHub, pr: Pull) -> None:
    long, limit = "x" * 65537, "x" * 65536
    async with installation(fake_github, rest_api_validate_body=False) as gh:
        ok = (
            await gh.rest.issues.async_create_comment(OWNER, REPO, NUMBER, body=limit)
        ).parsed_data
        with pytest.raises(RequestFailed) as comment:
            await gh.rest.issues.async_create_comment(OWNER, REPO, NUMBER, body=long)
        with pytest.raises(RequestFailed) as edit:
            await gh.rest.issues.async_update_comment(OWNER, REPO, ok.id, body=long)
        with pytest.raises(RequestFailed) as review:
            await gh.rest.pulls.async_create_review(OWNER, REPO, NUMBER, event="COMMENT", body=long)
        with pytest.raises(RequestFailed) as inline:
            await gh.rest.pulls.async_create_review(
                OWNER,
                REPO,
                NUMBER,
                event="COMMENT",
                body="s",
                comments=[{"path": "app.py", "line": 8, "body": long}],
            )
        with pytest.raises(RequestFailed) as check:
            await gh.rest.checks.async_create(
                OWNER, REPO, name="c", head_sha="c" * 40, output={"title": "t", "summary": limit}
            )
    assert [status_of(c) for c in (comment, edit, review, inline, check)] == [422] * 5
    errors = comment.value.response.raw_response.json()["errors"]
    assert errors[0]["message"] == "body is too long (maximum is 65536 characters)"
    assert (
        check.value.response.raw_response.json()["errors"][0]["message"]
        == "summary is too long (maximum is 65535 characters)"
    )
    assert [c.body for c in fake_github.issue_comments(OWNER, REPO, NUMBER)] == [limit]
    assert fake_github.reviews(OWNER, REPO, NUMBER) == []


async def test_read_only_credentials_cannot_write(fake_github: FakeGitHub, pr: Pull) -> None:
    fake_github.set_read_only(DEFAULT_INSTALLATION_ID)
    fake_github.add_token("ghp_reader", "reader", read_only=True)
    async with installation(fake_github) as gh, fake_github.client("ghp_reader") as reader:
        await gh.rest.pulls.async_get(OWNER, REPO, NUMBER)
        with pytest.raises(RequestFailed) as bot:
            await gh.rest.issues.async_create_comment(OWNER, REPO, NUMBER, body="hi")
        with pytest.raises(RequestFailed) as user:
            await reader.rest.issues.async_create_comment(OWNER, REPO, NUMBER, body="hi")
    assert (status_of(bot), status_of(user)) == (403, 403)
    assert (
        bot.value.response.raw_response.json()["message"]
        == "Resource not accessible by integration"
    )
    assert fake_github.issue_comments(OWNER, REPO, NUMBER) == []


async def test_collaborator_permission(fake_github: FakeGitHub, pr: Pull) -> None:
    fake_github.set_permission(OWNER, REPO, "maria", "write")
    async with installation(fake_github) as gh:
        levels = [
            (
                await gh.rest.repos.async_get_collaborator_permission_level(OWNER, REPO, login)
            ).parsed_data.permission
            for login in (OWNER, "maria", "stranger")
        ]
    assert levels == ["admin", "write", "read"]


async def test_unknown_endpoint_is_unexpected(fake_github: FakeGitHub, pr: Pull) -> None:
    async with installation(fake_github) as gh:
        with pytest.raises(RequestFailed) as caught:
            await gh.rest.repos.async_list_branches(OWNER, REPO)
    assert status_of(caught) == 404
    assert [r.path for r in fake_github.acknowledge_unexpected()] == [
        f"/repos/{OWNER}/{REPO}/branches"
    ]


async def test_unexpected_requests_fail_a_fresh_fixture() -> None:
    fake = FakeGitHub()
    with run_fake_github(fake):
        async with httpx.AsyncClient(base_url=str(fake.base_url)) as http:
            await http.get("/nowhere")
    with pytest.raises(pytest.fail.Exception, match="GET /nowhere"):
        fake.assert_no_unexpected()


# --------------------------------------------------------------------------- failure injection


async def test_injected_5xx_then_success(fake_github: FakeGitHub, pr: Pull) -> None:
    rule = fake_github.fail("GET", r"/pulls/\d+$", 502, times=2)
    async with installation(fake_github) as gh:
        for _ in range(2):
            with pytest.raises(RequestFailed) as caught:
                await gh.rest.pulls.async_get(OWNER, REPO, NUMBER)
            assert status_of(caught) == 502
        await gh.rest.pulls.async_get(OWNER, REPO, NUMBER)
    assert rule.hits == 2
    assert [r.status for r in fake_github.requests_to("GET", "/pulls/")] == [502, 502, 200]


async def test_secondary_rate_limit(fake_github: FakeGitHub, pr: Pull) -> None:
    fake_github.secondary_rate_limit("POST", "/comments$", retry_after=3)
    async with installation(fake_github) as gh:
        with pytest.raises(SecondaryRateLimitExceeded) as caught:
            await gh.rest.issues.async_create_comment(OWNER, REPO, NUMBER, body="hi")
        await gh.rest.issues.async_create_comment(OWNER, REPO, NUMBER, body="hi")
    assert caught.value.retry_after == timedelta(seconds=3)
    assert "secondary rate limit" in caught.value.response.raw_response.json()["message"]
    assert len(fake_github.issue_comments(OWNER, REPO, NUMBER)) == 1


async def test_primary_rate_limit(fake_github: FakeGitHub, pr: Pull) -> None:
    fake_github.primary_rate_limit("GET", "/pulls/", reset_in_s=120)
    async with installation(fake_github) as gh:
        with pytest.raises(PrimaryRateLimitExceeded) as caught:
            await gh.rest.pulls.async_get(OWNER, REPO, NUMBER)
    assert timedelta(seconds=100) < caught.value.retry_after <= timedelta(seconds=120)


async def test_after_effect_stores_then_fails(fake_github: FakeGitHub, pr: Pull) -> None:
    fake_github.fail("POST", "/issues/7/comments$", 502, after_effect=True)
    fake_github.fail("POST", "/reviews$", 500, after_effect=True)
    async with installation(fake_github) as gh:
        with pytest.raises(RequestFailed):
            await gh.rest.issues.async_create_comment(OWNER, REPO, NUMBER, body="<!-- marker -->")
        with pytest.raises(RequestFailed):
            await gh.rest.pulls.async_create_review(OWNER, REPO, NUMBER, event="COMMENT", body="r")
        listed = (await gh.rest.issues.async_list_comments(OWNER, REPO, NUMBER)).parsed_data
    assert [c.body for c in listed] == ["<!-- marker -->"]
    assert len(fake_github.reviews(OWNER, REPO, NUMBER)) == 1
    assert [(r.method, r.status) for r in fake_github.writes()] == [("POST", 502), ("POST", 500)]


async def test_slow_answer_without_failure(fake_github: FakeGitHub, pr: Pull) -> None:
    fake_github.fail("GET", "/pulls/7$", None, delay_s=0.3)
    async with installation(fake_github) as gh:
        started = time.monotonic()
        await gh.rest.pulls.async_get(OWNER, REPO, NUMBER)
        elapsed = time.monotonic() - started
    assert elapsed >= 0.3


async def test_shutdown_releases_delayed_requests() -> None:
    fake = FakeGitHub()
    fake.fail("GET", ".*", None, delay_s=60)
    outcomes: list[int] = []
    with contextlib.ExitStack() as server:
        server.enter_context(run_fake_github(fake))
        async with (
            httpx.AsyncClient(base_url=str(fake.base_url)) as http,
            anyio.create_task_group() as group,
        ):

            async def call() -> None:
                outcomes.append((await http.get("/app")).status_code)

            group.start_soon(call)
            await fake.wait_until(lambda f: len(f.requests) == 1)
            started = time.monotonic()
            server.close()
            assert time.monotonic() - started < 5
    assert outcomes == [503]


# --------------------------------------------------------------------------- HTTP caching


async def test_etag_revalidation_never_serves_stale_lists(
    fake_github: FakeGitHub, pr: Pull
) -> None:
    async with installation(fake_github) as gh:
        first = (await gh.rest.issues.async_list_comments(OWNER, REPO, NUMBER)).parsed_data
        again = (await gh.rest.issues.async_list_comments(OWNER, REPO, NUMBER)).parsed_data
        await gh.rest.issues.async_create_comment(OWNER, REPO, NUMBER, body="new")
        after = (await gh.rest.issues.async_list_comments(OWNER, REPO, NUMBER)).parsed_data
    assert (len(first), len(again), len(after)) == (0, 0, 1)
    statuses = [r.status for r in fake_github.requests_to("GET", "/issues/7/comments$")]
    assert statuses == [200, 304, 200]


async def test_request_records(fake_github: FakeGitHub, pr: Pull) -> None:
    async with fake_github.client() as gh:
        await gh.rest.issues.async_create_comment(OWNER, REPO, NUMBER, body="hi")
    record = fake_github.writes()[0]
    assert (record.method, record.body, record.status) == ("POST", {"body": "hi"}, 201)
    assert (record.auth.kind, record.auth.identity) == ("user", "user:octocat")
    assert FAKE_USER_TOKEN not in str(record.headers)
    assert record.headers["authorization"] == "<user:octocat>"
