"""Admission control: over ``[server] max_concurrent_requests``, a request gets a 429 at once.

A request holds its slot while it decodes; the count is the counters' ``in_flight``.
"""

from __future__ import annotations

from aiohttp import web

from cord_proxy.api.state import METRICS, RUNTIME
from cord_proxy.errors import RateLimitError


class RequestSlot:
    """One decode's slot: `with RequestSlot(app):` admits the request or raises the 429."""

    def __init__(self, app: web.Application):
        self.metrics = app[METRICS]
        self.limit = app[RUNTIME].config.server.max_concurrent_requests

    def __enter__(self) -> RequestSlot:
        if self.metrics.in_flight >= self.limit:
            raise RateLimitError(
                f"too many concurrent requests (limit {self.limit}); retry shortly"
            )
        self.metrics.in_flight += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self.metrics.in_flight -= 1
