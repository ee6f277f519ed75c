"""githubkit glue: clients, our retry policy, pacing of writes, and what a failure means."""

from __future__ import annotations

import functools
import importlib
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final, TypeVar, cast

import anyio
import certifi
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from githubkit import AppAuthStrategy, GitHub, TokenAuthStrategy
from githubkit.cache import BaseCacheStrategy, MemCacheStrategy
from githubkit.exception import (
    GitHubException,
    RateLimitExceeded,
    RequestError,
    RequestFailed,
    RequestTimeout,
)
from githubkit.retry import RetryOption

from bot.jobs import PermanentFailure, RetryLater

# githubkit would sleep through any rate-limit wait (up to an hour): we wait in-process only
# this long and hand longer waits back to the queue (DESIGN.md §5).
MAX_INLINE_WAIT_S = 10.0
# GitHub: "wait at least one second between each request" that creates content
# ("Best practices for using the REST API", avoid secondary rate limits).
WRITE_INTERVAL_S = 1.0
_TIMEOUT_S = 30.0
# githubkit builds a new httpx client per request, and httpx loads the CA bundle into a new
# SSL context each time: ~36 ms of CPU on the event loop per request (benchmarks/README.md,
# webhook.py). One verified context for the process, with httpx's own CA bundle, does it once.
_SSL = ssl.create_default_context(cafile=certifi.where())
_PR_URL = re.compile(r"^https?://[^/]+/([^/]+)/([^/]+)/pull/(\d+)/?$")

T = TypeVar("T")


@dataclass(frozen=True)
class PullRef:
    """One pull request, by owner, repository and number."""

    owner: str
    repo: str
    number: int

    @classmethod
    def from_url(cls, url: str) -> PullRef | None:
        """Parse https://HOST/OWNER/REPO/pull/N (the host is never contacted)."""
        match = _PR_URL.match(url.strip())
        return cls(match[1], match[2], int(match[3])) if match else None

    def __str__(self) -> str:
        return f"{self.owner}/{self.repo}#{self.number}"


def retry_policy(exc: GitHubException, count: int) -> RetryOption:
    """Retry what is safe to retry, briefly; everything else is the caller's decision.

    githubkit's default re-sends a POST after a 5xx, which can post a comment twice, and
    sleeps until a rate-limit reset however far away it is.
    """
    if isinstance(exc, RateLimitExceeded):
        wait = exc.retry_after.total_seconds()
        return RetryOption(count < 1 and wait <= MAX_INLINE_WAIT_S, exc.retry_after)
    if isinstance(exc, RequestFailed | RequestTimeout) and exc.request.method == "GET":
        retryable = isinstance(exc, RequestTimeout) or exc.response.status_code >= 500
        return RetryOption(retryable and count < 2, timedelta(seconds=0.5 * 2**count))
    return RetryOption(False)


def token_client(
    token: str, base_url: str, *, cache: BaseCacheStrategy | None = None
) -> GitHub[TokenAuthStrategy]:
    """Build a client for a personal or workflow token."""
    return GitHub(
        TokenAuthStrategy(token),
        base_url=base_url,
        auto_retry=retry_policy,
        # GitHub marks GETs cacheable for 60 s: a cached comment list would hide the
        # comment we just posted from the duplicate check.
        http_cache=False,
        cache_strategy=cache or MemCacheStrategy(),
        timeout=_TIMEOUT_S,
        ssl_verify=_SSL,
    )


def app_client(
    app_id: str, private_key: str, base_url: str, *, cache: BaseCacheStrategy | None = None
) -> GitHub[AppAuthStrategy]:
    """Build the App's client (JWT); raise ValueError if `private_key` is not a PEM private key."""
    return GitHub(
        AppAuthStrategy(app_id, _signing_key(private_key)),
        base_url=base_url,
        auto_retry=retry_policy,
        http_cache=False,
        cache_strategy=cache or MemCacheStrategy(),
        timeout=_TIMEOUT_S,
        ssl_verify=_SSL,
    )


# githubkit hands `private_key` to `jwt.encode`, which parses a PEM text again for every JWT:
# cryptography's RSA key check costs ~60 ms of CPU on the event loop, stalling every delivery
# in flight (benchmarks/README.md, webhook.py); a loaded key signs in ~1 ms. PyJWT accepts the
# key object where githubkit's annotation says `str`.
@functools.lru_cache(maxsize=4)
def _signing_key(pem: str) -> str:
    """Return the App's private key loaded once; raise ValueError if it is not a PEM private key."""
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # No chained exception: nothing of the key text may reach a log or an answer.
        raise ValueError("not an unencrypted PEM private key") from None
    return cast(str, key)


# githubkit imports a REST namespace's module, and the pydantic models of a response, on first
# use: ~30-90 ms of CPU on the event loop during the first review after start-up, which stalls
# every delivery in flight (benchmarks/README.md, webhook.py). warm_up() imports them first.
REVIEW_MODELS: Final = (
    "AppInstallationsInstallationIdAccessTokensPostBody",
    "BasicError",
    "CheckRun",
    "DiffEntry",
    "EventsGetResponse503",
    "GitTree",
    "InstallationToken",
    "Integration",
    "IssueComment",
    "PrivateUser",
    "PublicUser",
    "PullRequest",
    "PullRequestReview",
    "PullRequestReviewComment",
    "ReposOwnerRepoCommitsRefCheckRunsGetResponse200",
    "ReposOwnerRepoIssuesCommentsCommentIdPatchBody",
    "ReposOwnerRepoIssuesIssueNumberCommentsPostBody",
    "ValidationError",
    "ValidationErrorSimple",
)
REVIEW_NAMESPACES: Final = ("apps", "checks", "git", "issues", "pulls", "repos", "users")


def warm_up(gh: GitHub[Any]) -> None:
    """Import githubkit's modules for what a review calls (blocking: run it before serving)."""
    models = importlib.import_module("githubkit.versions.latest.models")
    for name in REVIEW_MODELS:
        getattr(models, name, None)  # a model a later githubkit renamed is only not warmed
    for namespace in REVIEW_NAMESPACES:
        getattr(gh.rest, namespace, None)


def installation(app: GitHub[AppAuthStrategy], installation_id: int) -> GitHub[Any]:
    """Return a client acting as one installation (githubkit mints and caches its token)."""
    return app.with_auth(app.auth.as_installation(installation_id))


async def app_bot_login(app: GitHub[AppAuthStrategy]) -> str:
    """Return the App's bot login, the only author whose comments are ours."""
    app_info = (await app.rest.apps.async_get_authenticated()).parsed_data
    if app_info is None or not app_info.slug:
        raise PermanentFailure("GitHub did not say which App this key belongs to")
    return f"{app_info.slug}[bot]"


async def token_login(gh: GitHub[TokenAuthStrategy]) -> str:
    """Return the login a token acts as."""
    return (await gh.rest.users.async_get_authenticated()).parsed_data.login


async def token_identity(gh: GitHub[TokenAuthStrategy]) -> str:
    """Return who a token acts as; a workflow token may not ask, and is the Actions bot."""
    try:
        return await token_login(gh)
    except RequestFailed as exc:
        if exc.response.status_code != 403:
            raise
        return "github-actions[bot]"


def classify(exc: GitHubException) -> RetryLater | PermanentFailure:
    """Turn a GitHub failure into a queue decision: retry later or give up."""
    if isinstance(exc, RateLimitExceeded):
        wait = max(1.0, exc.retry_after.total_seconds())
        return RetryLater(f"GitHub rate limit: retry in {wait:.0f} s", wait)
    if isinstance(exc, RequestFailed):
        status = exc.response.status_code
        if status >= 500 or status == 429:
            return RetryLater(f"GitHub answered {status}", 30.0)
        return PermanentFailure(f"GitHub answered {status}: {_message(exc)}")
    if isinstance(exc, RequestError):
        return RetryLater(f"GitHub unreachable: {type(exc.exc).__name__}", 30.0)
    return PermanentFailure(f"GitHub: {type(exc).__name__}")


def describe(exc: GitHubException) -> str:
    """Say in one line what went wrong with a GitHub request (no token, no body)."""
    if isinstance(exc, RequestFailed):
        request, status = exc.request, exc.response.status_code
        hint = " (check GITHUB_TOKEN)" if status == 401 else ""
        return f"GitHub answered {status} to {request.method} {request.url.path}: {_message(exc)}{hint}"
    if isinstance(exc, RequestTimeout):
        return f"GitHub did not answer in time ({exc.request.method} {exc.request.url.path})"
    if isinstance(exc, RequestError):
        return f"cannot reach GitHub: {type(exc.exc).__name__}: {exc.exc}"
    return f"GitHub: {type(exc).__name__}"


def status_of(exc: BaseException) -> int | None:
    """Return the HTTP status of a failed request, if it was one."""
    return exc.response.status_code if isinstance(exc, RequestFailed) else None


def _message(exc: RequestFailed) -> str:
    """Return GitHub's error message, short."""
    try:
        body = exc.response.raw_response.json()
    except ValueError:
        return exc.response.raw_response.reason_phrase
    message = body.get("message", "") if isinstance(body, dict) else ""
    return " ".join(str(message).split())[:200]


@dataclass
class Pacer:
    """Space content-creating requests per installation (secondary rate limits)."""

    interval_s: float = WRITE_INTERVAL_S
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep
    _next: dict[str, float] = field(default_factory=dict)
    _locks: dict[str, anyio.Lock] = field(default_factory=dict)

    async def write(self, key: str, request: Callable[[], Awaitable[T]]) -> T:
        """Run one write for `key` no sooner than `interval_s` after its previous one."""
        lock = self._locks.setdefault(key, anyio.Lock())
        async with lock:
            wait = self._next.get(key, 0.0) - self.clock()
            if wait > 0:
                await self.sleep(wait)
            try:
                return await request()
            finally:
                self._next[key] = self.clock() + self.interval_s
