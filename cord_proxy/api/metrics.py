"""The metrics route (``GET /metrics``): the proxy's counters and the teachers' breakers in
Prometheus' text format (cord_proxy/metrics.py renders them)."""

from __future__ import annotations

from aiohttp import web

from cord_proxy.api.state import METRICS, RUNTIME
from cord_proxy.metrics import render_breakers


async def metrics(request: web.Request) -> web.Response:
    breakers = render_breakers(request.app[RUNTIME].breaker_states())
    return web.Response(text=request.app[METRICS].render() + breakers, content_type="text/plain")


def add_metrics_route(app: web.Application) -> None:
    app.router.add_get("/metrics", metrics)
