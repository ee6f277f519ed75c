"""The hidden review state carried in our summary comment, so a re-review can compare."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from agents.model import Finding, PreviousFinding

# Base64 cannot contain "-->", so no title (author-controlled text) can end the comment early.
_STATE = re.compile(r"<!-- pr-council:state=([A-Za-z0-9+/=]{0,400000}) -->")
_MAX_ITEMS = 300
_TITLE_CHARS = 120


class _Item(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    fp: str
    title: str = ""
    path: str = ""
    severity: str = "minor"


_ITEMS = TypeAdapter(list[_Item])


def state_marker(findings: Sequence[Finding], max_chars: int = 20_000) -> str:
    """Return the hidden marker listing the open findings, the gravest kept when it must shrink."""
    items = [
        _Item(fp=f.fingerprint, title=f.title[:_TITLE_CHARS], path=f.path, severity=f.severity)
        for f in findings[:_MAX_ITEMS]
    ]
    while True:
        encoded = base64.b64encode(_ITEMS.dump_json(items)).decode("ascii")
        marker = f"<!-- pr-council:state={encoded} -->"
        if len(marker) <= max_chars or not items:
            return marker
        items = items[: len(items) * 3 // 4]


def parse_state(body: str) -> tuple[PreviousFinding, ...]:
    """Return the findings an earlier summary recorded; nothing when it has no valid state."""
    match = _STATE.search(body)
    if match is None:
        return ()
    try:
        items = _ITEMS.validate_json(base64.b64decode(match[1], validate=True))
    except (ValidationError, binascii.Error, ValueError):
        return ()
    converted = (_previous(i) for i in items)
    return tuple(p for p in converted if p is not None)


def _previous(item: _Item) -> PreviousFinding | None:
    """Convert one recorded item, dropping what no longer validates."""
    try:
        return PreviousFinding(
            fingerprint=item.fp, title=item.title, path=item.path, severity=item.severity
        )
    except ValidationError:
        return None
