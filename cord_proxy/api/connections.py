"""The HTTP connection layer under the routes: aiohttp's own errors as OpenAI error objects,
and a deadline for a request's headers.

aiohttp answers a request its HTTP parser refuses (a bad request line, a header that is too
long or not valid, broken chunking) from ``RequestHandler.handle_error``, in ``text/plain``
and before any middleware runs; it has no public hook for it (aiohttp issue #3287). So the
proxy's runner builds its connections with a `RequestHandler` whose ``handle_error``
answers an OpenAI error object instead, and logs one line without the request's bytes.

The same handler closes a connection whose request headers are not complete
`header_timeout` seconds after their first byte (or after the connection opened), with a
408. Bodies have their own deadline, in the route that reads them (body.py).

These answers carry an ``x-request-id`` too, and their log line names it: a new one, or the
request's own when a failure got past every middleware.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader

from cord_proxy.api.request_id import HEADER, new_request_id
from cord_proxy.api.state import REQUEST_ID
from cord_proxy.errors import error_body
from cord_proxy.redact import excerpt, without_echoed_bytes

log = logging.getLogger(__name__)

OnRejected = Callable[[str, int], None]  # (reason, the status sent)


@dataclass(frozen=True)
class HeaderGuard:
    """What every connection of a runner shares: the deadline for a request's headers, and
    whom to tell of a request refused at the HTTP level."""

    header_timeout: float
    on_rejected: OnRejected


def connection_error(status: int, message: str, code: str) -> dict[str, Any]:
    """The OpenAI error object of a request refused at the HTTP level."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return error_body(message, kind, code=code)


class GuardedRequestHandler(web.RequestHandler):
    """A connection that answers HTTP-level errors as JSON and times out slow headers."""

    def __init__(self, manager: web.Server, *, guard: HeaderGuard, **kwargs: Any):
        super().__init__(manager, **kwargs)
        self.guard = guard
        self.busy = False
        self.body: StreamReader | None = None  # the last request's body
        self.header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        body_done = self.body is None or self.body.is_eof()
        if not self.busy and body_done and self.header_timer is None:
            self._arm()  # the first byte of a new request on a kept-alive connection
        super().data_received(data)

    def headers_complete(self, body: StreamReader) -> None:
        self.busy = True
        self.body = body
        self._disarm()

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self.busy = False

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("the response has started; the error cannot be sent")
        reason = "malformed_http" if status < 500 else "server_error"
        self.guard.on_rejected(reason, status)
        request_id = request.get(REQUEST_ID) or new_request_id()
        extra = {"status": status, "request_id": request_id}
        if status >= 500:
            text = "internal error" if status == 500 else HTTPStatus(status).phrase
            log.error("connection error", extra=extra, exc_info=exc)
        else:
            said = without_echoed_bytes(message or "") or HTTPStatus(status).phrase
            text = "malformed HTTP request: " + excerpt(said, 200)
            log.info("malformed HTTP request", extra=extra)
        response = web.json_response(
            connection_error(status, text, reason), status=status, headers={HEADER: request_id}
        )
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        """aiohttp's own 'Unhandled exception' (a broken body met while draining it): one line,
        with no traceback and none of the request's bytes."""
        error = kwargs.get("exc_info")
        name = type(error).__name__ if isinstance(error, BaseException) else None
        log.warning("connection error", extra={"event_source": "aiohttp", "error": name})

    def _arm(self) -> None:
        self._disarm()
        loop = asyncio.get_running_loop()
        self.header_timer = loop.call_later(self.guard.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _headers_too_slow(self) -> None:
        self.header_timer = None
        if self.busy or self.transport is None:
            return
        self.guard.on_rejected("header_timeout", 408)
        message = f"the request headers did not arrive within {self.guard.header_timeout:g} s"
        body = json.dumps(connection_error(408, message, "header_timeout")).encode()
        head = (
            "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
            f"{HEADER}: {new_request_id()}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        self.transport.write(head + body)
        self.force_close()


class GuardedServer(web.Server):
    """Builds `GuardedRequestHandler` connections; tells each when its headers are in."""

    def __init__(self, base: web.Server, guard: HeaderGuard):
        super().__init__(
            base.request_handler,
            request_factory=self._guarded_factory(base.request_factory),
            handler_cancellation=base.handler_cancellation,
            loop=base._loop,
            **base._kwargs,
        )
        self.guard = guard

    def __call__(self) -> GuardedRequestHandler:
        return GuardedRequestHandler(self, loop=self._loop, guard=self.guard, **self._kwargs)

    @staticmethod
    def _guarded_factory(factory: Any) -> Any:
        def make_request(
            message: RawRequestMessage,
            payload: StreamReader,
            protocol: web.RequestHandler,
            writer: AbstractStreamWriter,
            task: asyncio.Task[None],
        ) -> web.BaseRequest:
            if isinstance(protocol, GuardedRequestHandler):
                protocol.headers_complete(payload)
            request: web.BaseRequest = factory(message, payload, protocol, writer, task)
            return request

        return make_request


class GuardedRunner(web.AppRunner):
    """An `AppRunner` whose connections are `GuardedRequestHandler`s."""

    def __init__(
        self, app: web.Application, *, header_timeout: float, on_rejected: OnRejected, **kw: Any
    ):
        super().__init__(app, **kw)
        self.guard = HeaderGuard(header_timeout, on_rejected)

    async def _make_server(self) -> web.Server:
        return GuardedServer(await super()._make_server(), self.guard)
