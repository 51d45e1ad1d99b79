"""The names the HTTP face's parts share: the app's keys, a request's keys, the routes' paths.

The app holds the runtime, the counters, the dataset sink and the detachable decodes; a
request holds its id and, once its response has begun (a stream), the status sent and the
status of the error event that ended it. Every module of ``api`` reads them by these keys,
and none by a string.
"""

from __future__ import annotations

from aiohttp import web

from cord_proxy.api.attach import Decodes
from cord_proxy.data.sink import TraceSink
from cord_proxy.metrics import Metrics
from cord_proxy.runtime import Runtime

RUNTIME = web.AppKey("runtime", Runtime)
METRICS = web.AppKey("metrics", Metrics)
SINK: web.AppKey[TraceSink] = web.AppKey("sink")
DECODES = web.AppKey("decodes", Decodes)
"""The chat completions' decodes that may outlive their clients (attach.py)."""

REQUEST_ID = web.RequestKey("request_id", str)
"""The request's id: its ``x-request-id`` header and the ``request_id`` of its log lines."""
SENT = web.RequestKey("sent", int)
"""The status already sent when a handler fails after its response began (a stream)."""
STREAM_ERROR = web.RequestKey("stream_error", int)
"""The status of the error event that ended a stream; the client received a 200."""

CHAT_ROUTE = "/v1/chat/completions"
CLIENT_CLOSED = 499  # nginx's status for a client that went away before its answer
