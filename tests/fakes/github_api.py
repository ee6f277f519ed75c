"""A fake GitHub REST API server, for tests that drive the real githubkit client.

`FakeGitHub` serves the state of `tests.fakes.github_state` (repositories, pull requests,
comments, reviews, check runs) as GitHub's REST API: App JWTs verified against a key
generated once per session, installation tokens minted on demand, personal tokens,
pagination with `Link` headers, ETags, rate-limit headers, GitHub's validation errors
(422 for inline comments outside the diff, 406 for huge diffs, 403 for read-only tokens)
and scriptable failures (`fail`, `secondary_rate_limit`, `primary_rate_limit`).
`run_fake_github` serves it over loopback; the `fake_github` fixture gives each test a
reset fake on a session-wide server and fails the test on unexpected requests.

Wire notes (githubkit 0.14.7):

- `AppAuthStrategy` sends `Authorization: Bearer <JWT>` (iat = now - 60 s, exp = iat +
  10 min) only to app routes (`/app...`, `/repos/{o}/{r}/installation`); everything else
  goes out as `token <installation token>`, minted through
  `POST /app/installations/{id}/access_tokens` and cached in the client's cache strategy.
- githubkit validates every JSON answer with its pydantic models, so bodies here carry
  every required field of GitHub's schema.
- githubkit's `ValidationError` model wants structured `errors`; GitHub's reviews API
  answers 422 with plain strings (`"errors": ["Line could not be resolved"]`), as here, so
  read such errors from `raw_response.json()`, not `parsed_data`.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import math
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import anyio
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Request
from fastapi.responses import Response
from githubkit import AppAuthStrategy, GitHub, TokenAuthStrategy
from githubkit.cache import MemCacheStrategy

from tests.fakes import github_state as gs
from tests.fakes.github_state import (
    DEFAULT_INSTALLATION_ID,
    FAKE_APP_ID,
    FAKE_APP_SLUG,
    FAKE_USER_LOGIN,
    FAKE_USER_TOKEN,
    MAX_DIFF_FILES,
    MAX_DIFF_LINES,
    MAX_LISTED_FILES,
    Actor,
    ApiError,
    CheckRun,
    GitHubState,
    Installation,
    IssueComment,
    Pull,
    Repo,
    Review,
    ReviewComment,
    error_body,
    forbidden,
    not_found,
)

RATE_LIMIT = 5000
SECONDARY_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try "
    "again. If you reach out to GitHub Support for help, please include the request ID."
)
READ_ONLY_MESSAGES = {
    "installation": "Resource not accessible by integration",
    "user": "Resource not accessible by personal access token",
}
DIFF_TYPE = "application/vnd.github.diff; charset=utf-8"
Reply = tuple[int, Any, dict[str, str]]
AuthKind = Literal["none", "jwt", "installation", "user", "invalid"]


@functools.cache
def _app_key() -> tuple[str, Any]:
    """A 2048-bit RSA key for the app, made once per session: (private PEM, public key)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return pem.decode(), key.public_key()


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class AuthInfo:
    """Who a request authenticated as (no raw token values)."""

    kind: AuthKind
    actor: Actor | None = None
    installation_id: int | None = None
    token_hint: str | None = None
    problem: str | None = None

    @property
    def identity(self) -> str:
        """A short description: "jwt:4242", "installation:1001", "user:octocat"..."""
        if self.kind == "installation":
            return f"installation:{self.installation_id}"
        return f"{self.kind}:{self.actor.login if self.actor else self.token_hint or '-'}"


@dataclass
class FailRule:
    """Fail (or delay) the next `times` requests matching method and path regex (re.search)."""

    method: str
    pattern: re.Pattern[str]
    status: int | None
    times: int | None = 1
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay_s: float = 0.0
    after_effect: bool = False
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        """Whether a request is subject to this rule (and the rule is not used up)."""
        if self.times is not None and self.hits >= self.times:
            return False
        return self.method in ("*", method.upper()) and bool(self.pattern.search(path))


@dataclass
class RecordedRequest:
    """One request as the fake saw it, completed as it is answered."""

    index: int
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    auth: AuthInfo
    arrived_at: float
    status: int | None = None
    unexpected: str | None = None
    injected: FailRule | None = None

    @property
    def is_write(self) -> bool:
        """A content-creating request (POST/PATCH/PUT/DELETE, token minting excluded)."""
        minting = self.path.endswith("/access_tokens")
        return self.method in ("POST", "PATCH", "PUT", "DELETE") and not minting


@dataclass
class MintedToken:
    """An installation token the fake issued."""

    installation_id: int
    expires_at: float
    repos: set[str] | None = None


@dataclass(frozen=True)
class Route:
    """One endpoint: method, path regex, handler name, and who may call it."""

    method: str
    pattern: re.Pattern[str]
    handler: str
    scope: Literal["app", "user", "read", "write", "app_write"]


@dataclass
class Ctx:
    """What a handler needs: the request, its record, path params, the caller."""

    request: Request
    record: RecordedRequest
    params: dict[str, str]
    entry: Repo | None = None

    @property
    def actor(self) -> Actor:
        """The author of anything this request creates."""
        assert self.record.auth.actor is not None
        return self.record.auth.actor

    @property
    def body(self) -> dict[str, Any]:
        """The JSON body (an empty dict if none)."""
        body = self.record.body
        return body if isinstance(body, dict) else {}

    def num(self, name: str) -> int:
        """An integer path parameter."""
        return int(self.params[name])


_REPO = r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"
_ROUTES = [
    ("GET", r"/app", "get_app", "app"),
    ("GET", rf"{_REPO}/installation", "get_repo_installation", "app"),
    ("POST", r"/app/installations/(?P<iid>\d+)/access_tokens", "create_token", "app"),
    ("GET", r"/user", "get_user", "user"),
    ("GET", rf"{_REPO}/pulls/(?P<n>\d+)", "get_pull", "read"),
    ("GET", rf"{_REPO}/pulls/(?P<n>\d+)/files", "list_files", "read"),
    ("GET", rf"{_REPO}/contents(?:/(?P<path>.*))?", "get_contents", "read"),
    ("GET", rf"{_REPO}/git/trees/(?P<sha>.+)", "get_tree", "read"),
    ("GET", rf"{_REPO}/issues/(?P<n>\d+)/comments", "list_issue_comments", "read"),
    ("POST", rf"{_REPO}/issues/(?P<n>\d+)/comments", "create_issue_comment", "write"),
    ("GET", rf"{_REPO}/issues/comments/(?P<id>\d+)", "get_issue_comment", "read"),
    ("PATCH", rf"{_REPO}/issues/comments/(?P<id>\d+)", "update_issue_comment", "write"),
    ("POST", rf"{_REPO}/pulls/(?P<n>\d+)/reviews", "create_review", "write"),
    ("GET", rf"{_REPO}/pulls/(?P<n>\d+)/reviews", "list_reviews", "read"),
    ("GET", rf"{_REPO}/pulls/(?P<n>\d+)/comments", "list_review_comments", "read"),
    ("POST", rf"{_REPO}/check-runs", "create_check_run", "app_write"),
    ("PATCH", rf"{_REPO}/check-runs/(?P<id>\d+)", "update_check_run", "app_write"),
    ("GET", rf"{_REPO}/commits/(?P<ref>.+)/check-runs", "list_check_runs", "read"),
    ("GET", rf"{_REPO}/collaborators/(?P<user>[^/]+)/permission", "get_permission", "read"),
]
ROUTES = [Route(m, re.compile(p), h, s) for m, p, h, s in _ROUTES]  # type: ignore[arg-type]


def _default_failure(status: int, headers: Mapping[str, str]) -> dict[str, Any]:
    """GitHub's body for an injected failure status."""
    lowered = {k.lower() for k in headers}
    if status in (403, 429) and "retry-after" in lowered:
        return {"message": SECONDARY_MESSAGE, "documentation_url": gs.DOCS}
    messages = {403: "Forbidden", 404: "Not Found", 406: "Not Acceptable", 422: "Validation Failed",
                429: "API rate limit exceeded", 502: "Server Error", 503: "Service Unavailable"}  # fmt: skip
    return error_body(messages.get(status, "Server Error" if status >= 500 else "Error"), status)


def _too_large(pull: Pull) -> dict[str, Any] | None:
    """GitHub's 406 body when the PR's diff is too large to render, else None."""
    diff = pull.diff
    if pull.too_large_for_diff or len(diff.files) > MAX_DIFF_FILES:
        what = f"maximum number of files ({MAX_DIFF_FILES})"
    elif diff.changed_lines > MAX_DIFF_LINES:
        what = f"maximum number of lines ({MAX_DIFF_LINES})"
    else:
        return None
    message = (
        f"Sorry, the diff exceeded the {what}. Consider using 'List pull requests files' "
        "API or locally cloning the repository instead."
    )
    errors = [{"resource": "PullRequest", "field": "diff", "code": "too_large"}]
    return {
        "message": message,
        "errors": errors,
        "documentation_url": "https://docs.github.com/rest/pulls/pulls#get-a-pull-request",
        "status": "406",
    }


class FakeGitHub(GitHubState):
    """A stateful fake of GitHub's REST API: apps, tokens, PRs, comments, reviews, checks."""

    def __init__(self, *, app_id: int = FAKE_APP_ID, slug: str = FAKE_APP_SLUG) -> None:
        super().__init__(app_id=app_id, slug=slug)
        self.private_key_pem, self._public_key = _app_key()
        self.app = self._build_app()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: asyncio.Event | None = None
        self.reset()

    # ---- configuration and scripting (test thread)

    def reset(self) -> None:
        """Forget all state, tokens, failure rules and records."""
        with self.lock:
            self.clear_state()
            self.requests: list[RecordedRequest] = []
            self.rules: list[FailRule] = []
            self.minted: dict[str, MintedToken] = {}
            self._used: Counter[str] = Counter()

    def fail(
        self,
        method: str,
        path_regex: str,
        status: int | None,
        *,
        times: int | None = 1,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        delay_s: float = 0.0,
        after_effect: bool = False,
    ) -> FailRule:
        """Fail the next `times` (None: all) matching requests with `status`, after `delay_s`.

        `status=None` only delays. `after_effect=True` serves the request first (a comment
        or review is stored) and then answers `status` anyway. `body` defaults to GitHub's
        body for the status (the secondary-rate-limit message for 403/429 + retry-after).
        """
        rule = FailRule(
            method.upper(), re.compile(path_regex), status, times, dict(headers or {}), body,
            delay_s, after_effect,
        )  # fmt: skip
        with self.lock:
            self.rules.append(rule)
        return rule

    def secondary_rate_limit(
        self, method: str = "POST", path_regex: str = ".*", *, retry_after: int = 3,
        times: int | None = 1, status: int = 403,
    ) -> FailRule:  # fmt: skip
        """Answer 403 (or 429) with `retry-after` and GitHub's secondary-rate-limit message."""
        headers = {"retry-after": str(retry_after)}
        return self.fail(method, path_regex, status, times=times, headers=headers)

    def primary_rate_limit(
        self, method: str = "*", path_regex: str = ".*", *, reset_in_s: int = 60,
        times: int | None = 1,
    ) -> FailRule:  # fmt: skip
        """Answer 403 with `x-ratelimit-remaining: 0` and a reset `reset_in_s` from now.

        The default matches every request, token minting included: githubkit then raises
        from inside its auth flow, wrapped as a plain `RequestError`.
        """
        headers = {
            "x-ratelimit-limit": str(RATE_LIMIT), "x-ratelimit-remaining": "0",
            "x-ratelimit-used": str(RATE_LIMIT), "x-ratelimit-resource": "core",
            "x-ratelimit-reset": str(int(time.time()) + reset_in_s),
        }  # fmt: skip
        body = error_body("API rate limit exceeded for installation.", 403)
        return self.fail(method, path_regex, 403, times=times, headers=headers, body=body)

    def expire_tokens(self) -> None:
        """Make every minted installation token expired (401 Bad credentials)."""
        with self.lock:
            for token in self.minted.values():
                token.expires_at = 0.0

    # ---- inspection (test thread)

    @property
    def unexpected(self) -> list[RecordedRequest]:
        """Requests no test should make (unknown endpoint, wrong kind of credentials)."""
        with self.lock:
            return [r for r in self.requests if r.unexpected is not None]

    def assert_no_unexpected(self) -> None:
        """Fail the current test if any request was unexpected."""
        if bad := self.unexpected:
            lines = [f"{r.method} {r.path} ({r.auth.identity}): {r.unexpected}" for r in bad]
            pytest.fail("unexpected requests to the fake GitHub API:\n" + "\n".join(lines))

    def acknowledge_unexpected(self) -> list[RecordedRequest]:
        """Return the unexpected requests and stop counting them (for tests that cause them)."""
        with self.lock:
            bad = [replace(r) for r in self.requests if r.unexpected is not None]
            for record in self.requests:
                record.unexpected = None
            return bad

    async def wait_until(self, predicate: Callable[[FakeGitHub], bool]) -> None:
        """Poll until `predicate(self)` holds, for at most 5 s (the server thread changes it)."""
        for _ in range(500):
            if predicate(self):
                return
            await anyio.sleep(0.01)
        raise AssertionError("fake GitHub: condition not met within 5 s")

    def writes(self) -> list[RecordedRequest]:
        """Content-creating requests (POST/PATCH/PUT/DELETE except token minting)."""
        with self.lock:
            return [r for r in self.requests if r.is_write]

    def requests_to(self, method: str, path_regex: str) -> list[RecordedRequest]:
        """Recorded requests with this method ("*": any) and a path matching the regex."""
        pattern = re.compile(path_regex)
        with self.lock:
            return [
                r for r in self.requests
                if method in ("*", r.method) and pattern.search(r.path)
            ]  # fmt: skip

    # ---- clients (test thread)

    def _client_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Defaults for test clients: this server, no retries, a fresh cache, 10 s timeout."""
        if self.base_url is None:
            raise RuntimeError("the fake is not running; use run_fake_github()")
        defaults = {"base_url": self.base_url, "auto_retry": False, "timeout": 10.0}
        return {**defaults, "cache_strategy": MemCacheStrategy(), **options}

    def client(self, token: str = FAKE_USER_TOKEN, **options: Any) -> GitHub[TokenAuthStrategy]:
        """A githubkit client with a personal token."""
        return GitHub(TokenAuthStrategy(token), **self._client_options(options))

    def app_client(self, **options: Any) -> GitHub[AppAuthStrategy]:
        """A githubkit client authenticating as the app (JWT)."""
        auth = AppAuthStrategy(str(self.app_id), self.private_key_pem)
        return GitHub(auth, **self._client_options(options))

    def installation_client(
        self, installation_id: int = DEFAULT_INSTALLATION_ID, **options: Any
    ) -> GitHub[Any]:
        """A githubkit client acting as an installation (tokens minted on demand)."""
        app = self.app_client(**options)
        return app.with_auth(app.auth.as_installation(installation_id))

    # ---- the app

    def _build_app(self) -> FastAPI:
        """The FastAPI app: one catch-all route, dispatched by `ROUTES`."""
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
        app.add_api_route(
            "/{path:path}",
            self._handle,
            methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
        )
        return app

    def _bind_loop(self) -> None:
        """Attach to the server's event loop (first request after a (re)start)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._closing = loop, asyncio.Event()

    def close_hangs(self) -> None:
        """Release every delayed request (called before shutdown)."""
        if self._loop is not None and self._closing is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._closing.set)

    async def _sleep(self, seconds: float) -> bool:
        """Sleep; False if the server started closing meanwhile."""
        assert self._closing is not None
        with anyio.move_on_after(seconds):
            await self._closing.wait()
            return False
        return True

    async def _handle(self, request: Request) -> Response:
        """Every request: record, injected failures, auth, route, answer."""
        self._bind_loop()
        record = await self._record(request)
        rule = self._take_rule(record)
        if rule is not None and rule.delay_s and not await self._sleep(rule.delay_s):
            return Response(status_code=503)
        if rule is not None and rule.status is not None and not rule.after_effect:
            return self._finish(request, record, self._injected(rule))
        reply = self._serve(request, record)
        if rule is not None and rule.status is not None and reply[0] < 400:
            reply = self._injected(rule)
        return self._finish(request, record, reply)

    async def _record(self, request: Request) -> RecordedRequest:
        """Record a request: its JSON body and who sent it (tokens redacted)."""
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", errors="replace")
        headers = dict(request.headers)
        with self.lock:
            auth = self._identify(headers.get("authorization", ""))
            if "authorization" in headers:
                headers["authorization"] = f"<{auth.identity}>"
            record = RecordedRequest(
                len(self.requests), request.method, request.url.path,
                dict(request.query_params), headers, body, auth, time.monotonic(),
            )  # fmt: skip
            self.requests.append(record)
        return record

    def _take_rule(self, record: RecordedRequest) -> FailRule | None:
        """The first failure rule matching this request, counted as used."""
        with self.lock:
            for rule in self.rules:
                if rule.matches(record.method, record.path):
                    rule.hits += 1
                    record.injected = rule
                    return rule
        return None

    def _injected(self, rule: FailRule) -> Reply:
        """The answer of a failure rule."""
        assert rule.status is not None
        body = rule.body if rule.body is not None else _default_failure(rule.status, rule.headers)
        return rule.status, body, dict(rule.headers)

    def _serve(self, request: Request, record: RecordedRequest) -> Reply:
        """Route and run the handler under the lock; GitHub errors become answers."""
        try:
            with self.lock:
                route, params = self._route(record)
                ctx = Ctx(request, record, params)
                self._authorize(route, ctx)
                return getattr(self, f"_{route.handler}")(ctx)  # type: ignore[no-any-return]
        except ApiError as error:
            return error.status, error.body, error.headers

    def _route(self, record: RecordedRequest) -> tuple[Route, dict[str, str]]:
        """The route for a request (404, recorded as unexpected, if none)."""
        for route in ROUTES:
            match = route.pattern.fullmatch(record.path)
            if match and route.method == record.method:
                return route, {k: v for k, v in match.groupdict().items() if v is not None}
        record.unexpected = f"no such endpoint in the fake: {record.method} {record.path}"
        raise not_found()

    def _finish(self, request: Request, record: RecordedRequest, reply: Reply) -> Response:
        """Serialize an answer with GitHub's headers (ETag on GET 200, rate limits)."""
        status, payload, extra = reply
        media = extra.pop("content-type", "application/json; charset=utf-8")
        if isinstance(payload, bytes | str):
            content = payload.encode() if isinstance(payload, str) else payload
        else:
            content = json.dumps(payload).encode()
        headers = {**self._rate_headers(record), **extra}
        if request.method == "GET" and status == 200:
            etag = 'W/"' + hashlib.sha256(media.encode() + content).hexdigest()[:40] + '"'
            headers.update({"etag": etag, "cache-control": "private, max-age=60, s-maxage=60",
                            "vary": "Accept, Authorization, Cookie, X-GitHub-OTP"})  # fmt: skip
            if request.headers.get("if-none-match") == etag:
                status, content = 304, b""
        record.status = status
        return Response(content, status_code=status, headers=headers, media_type=media)

    def _rate_headers(self, record: RecordedRequest) -> dict[str, str]:
        """x-ratelimit-* headers for the caller, plus a request id."""
        with self.lock:
            self._used[record.auth.identity] += 1
            used = self._used[record.auth.identity]
        reset = (int(time.time()) // 3600 + 1) * 3600
        return {
            "x-ratelimit-limit": str(RATE_LIMIT), "x-ratelimit-remaining": str(max(0, RATE_LIMIT - used)),
            "x-ratelimit-used": str(used), "x-ratelimit-reset": str(reset),
            "x-ratelimit-resource": "core", "x-github-request-id": f"FAKE:{record.index:06X}",
            "x-github-api-version-selected": "2022-11-28",
        }  # fmt: skip

    # ---- authentication

    def _identify(self, header: str) -> AuthInfo:
        """Who an Authorization header stands for."""
        if not header:
            return AuthInfo("none")
        scheme, _, token = header.partition(" ")
        token, hint = token.strip(), token.strip()[-4:]
        if scheme.lower() not in ("bearer", "token") or not token:
            return AuthInfo("invalid", token_hint=hint, problem="Bad credentials")
        if token.count(".") == 2:
            return self._verify_jwt(token)
        if (minted := self.minted.get(token)) is not None:
            if minted.expires_at <= time.time():
                return AuthInfo("invalid", token_hint=hint, problem="Bad credentials")
            return AuthInfo("installation", self.bot, minted.installation_id, hint)
        if (user := self.user_tokens.get(token)) is not None:
            return AuthInfo("user", Actor(user.login), token_hint=hint)
        return AuthInfo("invalid", token_hint=hint, problem="Bad credentials")

    def _verify_jwt(self, token: str) -> AuthInfo:
        """Check an App JWT: RS256 with the app's key, iss = app id, exp ≤ iat + 10 min."""
        app = Actor(str(self.app_id), "App")
        try:
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=["RS256"],
                options={"require": ["iat", "exp", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            return AuthInfo(
                "jwt", app, problem="'Expiration time' claim ('exp') must be in the future"
            )
        except jwt.ImmatureSignatureError:
            return AuthInfo("jwt", app, problem="'Issued at' claim ('iat') must be in the past")
        except jwt.PyJWTError:
            return AuthInfo("jwt", app, problem="A JSON web token could not be decoded")
        if str(claims["iss"]) != str(self.app_id):
            return AuthInfo("jwt", app, problem="Integration not found")
        if claims["exp"] - claims["iat"] > 600:
            return AuthInfo(
                "jwt", app, problem="'Expiration time' claim ('exp') is too far in the future"
            )
        return AuthInfo("jwt", app)

    def _authorize(self, route: Route, ctx: Ctx) -> None:
        """Check the caller may use this route (401/403/404 as GitHub answers)."""
        auth, record = ctx.record.auth, ctx.record
        if auth.kind == "none":
            raise ApiError(401, error_body("Requires authentication", 401))
        if auth.kind == "invalid" or (auth.kind == "jwt" and auth.problem):
            raise ApiError(401, error_body(auth.problem or "Bad credentials", 401))
        if route.scope == "app":
            if auth.kind != "jwt":
                record.unexpected = f"app endpoint called with a {auth.kind} token, not a JWT"
                raise ApiError(401, error_body("A JSON web token could not be decoded", 401))
            return
        if auth.kind == "jwt":
            record.unexpected = "a JWT used outside the app endpoints"
            raise forbidden("Resource not accessible by integration")
        if route.scope == "user":
            if auth.kind != "user":
                raise forbidden("Resource not accessible by integration")
            return
        ctx.entry = self._visible_repo(ctx)
        if route.scope in ("write", "app_write"):
            self._check_write(route, ctx)

    def _visible_repo(self, ctx: Ctx) -> Repo:
        """The repo of the path, if the caller can see it (404 otherwise)."""
        auth, params = ctx.record.auth, ctx.params
        entry = self.repo_or_404(params["owner"], params["repo"])
        if auth.kind == "installation":
            inst = self.installations.get(auth.installation_id or 0)
            token_id = ctx.request.headers.get("authorization", "").partition(" ")[2].strip()
            minted = self.minted.get(token_id)
            limit = minted.repos if minted is not None else None
            if (
                inst is None
                or entry.full_name not in inst.repos
                or (limit and entry.full_name not in limit)
            ):
                raise not_found()
        else:
            user = self._user_token(ctx)
            if user.repos is not None and entry.full_name not in user.repos:
                raise not_found()
        return entry

    def _user_token(self, ctx: Ctx) -> gs.UserToken:
        """The personal token of the request."""
        token = ctx.request.headers.get("authorization", "").partition(" ")[2].strip()
        return self.user_tokens[token]

    def _check_write(self, route: Route, ctx: Ctx) -> None:
        """403 for read-only callers, and for check runs written without an app."""
        auth = ctx.record.auth
        if route.scope == "app_write" and auth.kind != "installation":
            raise forbidden("You must authenticate via a GitHub App.")
        if auth.kind == "installation":
            read_only = self.installations[auth.installation_id or 0].read_only
        else:
            read_only = self._user_token(ctx).read_only
        if read_only:
            raise forbidden(READ_ONLY_MESSAGES[auth.kind])

    # ---- paging

    def _page(self, ctx: Ctx, items: list[Any]) -> tuple[list[Any], dict[str, str]]:
        """One page of `items` (per_page ≤ 100, default 30) and GitHub's Link header."""
        query = ctx.request.query_params
        per_page = min(100, max(1, _int(query.get("per_page"), 30)))
        page = max(1, _int(query.get("page"), 1))
        last = max(1, math.ceil(len(items) / per_page))

        def link(n: int, rel: str) -> str:
            url = ctx.request.url.include_query_params(per_page=per_page, page=n)
            return f'<{url}>; rel="{rel}"'

        links = [link(min(page - 1, last), "prev")] if page > 1 else []
        links += [link(page + 1, "next"), link(last, "last")] if page < last else []
        links += [link(1, "first")] if page > 1 else []
        chunk = items[(page - 1) * per_page : page * per_page]
        return chunk, ({"link": ", ".join(links)} if links else {})

    def _listing(self, ctx: Ctx, items: list[Any]) -> Reply:
        """A paginated JSON list."""
        chunk, headers = self._page(ctx, items)
        return 200, chunk, headers

    # ---- app endpoints

    def _get_app(self, ctx: Ctx) -> Reply:
        """GET /app."""
        return 200, gs.integration_json(self), {}

    def _get_repo_installation(self, ctx: Ctx) -> Reply:
        """GET /repos/{o}/{r}/installation."""
        full = f"{ctx.params['owner']}/{ctx.params['repo']}"
        inst = next((i for i in self.installations.values() if full in i.repos), None)
        if inst is None or full not in self.repos:
            raise not_found()
        return 200, gs.installation_json(self, inst), {}

    def _create_token(self, ctx: Ctx) -> Reply:
        """POST /app/installations/{id}/access_tokens: a new ghs_ token, valid one hour."""
        inst = self.installations.get(ctx.num("iid"))
        if inst is None:
            raise not_found()
        names = ctx.body.get("repositories")
        repos = {f"{inst.account}/{n}" if "/" not in n else n for n in names} if names else None
        token = "ghs_" + secrets.token_urlsafe(27).replace("-", "A").replace("_", "b")[:36]
        expires = time.time() + 3600
        self.minted[token] = MintedToken(inst.id, expires, repos)
        at = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        permissions = gs.installation_json(self, inst)["permissions"]
        data = {"token": token, "expires_at": at, "permissions": permissions,
                "repository_selection": "selected"}  # fmt: skip
        return 201, data, {}

    def _get_user(self, ctx: Ctx) -> Reply:
        """GET /user (personal tokens only)."""
        return 200, gs.private_user_json(ctx.actor, self.api), {}

    # ---- pull requests and contents

    def _pull(self, ctx: Ctx) -> Pull:
        """The PR of the path (404 if unknown)."""
        return self.pull_or_404(ctx.params["owner"], ctx.params["repo"], ctx.num("n"))

    def _get_pull(self, ctx: Ctx) -> Reply:
        """GET /repos/{o}/{r}/pulls/{n}: JSON, or the diff (406 when too large)."""
        pull = self._pull(ctx)
        accept = ctx.request.headers.get("accept", "")
        if "diff" not in accept and "patch" not in accept:
            return 200, gs.pull_json(self, pull), {}
        if "patch" in accept:
            ctx.record.unexpected = "the fake serves .diff, not .patch"
            raise ApiError(415, error_body("Unsupported media type", 415))
        if (too_large := _too_large(pull)) is not None:
            return 406, too_large, {}
        return 200, pull.diff.text, {"content-type": DIFF_TYPE}

    def _list_files(self, ctx: Ctx) -> Reply:
        """GET /repos/{o}/{r}/pulls/{n}/files (at most 3000 files)."""
        pull = self._pull(ctx)
        files = pull.diff.files[:MAX_LISTED_FILES]
        return self._listing(ctx, [gs.diff_entry_json(self, pull, f) for f in files])

    def _get_contents(self, ctx: Ctx) -> Reply:
        """GET /repos/{o}/{r}/contents/{path}?ref=: a file (JSON or raw) or a directory."""
        assert ctx.entry is not None
        ref = ctx.request.query_params.get("ref")
        _, files = self.resolve(ctx.entry, ref)
        ref = ref or ctx.entry.default_branch
        path = ctx.params.get("path", "").strip("/")
        if path in files:
            if ".raw" in ctx.request.headers.get("accept", ""):
                return 200, files[path], {"content-type": "application/vnd.github.raw"}
            return 200, gs.content_json(self, ctx.entry, ref, path, files[path]), {}
        prefix = f"{path}/" if path else ""
        names = sorted({p[len(prefix) :].split("/")[0] for p in files if p.startswith(prefix)})
        if not names:
            raise not_found()
        items = [
            gs.content_json(self, ctx.entry, ref, prefix + n, files.get(prefix + n)) for n in names
        ]
        for item in items:
            item.pop("encoding", None)
            item.pop("content", None)
        return 200, items, {}

    def _get_tree(self, ctx: Ctx) -> Reply:
        """GET /repos/{o}/{r}/git/trees/{sha}[?recursive=any]."""
        assert ctx.entry is not None
        commit, prefix = ctx.entry.trees.get(ctx.params["sha"]) or (
            self.resolve(ctx.entry, ctx.params["sha"])[0],
            "",
        )
        recursive = "recursive" in ctx.request.query_params
        return 200, gs.tree_json(self, ctx.entry, commit, prefix, recursive=recursive), {}

    # ---- comments and reviews

    def _list_issue_comments(self, ctx: Ctx) -> Reply:
        """GET /repos/{o}/{r}/issues/{n}/comments."""
        pull = self._pull(ctx)
        comments = self.comments_of(f"{pull.owner}/{pull.repo}", pull.number)
        return self._listing(ctx, [gs.issue_comment_json(self, c) for c in comments])

    def _create_issue_comment(self, ctx: Ctx) -> Reply:
        """POST /repos/{o}/{r}/issues/{n}/comments."""
        comment = self.create_issue_comment(self._pull(ctx), ctx.body.get("body"), ctx.actor)
        return 201, gs.issue_comment_json(self, comment), {}

    def _comment(self, ctx: Ctx) -> IssueComment:
        """The issue comment of the path (404 if not in this repo)."""
        return self.comment_or_404(f"{ctx.params['owner']}/{ctx.params['repo']}", ctx.num("id"))

    def _get_issue_comment(self, ctx: Ctx) -> Reply:
        """GET /repos/{o}/{r}/issues/comments/{id}."""
        return 200, gs.issue_comment_json(self, self._comment(ctx)), {}

    def _update_issue_comment(self, ctx: Ctx) -> Reply:
        """PATCH /repos/{o}/{r}/issues/comments/{id} (author only)."""
        comment = self.update_issue_comment(self._comment(ctx), ctx.body.get("body"), ctx.actor)
        return 200, gs.issue_comment_json(self, comment), {}

    def _create_review(self, ctx: Ctx) -> Reply:
        """POST /repos/{o}/{r}/pulls/{n}/reviews (validated against the diff, all or nothing)."""
        review = self.create_review(self._pull(ctx), ctx.body, ctx.actor)
        return 200, gs.review_json(self, review), {}

    def _list_reviews(self, ctx: Ctx) -> Reply:
        """GET /repos/{o}/{r}/pulls/{n}/reviews."""
        pull = self._pull(ctx)
        reviews = self.reviews_of(f"{pull.owner}/{pull.repo}", pull.number)
        return self._listing(ctx, [gs.review_json(self, r) for r in reviews])

    def _list_review_comments(self, ctx: Ctx) -> Reply:
        """GET /repos/{o}/{r}/pulls/{n}/comments."""
        pull = self._pull(ctx)
        comments = self.review_comments_of(f"{pull.owner}/{pull.repo}", pull.number)
        return self._listing(ctx, [gs.review_comment_json(self, c) for c in comments])

    # ---- check runs and permissions

    def _create_check_run(self, ctx: Ctx) -> Reply:
        """POST /repos/{o}/{r}/check-runs."""
        assert ctx.entry is not None
        run = self.create_check_run(ctx.entry, ctx.body, ctx.actor)
        return 201, gs.check_run_json(self, run), {}

    def _update_check_run(self, ctx: Ctx) -> Reply:
        """PATCH /repos/{o}/{r}/check-runs/{id}."""
        run = self.check_run_or_404(f"{ctx.params['owner']}/{ctx.params['repo']}", ctx.num("id"))
        return 200, gs.check_run_json(self, self.update_check_run(run, ctx.body)), {}

    def _list_check_runs(self, ctx: Ctx) -> Reply:
        """GET /repos/{o}/{r}/commits/{ref}/check-runs (latest per name unless filter=all)."""
        assert ctx.entry is not None
        sha, _ = self.resolve(ctx.entry, ctx.params["ref"])
        query = ctx.request.query_params
        runs = [
            r
            for r in self._check_runs.values()
            if r.repo == ctx.entry.full_name and r.head_sha == sha
        ]
        if query.get("check_name"):
            runs = [r for r in runs if r.name == query["check_name"]]
        if query.get("status"):
            runs = [r for r in runs if r.status == query["status"]]
        if query.get("filter", "latest") == "latest":
            runs = list({r.name: r for r in runs}.values())
        chunk, headers = self._page(ctx, sorted(runs, key=lambda r: -r.id))
        data = {"total_count": len(runs), "check_runs": [gs.check_run_json(self, r) for r in chunk]}
        return 200, data, headers

    def _get_permission(self, ctx: Ctx) -> Reply:
        """GET /repos/{o}/{r}/collaborators/{user}/permission."""
        assert ctx.entry is not None
        return 200, gs.permission_json(self, ctx.entry, ctx.params["user"]), {}


def _int(value: str | None, default: int) -> int:
    """A query integer, or the default when absent or malformed."""
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


# --------------------------------------------------------------------------- serving


@contextmanager
def run_fake_github(fake: FakeGitHub) -> Iterator[str]:
    """Serve `fake` with uvicorn on 127.0.0.1 (a free port) in a thread; yield its base URL."""
    config = uvicorn.Config(
        fake.app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        access_log=False,
        lifespan="off",
        loop="asyncio",
        http="h11",
        ws="none",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="fake-github", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the fake GitHub server did not start")
        time.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    fake.base_url = f"http://127.0.0.1:{port}"
    try:
        yield fake.base_url
    finally:
        fake.close_hangs()
        server.should_exit = True
        thread.join(timeout=10)
        fake.base_url = None


@pytest.fixture(scope="session")
def fake_github_server() -> Iterator[FakeGitHub]:
    """One FakeGitHub served for the whole session (use `fake_github` in tests)."""
    fake = FakeGitHub()
    with run_fake_github(fake):
        yield fake


@pytest.fixture
def fake_github(fake_github_server: FakeGitHub) -> Iterator[FakeGitHub]:
    """A reset fake for one test; the test fails at teardown on any unexpected request."""
    fake = fake_github_server
    fake.reset()
    yield fake
    fake.assert_no_unexpected()


__all__ = [
    "DEFAULT_INSTALLATION_ID",
    "FAKE_APP_ID",
    "FAKE_APP_SLUG",
    "FAKE_USER_LOGIN",
    "FAKE_USER_TOKEN",
    "Actor",
    "AuthInfo",
    "CheckRun",
    "FailRule",
    "FakeGitHub",
    "Installation",
    "IssueComment",
    "Pull",
    "RecordedRequest",
    "Repo",
    "Review",
    "ReviewComment",
    "fake_github",
    "fake_github_server",
    "run_fake_github",
]
