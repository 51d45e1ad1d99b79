"""Server-Sent Events on an aiohttp response: open the stream, write events, end it.

What a stream writes is one of: a ``data:`` line holding a JSON object, a ``:`` comment (a
keep-alive, which clients ignore), and, for the OpenAI chat stream, ``data: [DONE]``.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from cord_proxy.api.state import SENT

HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
KEEP_ALIVE = b": keep-alive\n\n"
DONE = b"data: [DONE]\n\n"


async def open_stream(request: web.Request) -> web.StreamResponse:
    """Send the 200 and the headers of an event stream; the request remembers it was sent."""
    response = web.StreamResponse(headers=HEADERS)
    await response.prepare(request)
    request[SENT] = response.status
    return response


def data_frame(payload: dict[str, Any]) -> bytes:
    """The ``data:`` event of a JSON object, as written."""
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


async def send_data(response: web.StreamResponse, payload: dict[str, Any]) -> None:
    await response.write(data_frame(payload))


async def send_keep_alive(response: web.StreamResponse) -> None:
    await response.write(KEEP_ALIVE)


async def close_stream(response: web.StreamResponse, *, done: bool = True) -> None:
    """End the stream, with ``data: [DONE]`` first when `done`."""
    if done:
        await response.write(DONE)
    await response.write_eof()
