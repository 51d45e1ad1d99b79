"""The server's API keys (``[server] api_keys``), the key a request carries, and the owner
that key stands for (``[batches] owners``).

One check for the OpenAI routes, the Files and Batches routes and the page's APIs: an
``Authorization: Bearer <key>`` header, the scheme in any case (RFC 7235), the key compared
in constant time with each resolved key. With no key set, every request passes.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping

from aiohttp import web

from cord_proxy.errors import AuthenticationError
from cord_proxy.secret_refs import resolve_secret

MISSING_KEY = "Incorrect or missing API key: send 'Authorization: Bearer <key>'"


def bearer_token(header: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header; None when there is none, or when
    its bytes were not UTF-8."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    try:
        token.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return token


def request_key(request: web.BaseRequest) -> str | None:
    """The key the request sends, checked or not."""
    return bearer_token(request.headers.get("Authorization"))


class ApiKeys:
    """The keys of ``[server] api_keys``, their references resolved; none: no key needed."""

    def __init__(self, refs: Iterable[str] = ()):
        self._keys = [k.encode("utf-8") for k in (resolve_secret(ref) for ref in refs) if k]

    @property
    def required(self) -> bool:
        return bool(self._keys)

    def accepts(self, request: web.BaseRequest) -> bool:
        if not self._keys:
            return True
        given = request_key(request)
        if given is None:
            return False
        sent = given.encode("utf-8")
        return any(hmac.compare_digest(sent, k) for k in self._keys)

    def check(self, request: web.BaseRequest) -> None:
        """Raise the 401 `AuthenticationError` unless the request may pass."""
        if not self.accepts(request):
            raise AuthenticationError(MISSING_KEY)


class KeyOwners:
    """``[batches] owners``: the owner each key stands for; without owners, none is set."""

    def __init__(self, refs: Mapping[str, str]):
        self._owners = {resolve_secret(ref) or "": owner for ref, owner in refs.items()}

    @property
    def enabled(self) -> bool:
        return bool(self._owners)

    def owner(self, request: web.BaseRequest) -> str:
        """The owner of the request's key; "" for a key that owns nothing, or no owners set."""
        return self._owners.get(request_key(request) or "", "")
