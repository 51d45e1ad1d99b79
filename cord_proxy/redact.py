"""Text that leaves the process (error bodies, log lines, dataset records) is cleaned here.

`excerpt` turns any text into a short excerpt with nothing that identifies an endpoint or
looks like a credential: URLs, addresses and configured hosts, key-like tokens, and the
values of the secrets the process has resolved (`remember_secret`, which
``secret_refs.resolve_secret`` calls for every ``env:`` reference).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

DEFAULT_LIMIT = 300
MIN_SECRET_LENGTH = 4
REDACTED = "<redacted>"
MAX_CUTS = 3
# ids the proxy makes (chat completions, batches, files, responses and their items,
# requests): never secrets
OWN_ID_PREFIXES = ("chatcmpl-", "batch_", "file-", "resp_", "msg_", "rs_", "req_")

_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>()\[\]{}]+")
_USERINFO = re.compile(r"[^\s/@:\"'<>]+:[^\s/@\"'<>]*@")
_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
_IPV6 = re.compile(r"\[?\b(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}\b\]?")
_HOST_PORT = re.compile(r"\b(?=[A-Za-z0-9.-]*[A-Za-z.])[A-Za-z0-9][A-Za-z0-9.-]*:\d{2,5}\b")
_TOKEN = r"[A-Za-z0-9._~+/=\-]{6,}"
_KEY_PATTERNS = (
    re.compile(r"(?i)\b(?:bearer|basic)\s+" + _TOKEN),
    re.compile(r"\b(?:sk|pk|rk|ak)-[A-Za-z0-9_\-]{6,}"),
    # The same prefix glued to a word ("apikeysk-..."): only a long tail of letters and digits.
    re.compile(r"(?:sk|pk|rk|ak)-(?=[\w\-]*\d)(?=[\w\-]*[A-Za-z])[A-Za-z0-9_\-]{16,}"),
    re.compile(
        r"(?i)\b(?:api[_-]?key|access[_-]?token|token|secret|password|passwd|authorization)"
        r"\b[\"']?\s*[:=]\s*[\"']?(?!bearer\b|basic\b)" + _TOKEN
    ),
)
_LONG_TOKEN = re.compile(r"[A-Za-z0-9+/_\-]{20,}={0,2}")
_TOKEN_SEGMENT = re.compile(r"[A-Za-z0-9]{20,}")
_HEX = re.compile(r"[0-9A-Fa-f]{32,}")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_ECHOED_BYTES = re.compile(r"[\s:]*(?:\bbytearray\(|\bb'|\bb\").*", re.DOTALL)
_SPACE = re.compile(r"\s+")


class _Known:
    """Secret values and endpoint hosts this process knows of; shared by every caller."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.secrets: tuple[str, ...] = ()
        self.hosts: tuple[str, ...] = ()

    def add(self, secrets: Iterable[str] = (), hosts: Iterable[str] = ()) -> None:
        with self.lock:
            merged = {*self.secrets, *(s for s in secrets if len(s) >= MIN_SECRET_LENGTH)}
            self.secrets = tuple(sorted(merged, key=len, reverse=True))
            named = {*self.hosts, *(h for h in hosts if h)}
            self.hosts = tuple(sorted(named, key=len, reverse=True))


_KNOWN = _Known()


def remember_secret(value: str | None) -> None:
    """From now on, `value` never appears in a cleaned text."""
    if value:
        _KNOWN.add(secrets=[value])


def remember_endpoint(url: str | None) -> None:
    """From now on, the host (and host:port) of `url` never appears in a cleaned text."""
    if not url:
        return
    try:
        parts = urlsplit(url)
        hosts = [parts.netloc.rpartition("@")[2], parts.hostname or ""]
    except ValueError:
        return
    _KNOWN.add(hosts=hosts)


def excerpt(text: object, limit: int | None = DEFAULT_LIMIT) -> str:
    """`text` as one line with no endpoint and no credential, cut to `limit` characters.

    The cut text is cleaned again (a cut can leave what looks like a host:port), so that an
    excerpt of an excerpt is the excerpt itself.
    """
    cleaned = _scrubbed(str(text))
    for _ in range(MAX_CUTS):
        if limit is None or len(cleaned) <= limit:
            return cleaned
        cleaned = _scrubbed(_cut(cleaned, limit))
    return _cut(cleaned, limit) if limit is not None and len(cleaned) > limit else cleaned


def without_echoed_bytes(message: str) -> str:
    """An HTTP parser's message without the bytes of the request it quotes (aiohttp's say
    ``...: bytearray(b'...')`` or ``...:\\n  b'GARBAGE'\\n  ^``)."""
    return _ECHOED_BYTES.sub("", message).strip().rstrip(".:")


def _cut(text: str, limit: int) -> str:
    return text[: max(0, limit - 1)].rstrip() + "…"


def _scrubbed(text: str) -> str:
    """`text` on one line, every endpoint and credential replaced by a placeholder."""
    cleaned = _CONTROL.sub(" ", text)
    for secret in _KNOWN.secrets:
        cleaned = cleaned.replace(secret, REDACTED)
    cleaned = _URL.sub(_url_placeholder, cleaned)
    cleaned = _USERINFO.sub(REDACTED + "@", cleaned)
    for host in _KNOWN.hosts:
        cleaned = cleaned.replace(host, "<host>")
    for pattern in _KEY_PATTERNS:
        cleaned = pattern.sub(REDACTED, cleaned)
    cleaned = _LONG_TOKEN.sub(_token_placeholder, cleaned)
    cleaned = _IPV4.sub("<address>", cleaned)
    cleaned = _IPV6.sub(_ipv6_placeholder, cleaned)
    cleaned = _HOST_PORT.sub("<host>", cleaned)
    return _SPACE.sub(" ", cleaned).strip()


def clean(value: Any, limit: int | None = DEFAULT_LIMIT) -> Any:
    """`value` with every string in it (at any depth) cleaned by `excerpt`."""
    if isinstance(value, str):
        return excerpt(value, limit)
    if isinstance(value, dict):
        return {k: clean(v, limit) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v, limit) for v in value]
    return value


def _url_placeholder(match: re.Match[str]) -> str:
    return "<url>"


def _token_placeholder(match: re.Match[str]) -> str:
    """A long run of letters and digits mixed is a key; a model name's short words are not."""
    token = match.group(0)
    if token.startswith(OWN_ID_PREFIXES):
        return token
    if _HEX.fullmatch(token.rstrip("=")):
        return REDACTED
    for segment in _TOKEN_SEGMENT.findall(token):
        if any(c.isdigit() for c in segment) and any(c.isalpha() for c in segment):
            return REDACTED
    return token


def _ipv6_placeholder(match: re.Match[str]) -> str:
    token = match.group(0).strip("[]")
    looks_like_ipv6 = "::" in token or any(c in "abcdefABCDEF" for c in token)
    return "<address>" if looks_like_ipv6 and token.count(":") >= 2 else token
