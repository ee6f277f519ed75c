"""Hard-coded credentials in any changed text file, found with detect-secrets."""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.core.scan import scan_file
from detect_secrets.plugins.keyword import DENYLIST
from detect_secrets.settings import transient_settings

from agents.analyzers.base import make_finding, scratch_tree
from agents.model import AnalyzerResult, Finding, ReviewContext, Skipped

MAX_BYTES = 2_000_000
# Entropy detectors fire on every hash, digest and fixture blob; at `critical` they
# would cry wolf on most pull requests. Keyword and known-format detectors catch the
# credible cases (a credential-named assignment, a provider's token shape). A public
# IP address is not a secret.
NOISY_PLUGINS: frozenset[str] = frozenset(
    {"Base64HighEntropyString", "HexHighEntropyString", "IPPublicDetector"}
)
KEYWORD = "Secret Keyword"
# A provider's token format is near-certain; a credential-named variable is a guess.
KNOWN_FORMAT_CONFIDENCE = 0.9
KEYWORD_CONFIDENCE = 0.6
_TITLES: Mapping[str, str] = {KEYWORD: "Hard-coded secret", "NPM tokens": "Hard-coded NPM token"}

# detect-secrets keeps its settings in a process-global singleton, and
# transient_settings saves and restores it: two overlapping scans would restore each
# other's state, so scans take turns.
SETTINGS_LOCK = threading.Lock()


@dataclass(frozen=True)
class DetectedSecret:
    """Where detect-secrets saw a secret, and what kind; never the value itself."""

    path: str
    line: int
    kind: str


def plugin_names() -> list[str]:
    """Return the detect-secrets plugins we run: its defaults minus the noisy ones."""
    classes: list[type] = list(get_mapping_from_secret_type_to_class().values())
    return sorted(c.__name__ for c in classes if c.__name__ not in NOISY_PLUGINS)


@functools.cache
def _patterns() -> dict[str, tuple[re.Pattern[str], ...]] | None:
    """Map each detector we run to patterns one of which any secret it finds must match.

    None when a detector exposes no such patterns (then every file gets every detector).
    """
    # The keyword detector's expressions all contain one of these words (any case);
    # the others are regex detectors whose own patterns can run on the whole text,
    # MULTILINE keeping ^ and $ per line.
    keyword = re.compile("|".join(DENYLIST), re.IGNORECASE)
    found: dict[str, tuple[re.Pattern[str], ...]] = {"KeywordDetector": (keyword,)}
    detectors: list[type] = list(get_mapping_from_secret_type_to_class().values())
    for cls in detectors:
        name = cls.__name__
        if name in NOISY_PLUGINS or name in found:
            continue
        denylist = getattr(cls, "denylist", None)
        if not isinstance(denylist, list | tuple):
            return None
        found[name] = tuple(re.compile(r.pattern, r.flags | re.MULTILINE) for r in denylist)
    return found


def detectors_for(text: str) -> frozenset[str]:
    """Return the detectors that could fire on `text` (a cheap necessary condition)."""
    # detect-secrets calls every detector on every line through an injection layer
    # (~40 ms for 150 lines with all of them); most files match no detector's pattern
    # anywhere, and the rest match one or two.
    patterns = _patterns()
    if patterns is None:
        return frozenset(plugin_names())
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    joined = "\n".join(line.rstrip() for line in lines)
    return frozenset(name for name, pats in patterns.items() if any(p.search(joined) for p in pats))


def slug(kind: str) -> str:
    """Turn a secret type ('AWS Access Key') into a rule id ('aws-access-key')."""
    return re.sub(r"[^a-z0-9]+", "-", kind.lower()).strip("-")


def scan_texts(files: Mapping[str, str]) -> tuple[list[DetectedSecret], list[Skipped]]:
    """Scan repo-relative texts; return the secrets and the files that could not be scanned."""
    groups: dict[frozenset[str], list[str]] = {}
    for path, text in files.items():
        detectors = detectors_for(text)
        if detectors:
            groups.setdefault(detectors, []).append(path)
    found: list[DetectedSecret] = []
    skipped: list[Skipped] = []
    with scratch_tree({p: files[p] for g in groups.values() for p in g}) as root:
        for detectors, paths in groups.items():
            secrets, failed = _scan_group(root, sorted(paths), detectors)
            found += secrets
            skipped += failed
    return found, skipped


def _scan_group(
    root: Path, paths: list[str], detectors: frozenset[str]
) -> tuple[list[DetectedSecret], list[Skipped]]:
    """Scan files of the scratch tree with the given detectors only."""
    found: list[DetectedSecret] = []
    skipped: list[Skipped] = []
    config = {"plugins_used": [{"name": n} for n in sorted(detectors)]}
    with SETTINGS_LOCK, transient_settings(config):
        for path in paths:
            try:
                found += _scan_one(root, path)
            except Exception as exc:  # a detector tripping on odd text must not end the scan
                reason = f"detect-secrets failed on it: {type(exc).__name__}"
                skipped.append(Skipped(path=path, reason=reason, by="detect-secrets"))
    return found, skipped


def _scan_one(root: Path, path: str) -> Iterator[DetectedSecret]:
    """Yield the secrets detect-secrets finds in one file of the scratch tree."""
    target = root / path
    if not target.is_file():
        return
    for secret in list(scan_file(str(target))):
        yield DetectedSecret(path=path, line=int(secret.line_number), kind=str(secret.type))


@dataclass(frozen=True)
class SecretsAnalyzer:
    """detect-secrets on every changed text file, in any language."""

    name: str = "detect-secrets"

    def run(self, ctx: ReviewContext) -> AnalyzerResult:
        """Report each line holding a hard-coded secret once, without the secret."""
        large = {p for p, t in ctx.files.items() if len(t.encode("utf-8", "replace")) > MAX_BYTES}
        too_big = [Skipped(path=p, reason="larger than 2 MB", by=self.name) for p in sorted(large)]
        found, failed = scan_texts({p: t for p, t in ctx.files.items() if p not in large})
        findings = tuple(self._finding(ctx, s) for s in _one_per_line(found))
        return AnalyzerResult(tool=self.name, findings=findings, skipped=(*too_big, *failed))

    def _finding(self, ctx: ReviewContext, secret: DetectedSecret) -> Finding:
        """Build a critical finding that names the kind of secret, never its value."""
        rule = slug(secret.kind)
        keyword = secret.kind == KEYWORD
        return make_finding(
            ctx,
            agent="security",
            severity="critical",
            confidence=KEYWORD_CONFIDENCE if keyword else KNOWN_FORMAT_CONFIDENCE,
            path=secret.path,
            line=secret.line,
            title=_TITLES.get(secret.kind, f"Hard-coded {secret.kind}"),
            rule=rule,
            source=f"detect-secrets:{rule}",
            body=_body(secret.kind),
            cwe=798,
        )


def _one_per_line(found: list[DetectedSecret]) -> list[DetectedSecret]:
    """Keep one secret per line, preferring a known format over a keyword match."""
    best: dict[tuple[str, int], DetectedSecret] = {}
    for secret in found:
        key = (secret.path, secret.line)
        if key not in best or best[key].kind == KEYWORD:
            best[key] = secret
    return [best[k] for k in sorted(best)]


def _body(kind: str) -> str:
    """Say what to do about it."""
    what = (
        "a value assigned to a credential-like name"
        if kind == KEYWORD
        else f"a credential matching its '{kind}' pattern"
    )
    return (
        f"detect-secrets found {what} on this line. If it is a real credential, revoke "
        "and rotate it now (removing it later leaves it in the history) and load it from "
        "the environment or a secret store instead. If it is not, mark the line with "
        "`pragma: allowlist secret`."
    )
