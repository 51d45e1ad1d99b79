"""Secrets are configured as ``env:NAME`` references and resolved here, once, at start."""

from __future__ import annotations

import os

from cord_proxy.config import SECRET_REF
from cord_proxy.errors import ConfigError
from cord_proxy.redact import remember_secret


def resolve_secret(ref: str | None) -> str | None:
    """The value of an ``env:NAME`` reference; a missing variable is a config error.

    Every value resolved is remembered, so that no log line or error body can carry it.
    """
    if ref is None:
        return None
    match = SECRET_REF.match(ref)
    if match is None:
        raise ConfigError(f"secret reference {ref!r} is not of the form env:NAME")
    value = os.environ.get(match.group(1))
    if not value:
        raise ConfigError(f"environment variable {match.group(1)} is not set", [ref])
    remember_secret(value)
    return value
