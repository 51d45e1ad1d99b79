"""The access log and the request counters: every routed request, by the status its client got.

One ``request`` log line and one count a request: what the errors handler answered, 499 for
a client that left before any answer, 200 for a stream that began (a stream that ended in an
error event is counted apart, in ``cord_stream_errors_total``, by that error's status). Every
request is also timed, whatever its status. Both by the route's pattern, and every path no
route matches as one route, so a client cannot grow the series.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web

from cord_proxy.api.errors import Handler
from cord_proxy.api.state import CLIENT_CLOSED, METRICS, SENT, STREAM_ERROR

log = logging.getLogger(__name__)

UNMATCHED = "(unmatched)"


def route_of(request: web.Request) -> str:
    """The route's template (``/v1/files/{file_id}``), never the path a client sent."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and log the request by the status its client received (see the module)."""
    started = time.perf_counter()
    status = CLIENT_CLOSED
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # a redirect: the errors handler answers the rest
        status = exc.status
        raise
    except (asyncio.CancelledError, ConnectionResetError):
        status = request.get(SENT, CLIENT_CLOSED)
        if SENT in request:
            request[STREAM_ERROR] = CLIENT_CLOSED
        raise
    except Exception:  # past the errors handler, aiohttp answers a 500
        status = request.get(SENT, 500)
        raise
    finally:
        _observe(request, status, time.perf_counter() - started)


def _observe(request: web.Request, status: int, elapsed: float) -> None:
    route = route_of(request)
    stream_error = request.get(STREAM_ERROR)
    metrics = request.app[METRICS]
    metrics.observe_request(route, status)
    metrics.observe_latency(route, elapsed)
    if stream_error is not None:
        metrics.observe_stream_error(route, stream_error)
    extra: dict[str, Any] = {"method": request.method, "route": route, "status": status}
    if stream_error is not None:
        extra["stream_error"] = stream_error
    log.info("request", extra={**extra, "duration_s": round(elapsed, 4)})
