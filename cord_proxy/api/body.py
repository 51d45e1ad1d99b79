"""A request's JSON body, read under the server's limits: its size and its deadline.

What a route gets is a JSON object, or a 4xx error object saying why there is none: 413 over
``max_body_bytes``, 408 past ``body_timeout``, 400 for bytes that are not UTF-8 JSON.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from cord_proxy.api.state import RUNTIME
from cord_proxy.errors import InvalidRequestError, RequestTimeoutError, RequestTooLargeError


async def read_body(request: web.Request) -> dict[str, Any]:
    server = request.app[RUNTIME].config.server
    limit = server.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise RequestTooLargeError(f"request body is over the limit of {limit} bytes")
    try:
        async with asyncio.timeout(server.body_timeout):
            raw = await request.read()
    except TimeoutError:
        raise RequestTimeoutError(
            f"the request body did not arrive within {server.body_timeout:g} s"
        ) from None
    except (HttpProcessingError, web.RequestPayloadError) as error:
        raise InvalidRequestError(
            f"the request body could not be read ({type(error).__name__})"
        ) from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidRequestError("request body is not valid UTF-8") from None
    except json.JSONDecodeError as error:
        raise InvalidRequestError(f"request body is not valid JSON: {error}"[:300]) from None
    except RecursionError:
        raise InvalidRequestError("request body is not valid JSON: it nests too deeply") from None
    except ValueError:  # the only other one: a number past Python's digit limit
        raise InvalidRequestError("request body has a number with too many digits") from None
    if not isinstance(data, dict):
        raise InvalidRequestError("request body must be a JSON object")
    return data
