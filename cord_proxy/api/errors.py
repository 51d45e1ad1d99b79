"""Errors as OpenAI error objects: every failure of a route becomes one, never a traceback.

The body itself is built by `cord_proxy.errors.error_body`; here a `CordError` or an aiohttp
`HTTPException` becomes a response, its message cleaned of endpoints and credentials.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from cord_proxy.api.state import METRICS
from cord_proxy.errors import CordError, RequestTooLargeError, error_body
from cord_proxy.redact import excerpt

log = logging.getLogger(__name__)

ERROR_MESSAGE_LIMIT = 1000
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def openai_error(error: CordError) -> dict[str, Any]:
    """The error's OpenAI object, its message cleaned of endpoints and credentials."""
    return error.to_openai(excerpt(error.message, ERROR_MESSAGE_LIMIT))


def error_response(error: CordError) -> web.Response:
    return web.json_response(openai_error(error), status=error.status, headers=error.headers())


def http_error_response(exc: web.HTTPException) -> web.Response:
    """aiohttp's own refusal (no such route, a wrong method) as an OpenAI error object."""
    kind = "not_found" if exc.status == 404 else "invalid_request_error"
    headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
    return web.json_response(error_body(exc.reason, kind), status=exc.status, headers=headers)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes an OpenAI error object; no traceback ever reaches a client."""
    try:
        return await handler(request)
    except CordError as error:
        return error_response(error)
    except web.HTTPRequestEntityTooLarge:
        return error_response(RequestTooLargeError("request body is too large"))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return http_error_response(exc)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        if METRICS in request.app:
            request.app[METRICS].observe_unhandled()
        log.exception("unhandled error", extra={"path": request.path})  # cleaned by logs.py
        return error_response(CordError("internal error"))
