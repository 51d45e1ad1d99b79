"""Every request's id: made when it arrives, sent back as ``x-request-id``, in its log lines.

The outermost middleware makes the id, keeps it on the request (`state.REQUEST_ID`) and sets
`cord_proxy.logs.REQUEST_ID` for as long as the request is served, so every line logged for
it, by this task or by the tasks it starts (its decode, its teacher calls), carries it. The
app's ``on_response_prepare`` hook puts it on every response, errors and streams included.
A chat completion keeps its own ``id`` (``chatcmpl-...``); the ``decode finished`` line
names both.
"""

from __future__ import annotations

import uuid

from aiohttp import web

from cord_proxy.api.errors import Handler
from cord_proxy.api.state import REQUEST_ID
from cord_proxy.logs import REQUEST_ID as LOGGED_REQUEST_ID

HEADER = "x-request-id"


def new_request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = new_request_id()
    request[REQUEST_ID] = request_id
    token = LOGGED_REQUEST_ID.set(request_id)
    try:
        return await handler(request)
    finally:
        LOGGED_REQUEST_ID.reset(token)


async def send_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """The ``on_response_prepare`` hook: the request's id as the ``x-request-id`` header."""
    request_id = request.get(REQUEST_ID)
    if request_id is not None:
        response.headers[HEADER] = request_id
