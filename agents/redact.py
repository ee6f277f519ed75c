"""Redact credentials from model-written text before it can be posted anywhere."""

from __future__ import annotations

import re
from collections.abc import Iterator

from detect_secrets.core.scan import scan_line
from detect_secrets.settings import transient_settings

from agents.analyzers.secrets import SETTINGS_LOCK, plugin_names

REDACTED = "[redacted]"
# detect-secrets sometimes reports only part of a token (for a GitHub token, its `ghp`
# prefix), so the whole token-shaped run around what it reports is redacted.
_TOKEN = re.compile(r"[A-Za-z0-9_\-+/=.~]+")
# Shapes detect-secrets does not know that we must never echo: Anthropic keys, PEM bodies.
_EXTRA = (
    re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)"),
)


def redact(text: str) -> str:
    """Return `text` with every detected secret value replaced by `[redacted]`."""
    if not text:
        return text
    for pattern in _EXTRA:
        text = pattern.sub(REDACTED, text)
    config = {"plugins_used": [{"name": n} for n in plugin_names()]}
    # detect-secrets' settings are process-global: scans take turns (see secrets.py).
    with SETTINGS_LOCK, transient_settings(config):
        return "\n".join(_redact_line(line) for line in text.split("\n"))


def has_secret(text: str) -> bool:
    """Tell whether `text` contains something `redact` would hide."""
    return redact(text) != text


def _redact_line(line: str) -> str:
    """Redact one line's secrets, widening each to the token it sits in."""
    spans = sorted(set(_spans(line)), reverse=True)
    for start, end in spans:
        line = line[:start] + REDACTED + line[end:]
    return line


def _spans(line: str) -> Iterator[tuple[int, int]]:
    """Yield non-overlapping (start, end) spans of secret tokens in `line`."""
    taken = -1
    for start, end in sorted(_found(line)):
        if start >= taken:
            taken = end
            yield start, end


def _found(line: str) -> Iterator[tuple[int, int]]:
    """Yield the token spans around every value detect-secrets reports on `line`."""
    values = {s.secret_value for s in scan_line(line) if s.secret_value}
    for value in values:
        for match in re.finditer(re.escape(value), line):
            yield _widen(line, match.start(), match.end())


def _widen(line: str, start: int, end: int) -> tuple[int, int]:
    """Grow a span to the whole token-shaped run that contains it."""
    for token in _TOKEN.finditer(line):
        if token.start() <= start and end <= token.end():
            return token.start(), token.end()
    return start, end
