"""Admission control: over ``[server] max_concurrent_requests``, a request gets a 429 at once.

A request holds its slot while it decodes; the count is the counters' ``in_flight``. Every
API response says how many slots there are and how many are free, in OpenAI's rate-limit
headers (``x-ratelimit-*-requests``), which clients such as Curator read to size their rate.
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


RESET_HINT = "1s"  # a slot frees when any decode ends: a hint for when to look again


async def send_rate_limits(request: web.Request, response: web.StreamResponse) -> None:
    """The ``on_response_prepare`` hook: the admission limit, and the slots free now."""
    if not request.path.startswith("/v1/"):
        return
    limit = request.app[RUNTIME].config.server.max_concurrent_requests
    free = max(0, limit - request.app[METRICS].in_flight)
    response.headers["x-ratelimit-limit-requests"] = str(limit)
    response.headers["x-ratelimit-remaining-requests"] = str(free)
    response.headers["x-ratelimit-reset-requests"] = RESET_HINT
