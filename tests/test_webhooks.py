"""Signature checks and routing of recorded-style deliveries (bot/webhooks.py is pure: no I/O)."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from githubkit.utils import UNSET
from githubkit.versions.latest.models import (
    WebhookIssueCommentCreated,
    WebhookPullRequestOpened,
    WebhookPullRequestReadyForReview,
    WebhookPullRequestReopened,
    WebhookPullRequestSynchronize,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bot import webhooks
from bot.webhooks import (
    Enqueue,
    EnqueueCommand,
    Ignored,
    Logged,
    Pong,
    WebhookError,
    has_command,
    route,
    verify_signature,
)

SAMPLES = Path(__file__).parent / "data" / "webhooks"
SECRET = b"It's a Secret to Everybody"
SLUG = "pr-council"
HEAD = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"


def sample(name: str) -> bytes:
    """Return a recorded-style payload's bytes."""
    return (SAMPLES / f"{name}.json").read_bytes()


def sample_data(name: str) -> dict[str, Any]:
    """Return a recorded-style payload, parsed."""
    data: dict[str, Any] = json.loads(sample(name))
    return data


def sign(body: bytes, secret: bytes = SECRET, digest: str = "sha256") -> str:
    """Sign like GitHub: `<digest>=` and the hex HMAC of the body."""
    return f"{digest}=" + hmac.new(secret, body, digest).hexdigest()


def route_sample(name: str, **kwargs: Any) -> webhooks.Routed:
    """Route a sample as the event its file name starts with."""
    return route(
        name.split(".")[0],
        "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        sample(name),
        **{"app_slug": SLUG, **kwargs},
    )


def route_data(event: str, data: dict[str, Any], **kwargs: Any) -> webhooks.Routed:
    """Route a payload built in the test."""
    return route(event, "d-1", json.dumps(data).encode(), **{"app_slug": SLUG, **kwargs})


# --- signatures ("Validating webhook deliveries") ---


def test_a_valid_sha256_signature_passes() -> None:
    body = sample("pull_request.opened")
    verify_signature(SECRET, body, sign(body))


def test_the_example_from_githubs_documentation_passes() -> None:
    # docs.github.com "Validating webhook deliveries", "Testing the webhook payload validation".
    signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    verify_signature(SECRET, b"Hello, World!", signature)


def test_uppercase_hex_is_accepted() -> None:
    body = b"{}"
    verify_signature(SECRET, body, "sha256=" + sign(body).removeprefix("sha256=").upper())


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(sign(b"{}", secret=b"another secret"), id="wrong-secret"),
        pytest.param(sign(b'{"zen": "forged"}'), id="other-body"),
    ],
)
def test_a_wrong_signature_is_refused(header: str) -> None:
    with pytest.raises(WebhookError) as caught:
        verify_signature(SECRET, b"{}", header)
    assert caught.value.status == 401
    assert "does not match" in caught.value.message


def test_a_delivery_signed_with_sha1_only_is_refused() -> None:
    # Only the legacy X-Hub-Signature is present: the sha256 header we read is missing.
    with pytest.raises(WebhookError) as caught:
        verify_signature(SECRET, b"{}", None)
    assert (caught.value.status, caught.value.message) == (401, "missing X-Hub-Signature-256")


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(sign(b"{}", digest="sha1"), id="valid-sha1-in-the-sha256-header"),
        pytest.param("", id="empty"),
        pytest.param("sha256=", id="no-digest"),
        pytest.param("sha256=" + "a" * 63, id="63-hex"),
        pytest.param("sha256=" + "a" * 65, id="65-hex"),
        pytest.param("sha256=" + "g" * 64, id="not-hex"),
        pytest.param(sign(b"{}").removeprefix("sha256="), id="no-prefix"),
        pytest.param(" " + sign(b"{}"), id="leading-space"),
        pytest.param(sign(b"{}") + "\n", id="trailing-newline"),
        pytest.param("SHA256=" + sign(b"{}").removeprefix("sha256="), id="uppercase-prefix"),
        pytest.param("sha256=٣" + "a" * 63, id="non-ascii-digit"),
    ],
)
def test_a_malformed_signature_is_refused(header: str) -> None:
    with pytest.raises(WebhookError) as caught:
        verify_signature(SECRET, b"{}", header)
    assert caught.value.status == 401
    assert "malformed" in caught.value.message


# --- the samples are real GitHub shapes ---

STANDARD_SAMPLES = [
    "pull_request.opened",
    "pull_request.synchronize",
    "pull_request.reopened",
    "pull_request.ready_for_review",
    "pull_request.opened.draft",
    "pull_request.closed",
    "pull_request.opened.no_installation",
    "issue_comment.created.command_member",
    "issue_comment.created.command_none",
    "issue_comment.created.bot",
    "issue_comment.created.plain_issue",
    "ping",
    "installation.created",
    "installation_repositories.added",
    "push",
]


def test_every_sample_is_tested() -> None:
    assert sorted(STANDARD_SAMPLES) == sorted(p.stem for p in SAMPLES.glob("*.json"))


@pytest.mark.parametrize("name", STANDARD_SAMPLES)
def test_each_sample_passes_githubkits_own_parser(name: str) -> None:
    from githubkit.webhooks import parse

    event = parse(name.split(".")[0], sample(name))
    assert getattr(event, "action", None) == sample_data(name).get("action")


# --- routing (DESIGN.md §6) ---


@pytest.mark.parametrize(
    ("name", "trigger", "head_sha"),
    [
        ("pull_request.opened", "opened", HEAD),
        ("pull_request.synchronize", "synchronize", "5d0c2a0b3f1e4c4b9a6f7e8d9c0b1a2f3e4d5c6b"),
        ("pull_request.reopened", "reopened", HEAD),
        ("pull_request.ready_for_review", "ready_for_review", HEAD),
    ],
)
def test_pull_request_actions_queue_a_review(name: str, trigger: str, head_sha: str) -> None:
    routed = route_sample(name)
    assert isinstance(routed, Enqueue)
    assert routed.action == trigger
    assert routed.job.model_dump() == {
        "owner": "Codertocat",
        "repo": "Hello-World",
        "number": 2,
        "head_sha": head_sha,
        "installation_id": 2311213,
        "trigger": trigger,
        "delivery_id": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "requested_by": None,
    }


def test_a_draft_is_skipped_unless_drafts_are_reviewed() -> None:
    skipped = route_sample("pull_request.opened.draft")
    assert isinstance(skipped, Ignored)
    assert "draft" in skipped.reason
    queued = route_sample("pull_request.opened.draft", review_drafts=True)
    assert isinstance(queued, Enqueue)
    assert queued.job.trigger == "opened"


def test_ready_for_review_is_queued_even_if_the_payload_still_says_draft() -> None:
    data = sample_data("pull_request.ready_for_review")
    data["pull_request"]["draft"] = True
    assert isinstance(route_data("pull_request", data), Enqueue)


def test_a_closed_pull_request_is_ignored() -> None:
    closed = route_sample("pull_request.closed")
    assert isinstance(closed, Ignored)
    assert closed.reason == "pull_request action 'closed' does not ask for a review"
    data = sample_data("pull_request.synchronize")
    data["pull_request"]["state"] = "closed"
    late = route_data("pull_request", data)
    assert isinstance(late, Ignored)
    assert late.reason == "the pull request is closed"


@pytest.mark.parametrize("action", ["labeled", "edited", "converted_to_draft", "assigned", None])
def test_other_pull_request_actions_are_ignored(action: str | None) -> None:
    data = sample_data("pull_request.opened")
    data["action"] = action
    routed = route_data("pull_request", data)
    assert isinstance(routed, Ignored)
    assert "does not ask for a review" in routed.reason


def test_a_delivery_without_an_installation_is_a_clear_ignored() -> None:
    routed = route_sample("pull_request.opened.no_installation")
    assert isinstance(routed, Ignored)
    assert routed.reason.startswith("no installation in the delivery")


def test_a_comment_command_by_a_member_asks_to_resolve_the_head_commit() -> None:
    routed = route_sample("issue_comment.created.command_member")
    assert isinstance(routed, EnqueueCommand)
    assert (routed.target, routed.installation_id, routed.requested_by) == (
        "Codertocat/Hello-World#2",
        2311213,
        "octocat",
    )
    job = routed.job("f" * 40)
    assert (job.trigger, job.requested_by, job.head_sha, job.delivery_id) == (
        "command",
        "octocat",
        "f" * 40,
        "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    )


@pytest.mark.parametrize("association", ["OWNER", "MEMBER", "COLLABORATOR"])
def test_writers_may_ask_for_a_review(association: str) -> None:
    data = sample_data("issue_comment.created.command_none")
    data["comment"]["author_association"] = association
    assert isinstance(route_data("issue_comment", data), EnqueueCommand)


@pytest.mark.parametrize(
    "association", ["NONE", "CONTRIBUTOR", "FIRST_TIMER", "FIRST_TIME_CONTRIBUTOR", "MANNEQUIN"]
)
def test_a_command_without_write_access_is_ignored(association: str) -> None:
    data = sample_data("issue_comment.created.command_none")
    data["comment"]["author_association"] = association
    routed = route_data("issue_comment", data)
    assert isinstance(routed, Ignored)
    assert routed.reason == f"drive-by-dev ({association}) needs write access to ask for a review"


def test_the_recorded_drive_by_command_is_ignored() -> None:
    routed = route_sample("issue_comment.created.command_none")
    assert isinstance(routed, Ignored)
    assert "needs write access" in routed.reason


def test_comments_by_bots_are_ignored_ours_included() -> None:
    ours = route_sample("issue_comment.created.bot")
    assert isinstance(ours, Ignored)
    assert "bot" in ours.reason
    data = sample_data("issue_comment.created.command_member")
    data["comment"]["user"]["login"] = "renovate[bot]"  # a bot account that says it is a User
    assert isinstance(route_data("issue_comment", data), Ignored)


def test_a_comment_on_a_plain_issue_is_ignored() -> None:
    routed = route_sample("issue_comment.created.plain_issue")
    assert isinstance(routed, Ignored)
    assert routed.reason == "comment on an issue, not a pull request"


@pytest.mark.parametrize("action", ["edited", "deleted"])
def test_edited_or_deleted_comments_are_not_commands(action: str) -> None:
    data = sample_data("issue_comment.created.command_member")
    data["action"] = action
    routed = route_data("issue_comment", data)
    assert isinstance(routed, Ignored)
    assert "is not a new command" in routed.reason


def test_a_comment_without_a_command_is_ignored() -> None:
    data = sample_data("issue_comment.created.command_member")
    data["comment"]["body"] = "LGTM, thanks!"
    routed = route_data("issue_comment", data)
    assert isinstance(routed, Ignored)
    assert routed.reason == "no review command in the comment"


def test_ping_answers_pong() -> None:
    assert route_sample("ping") == Pong(zen="Design for failure.")


@pytest.mark.parametrize("name", ["installation.created", "installation_repositories.added"])
def test_installation_events_are_logged(name: str) -> None:
    routed = route_sample(name)
    assert isinstance(routed, Logged)
    assert routed.reason.endswith("by Codertocat")


def test_other_events_are_ignored() -> None:
    routed = route_sample("push")
    assert routed == Ignored(reason="event 'push' is not handled")


# --- tolerance of real-world variants ---


def test_a_payload_githubkit_refuses_is_still_read() -> None:
    data = sample_data("pull_request.opened")
    del data["pull_request"]["user"]  # required by githubkit's model, unused by us
    data["repository"]["owner"]["type"] = "Enterprise Bot"
    with pytest.raises(ValidationError):
        WebhookPullRequestOpened.model_validate(data)
    routed = route_data("pull_request", data)
    assert isinstance(routed, Enqueue)
    assert routed.job.head_sha == HEAD


def test_a_minimal_comment_command_is_read() -> None:
    data = {
        "action": "created",
        "issue": {"number": 7, "pull_request": {"url": "https://api.github.com/x"}},
        "comment": {
            "body": "/council review",
            "user": {"login": "octocat", "type": "User"},
            "author_association": "MEMBER",
        },
        "repository": {"name": "Hello-World", "owner": {"login": "Codertocat"}},
        "installation": {"id": 5},
    }
    routed = route_data("issue_comment", data)
    assert isinstance(routed, EnqueueCommand)
    assert (routed.target, routed.installation_id) == ("Codertocat/Hello-World#7", 5)


# pydantic-core's JSON parser refuses these; `json` reads them, and so does the receiver.
@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda text: b"\xef\xbb\xbf" + text.encode(), id="utf-8 BOM"),
        pytest.param(lambda text: text.encode("utf-16"), id="utf-16"),
    ],
)
def test_json_that_only_the_standard_library_reads_is_still_routed(
    encode: Callable[[str], bytes],
) -> None:
    body = encode(sample("pull_request.opened").decode())
    routed = route("pull_request", "d-1", body, app_slug=SLUG)
    assert isinstance(routed, Enqueue)
    assert routed.job.head_sha == HEAD


def test_a_lone_surrogate_in_a_comment_does_not_refuse_the_delivery() -> None:
    text = sample("issue_comment.created.command_member").decode()
    body = text.replace('"Thanks!', '"\\ud800 Thanks!', 1).encode()
    assert b"\\ud800 Thanks!" in body
    routed = route("issue_comment", "d-1", body, app_slug=SLUG)
    assert isinstance(routed, EnqueueCommand)
    assert routed.requested_by == "octocat"


# --- our reading agrees with githubkit's webhook models ---
#
# The receiver reads only the fields routing uses (one pass over the bytes, for speed under a
# burst); githubkit's typed models are the reference for what those fields hold.

_GITHUBKIT_PULL_REQUEST: dict[str, Any] = {
    "opened": WebhookPullRequestOpened,
    "synchronize": WebhookPullRequestSynchronize,
    "reopened": WebhookPullRequestReopened,
    "ready_for_review": WebhookPullRequestReadyForReview,
}


def _githubkit_reading(event: str, data: dict[str, Any]) -> dict[str, Any]:
    """Return the routing fields as githubkit's model of the event reads them."""
    if event == "pull_request":
        return _fields(event, _GITHUBKIT_PULL_REQUEST[data["action"]].model_validate(data))
    return _fields(event, WebhookIssueCommentCreated.model_validate(data))


def _our_reading(event: str, body: bytes) -> dict[str, Any]:
    """Return the routing fields as the receiver reads them."""
    if event == "pull_request":
        return _fields(event, webhooks._PullRequestDelivery.model_validate_json(body))
    return _fields(event, webhooks._CommentDelivery.model_validate_json(body))


def _fields(event: str, parsed: Any) -> dict[str, Any]:
    """Read the routing fields from either model: ours mirror githubkit's attribute names."""
    installation = parsed.installation.id if parsed.installation else None  # UNSET is falsy
    common = {
        "owner": parsed.repository.owner.login,
        "repo": parsed.repository.name,
        "installation_id": installation,
    }
    if event == "pull_request":
        pr = parsed.pull_request
        head = {"number": pr.number, "head_sha": pr.head.sha, "state": pr.state}
        return {**common, **head, "draft": pr.draft is True}
    comment, user = parsed.comment, parsed.comment.user
    return {
        **common,
        "number": parsed.issue.number,
        "on_pull_request": parsed.issue.pull_request not in (None, UNSET),
        "body": comment.body,
        "login": user.login if user else None,
        "user_type": user.type if user and isinstance(user.type, str) else "User",
        "association": comment.author_association,
    }


_READ_SAMPLES = [
    "pull_request.opened",
    "pull_request.opened.draft",
    "pull_request.opened.no_installation",
    "pull_request.synchronize",
    "pull_request.reopened",
    "pull_request.ready_for_review",
    "issue_comment.created.bot",
    "issue_comment.created.command_member",
    "issue_comment.created.command_none",
    "issue_comment.created.plain_issue",
]


@pytest.mark.parametrize("name", _READ_SAMPLES)
def test_we_read_what_githubkits_models_read(name: str) -> None:
    event = name.split(".")[0]
    assert _our_reading(event, sample(name)) == _githubkit_reading(event, sample_data(name))


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(_READ_SAMPLES),
    draft=st.sampled_from([True, False, None]),
    state=st.sampled_from(["open", "closed"]),
    association=st.sampled_from(["OWNER", "MEMBER", "COLLABORATOR", "CONTRIBUTOR", "NONE"]),
    text=st.text(max_size=40),
    user_type=st.sampled_from(["User", "Bot", "Organization", None]),
)
def test_we_read_what_githubkits_models_read_in_variants(
    name: str,
    draft: bool | None,
    state: str,
    association: str,
    text: str,
    user_type: str | None,
) -> None:
    event, data = name.split(".")[0], sample_data(name)
    if event == "pull_request":
        data["pull_request"].update(draft=draft, state=state)
    else:
        data["comment"].update(body=text, author_association=association)
        data["comment"]["user"]["type"] = user_type
    body = json.dumps(data).encode()
    try:
        expected = _githubkit_reading(event, data)
    except ValidationError:  # outside githubkit's schema (a null draft): we still read it
        assert _our_reading(event, body)["number"] == data.get("number", 2)
        return
    assert _our_reading(event, body) == expected


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        (
            ("pull_request", "head", "sha"),
            "pull_request delivery lacks a valid pull_request.head.sha",
        ),
        (("pull_request",), "pull_request delivery lacks a valid pull_request"),
        (("repository",), "pull_request delivery lacks a valid repository"),
    ],
)
def test_a_delivery_missing_what_we_need_is_ignored_with_the_field_named(
    path: tuple[str, ...], reason: str
) -> None:
    data = sample_data("pull_request.opened")
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    assert route_data("pull_request", data) == Ignored(reason=reason, action="opened")


def test_a_sha256_repositorys_head_commit_is_queued_and_a_bad_sha_ignored() -> None:
    data = sample_data("pull_request.opened")
    data["pull_request"]["head"]["sha"] = "a" * 64
    routed = route_data("pull_request", data)
    assert isinstance(routed, Enqueue) and routed.job.head_sha == "a" * 64
    data["pull_request"]["head"]["sha"] = "not-a-sha"
    routed = route_data("pull_request", data)
    assert isinstance(routed, Ignored)
    assert routed.reason == "cannot queue a review: invalid head_sha"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"payload=%7B%22zen%22%3A%22x%22%7D",  # a repository hook set to form data
        b"\xff\xfe\x00",
        b"[1, 2]",
        b'"a string"',
        b"null",
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_a_body_that_is_not_a_json_object_is_a_400(body: bytes) -> None:
    with pytest.raises(WebhookError) as caught:
        route("pull_request", "d-1", body, app_slug=SLUG)
    assert caught.value.status == 400


# --- the command grammar ---


@pytest.mark.parametrize(
    "body",
    [
        "/council review",
        "/COUNCIL Review",
        "   /council review",
        "/council\treview please",
        "/council review.",
        "Thanks!\r\n\r\n/council review",
        "@pr-council review",
        "@PR-Council REVIEW",
        "@pr-council[bot] review",
        "```\ncode\n```\n/council review",
        "~~~~\n```\n~~~~\n/council review",
    ],
)
def test_commands_are_recognised(body: str) -> None:
    assert has_command(body, SLUG)


@pytest.mark.parametrize(
    "body",
    [
        "",
        "please /council review",
        "> /council review",
        "  > /council review",
        ">> @pr-council review",
        "```\n/council review\n```",
        "~~~\n/council review\n~~~",
        "````\n```\n/council review\n````",
        "```\nnever closed\n/council review",
        "    /council review",
        "/council reviewer",
        "/council review-all",
        "/councilreview",
        "@pr-council-dev review",
        "@someone-else review",
        "`/council review`",
    ],
)
def test_quoted_fenced_or_inline_mentions_are_not_commands(body: str) -> None:
    assert not has_command(body, SLUG)


def test_without_an_app_slug_only_the_slash_command_works() -> None:
    assert has_command("/council review", None)
    assert not has_command("@pr-council review", None)


def test_event_labels_are_bounded() -> None:
    assert webhooks.event_label("pull_request") == "pull_request"
    assert webhooks.event_label("x" * 99) == "other"


# --- route never raises anything but WebhookError ---


def _mutate(data: dict[str, Any], draw: st.DrawFn) -> None:
    """Delete or replace one value somewhere in a sample (in place)."""
    node = data
    while draw(st.booleans()):
        child = node[draw(st.sampled_from(sorted(node)))]
        if not isinstance(child, dict) or not child:
            break
        node = child
    key = draw(st.sampled_from(sorted(node)))
    if draw(st.booleans()):
        del node[key]
    else:
        node[key] = draw(JSON_VALUES)


JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def mutated_samples(draw: st.DrawFn) -> tuple[str, bytes]:
    """Return an event name and a sample payload with a few values deleted or replaced."""
    name = draw(st.sampled_from(STANDARD_SAMPLES))
    data = sample_data(name)
    for _ in range(draw(st.integers(1, 3))):
        _mutate(data, draw)
    return name.split(".")[0], json.dumps(data).encode()


EVENTS = st.sampled_from(["pull_request", "issue_comment", "ping", "installation", "push"])


@settings(max_examples=300, deadline=None)
@given(
    delivery=st.one_of(
        mutated_samples(),
        st.tuples(EVENTS, st.binary(max_size=200)),
        st.tuples(
            EVENTS,
            st.dictionaries(st.text(max_size=12), JSON_VALUES).map(
                lambda d: json.dumps(d).encode()
            ),
        ),
    ),
    slug=st.none() | st.text(max_size=12),
    drafts=st.booleans(),
)
def test_route_raises_nothing_but_webhook_error(
    delivery: tuple[str, bytes], slug: str | None, drafts: bool
) -> None:
    event, body = delivery
    try:
        routed = route(event, "d-1", body, app_slug=slug, review_drafts=drafts)
    except WebhookError as exc:
        assert exc.status == 400
        return
    assert isinstance(routed, (Enqueue, EnqueueCommand, Pong, Ignored, Logged))
