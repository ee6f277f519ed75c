"""Make untrusted text safe to embed in GitHub markdown: inert prose, code and fences."""

from __future__ import annotations

import re

# Default caps for one line of untrusted text, so no single text can eat a whole comment.
_PATH_CHARS = 200
_LINE_CHARS = 300

_MARKER_LIKE = re.compile(r"<!--(?=\s*pr-council)", re.IGNORECASE)
_MENTION = re.compile(r"@(?=[A-Za-z0-9])")
_REFERENCE = re.compile(r"#(?=\d)")
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
_CONTROL = re.compile("[\x00-\x1f\x7f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_BACKTICKS = re.compile(r"`+")
_ZWJ = "\u200d"
_ZWSP = "\u200b"


def _unmark(text: str) -> str:
    """Break anything that could pass for one of our hidden markers."""
    return _MARKER_LIKE.sub(f"<!-{_ZWSP}-", text)


def _prose(text: str) -> str:
    """Make untrusted prose inert: no HTML, no comments, no @mentions, no #references."""
    text = text.replace("\\", "\\\\").replace("`", "\\`")
    text = text.replace("&", "&amp;").replace("<", "&lt;")
    # GitHub notifies on @user / @org/team and cross-links #123; a joiner defuses both.
    return _REFERENCE.sub(f"#{_ZWJ}", _MENTION.sub(f"@{_ZWJ}", text))


def _inline(text: str) -> str:
    """Sanitise one line of markdown, keeping balanced code spans as code."""
    out: list[str] = []
    pos = 0
    for match in _CODE_SPAN.finditer(text):
        out += [_prose(text[pos : match.start()]), _unmark(match.group(0))]
        pos = match.end()
    out.append(_prose(text[pos:]))
    return "".join(out)


def _one_line(text: str, limit: int = _LINE_CHARS) -> str:
    """Flatten text to one line of at most `limit` characters."""
    flat = " ".join(_CONTROL.sub(" ", text).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def plain(text: str, limit: int = _LINE_CHARS) -> str:
    """Return untrusted text as one safe markdown line."""
    return _inline(_one_line(text, limit))


def code_span(text: str, limit: int = _PATH_CHARS) -> str:
    """Wrap text in a code span whose fence outlasts any backticks inside it."""
    flat = _unmark(_one_line(text, limit))
    if not flat:
        return ""
    ticks = "`" * (max((len(r) for r in _BACKTICKS.findall(flat)), default=0) + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{ticks}{pad}{flat}{pad}{ticks}"


def sanitise_block(text: str, limit: int) -> str:
    """Sanitise multi-line markdown; fenced code stays verbatim and is always closed."""
    lines: list[str] = []
    fence = ""
    for line in text[:limit].splitlines():
        match = _FENCE.match(line)
        if fence:
            lines.append(_unmark(line))
            fence = "" if match and _closes(fence, match) else fence
        elif match and not (match.group(1)[0] == "`" and "`" in match.group(2)):
            fence = match.group(1)
            lines.append(_unmark(line))
        else:
            lines.append(_inline(_BIDI.sub("", line)))
    if fence:
        lines.append(fence)
    if len(text) > limit:
        lines.append("\n*… (truncated)*")
    return "\n".join(lines).strip()


def _closes(fence: str, match: re.Match[str]) -> bool:
    """Tell whether a fence-like line closes the open `fence` (CommonMark §4.5)."""
    run, rest = match.group(1), match.group(2)
    return run[0] == fence[0] and len(run) >= len(fence) and not rest.strip()


def table_cell(text: str) -> str:
    """Return text safe inside a markdown table cell."""
    return plain(text, 200).replace("|", "\\|")


def suggestion_block(text: str) -> str:
    """Return a ```suggestion block whose fence no backtick run inside can close."""
    longest = max((len(r) for r in _BACKTICKS.findall(text)), default=0)
    fence = "`" * max(3, longest + 1)
    if not text:
        return f"{fence}suggestion\n{fence}"
    return f"{fence}suggestion\n{_unmark(text.removesuffix(chr(10)))}\n{fence}"
