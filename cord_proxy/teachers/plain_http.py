"""A teacher's JSON POSTs over plain ``http://``: a small HTTP/1.1 client on asyncio's own
transports, with keep-alive connections, used instead of aiohttp's on the hot path.

Why: every teacher call is one or more POSTs. On the simulated teachers' ``/tokenize``
answers aiohttp's client cost 0.11 to 0.17 ms of CPU a request and this one about 0.05 ms,
and it keeps fewer objects alive per request (fewer garbage collections): the fan-out
bench's CPU per teacher call fell by about 40% with it (bench/README.md, issue 24).

What it speaks: one request at a time on a connection (no pipelining); answers framed by
``Content-Length``, by chunks, or by the end of the connection; ``Connection: close``;
informational (1xx) heads skipped. It asks for ``identity`` bodies and refuses others. A
connection is reused only when the answer allows it, while it is open, and within `IDLE_S`
of its last answer (servers close idle ones: uvicorn, and so vLLM, after 5 s); one whose call
is cancelled or fails mid-answer is closed. TLS (``https``), a session the caller passes in,
and GET requests (the breaker's check) stay with aiohttp (http_endpoint.py).
"""

from __future__ import annotations

import asyncio
import re
import warnings
from collections import deque
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, cast
from urllib.parse import urlsplit

from cord_proxy.teachers.http_answer import Answer, BadAnswer, Reading

Ended = Callable[["asyncio.Future[Answer]"], None]  # told when a started POST's answer ends
IDLE_S = 4.0  # a connection idle longer is closed rather than reused
USER_AGENT = "cord-proxy"


class ConnectionFailed(Exception):
    """No connection could be made, or it was lost before the answer was complete."""


def header_block(headers: Mapping[str, str]) -> bytes:
    """Request header lines; a name or value that would break a line is refused."""
    lines = []
    for name, value in headers.items():
        if not name.isascii() or any(c in f"{name}{value}" for c in "\r\n\0") or ":" in name:
            raise ValueError(f"a header that cannot be sent: {name!r}")
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("latin-1")


def plain_client(base_url: str, headers: Mapping[str, str]) -> PlainHttp | None:
    """A client for the host of an ``http://`` base URL; None where aiohttp must serve it
    (``https``, a user or a fragment in the URL, headers that cannot be sent as they are)."""
    parts = urlsplit(base_url)
    if parts.scheme != "http" or parts.username or parts.password or parts.fragment:
        return None
    if not parts.hostname or not _TARGET.fullmatch(parts.path or "/"):
        return None
    try:
        return PlainHttp(parts.hostname, parts.port or 80, parts.netloc, headers)
    except ValueError:
        return None


class PlainHttp:
    """Keep-alive connections to one ``host:port``, and the POSTs made over them."""

    def __init__(self, host: str, port: int, host_header: str, headers: Mapping[str, str]):
        self.host = host
        self.port = port
        self.host_header = host_header
        self._fixed = header_block(
            {
                "Host": host_header,
                **headers,
                "Accept-Encoding": "identity",
                "User-Agent": USER_AGENT,
            }
        )
        self._idle: deque[_Connection] = deque()  # the most recently used last
        self._open: set[_Connection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pruning: asyncio.TimerHandle | None = None
        self.closed = False

    @property
    def connections(self) -> int:
        """The connections open now, idle or carrying a call."""
        return len(self._open)

    def path_of(self, url: str) -> str | None:
        """The request target of `url`, or None where it is not on this host or not plain."""
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc, parts.fragment) != ("http", self.host_header, ""):
            return None
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return target if _TARGET.fullmatch(target) else None

    async def post(self, path: str, body: bytes, headers: bytes = b"") -> Answer:
        """One POST of a JSON `body` (`headers`: more header lines, from `header_block`)."""
        connection = self._reused() or await self._connect()
        try:
            answer = await connection.exchange(self._request(path, body, headers))
        except BaseException:
            connection.close()  # cancelled or failed mid-answer: it cannot carry another
            raise
        self._after(connection)
        return answer

    async def open_idle(self, count: int) -> None:
        """Open, at once, the connections that `count` POSTs need beyond the idle ones; where
        one cannot be opened, the POST that lacks it tries again and fails (`post`)."""
        missing = count - len(self._idle) if self._reused_loop() else count
        if missing <= 0:
            return
        made = await asyncio.gather(
            *(self._connect() for _ in range(missing)), return_exceptions=True
        )
        now = asyncio.get_running_loop().time()
        for connection in made:
            if isinstance(connection, _Connection):  # a failed one fails its POST instead
                connection.idle_since = now
                self._idle.append(connection)

    def start(
        self, path: str, body: bytes, headers: bytes, then: Ended
    ) -> asyncio.Future[Answer] | None:
        """One POST sent now on an idle connection, its answer to come (`then` is called with
        it once it has ended); None where no connection is idle. Cancelling the answer closes
        its connection."""
        connection = self._reused()
        if connection is None:
            return None
        answer = connection.exchange(self._request(path, body, headers))
        answer.add_done_callback(partial(self._ended, connection, then))
        return answer

    def _request(self, path: str, body: bytes, headers: bytes) -> bytes:
        head = b"POST %s HTTP/1.1\r\n%s%sContent-Length: %d\r\n\r\n" % (
            path.encode("ascii"),
            self._fixed,
            headers,
            len(body),
        )
        return head + body

    def _ended(self, connection: _Connection, then: Ended, answer: asyncio.Future[Answer]) -> None:
        if answer.cancelled() or answer.exception() is not None:
            connection.close()
        else:
            self._after(connection)
        then(answer)

    def _after(self, connection: _Connection) -> None:
        """A connection whose answer ended well: idle again where it may carry another."""
        if connection.reusable:
            connection.idle_since = connection.loop.time()
            self._idle.append(connection)
            if self._pruning is None:
                self._pruning = connection.loop.call_later(IDLE_S, self._prune)
        else:
            connection.close()

    def close(self) -> None:
        """Close every connection; a call still running on one fails as unreachable."""
        self.closed = True
        self._stop_pruning()
        for connection in list(self._open):
            connection.close()
        self._open.clear()
        self._idle.clear()

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if getattr(self, "_open", None) and not self.closed:
            _warn(
                f"Unclosed client session: {len(self._open)} teacher connections", ResourceWarning
            )

    def _reused(self) -> _Connection | None:
        self._reused_loop()
        while self._idle:
            connection = self._idle.pop()
            if not connection.lost and connection.idle_for() < IDLE_S:
                return connection
            connection.close()
        return None

    def _reused_loop(self) -> bool:
        """Whether the connections are of the running loop; a new loop forgets the old's."""
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return True
        self._stop_pruning()
        self._loop, self._idle, self._open = loop, deque(), set()
        return False

    def _prune(self) -> None:
        """Close the connections idle past their time (a server may keep them forever)."""
        self._pruning = None
        while self._idle and (self._idle[0].lost or self._idle[0].idle_for() >= IDLE_S):
            self._idle.popleft().close()
        if self._idle:
            self._pruning = self._idle[0].loop.call_later(IDLE_S, self._prune)

    def _stop_pruning(self) -> None:
        if self._pruning is not None:
            self._pruning.cancel()
            self._pruning = None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(
                lambda: _Connection(loop, self._open), self.host, self.port
            )
        except OSError as error:
            raise ConnectionFailed(type(error).__name__) from None
        self.closed = False
        return connection


class _Connection(asyncio.Protocol):
    """One TCP connection: it sends a request and reads its answer (`Reading`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, registry: set[_Connection]):
        self.loop = loop
        self.registry = registry
        self.transport: asyncio.Transport | None = None
        self.reading: Reading | None = None
        self.answer: asyncio.Future[Answer] | None = None
        self.lost = False
        self.reusable = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport; uvloop's is not an asyncio.Transport subclass
        self.transport = cast(asyncio.Transport, transport)
        self.registry.add(self)

    def idle_for(self) -> float:
        return self.loop.time() - self.idle_since

    def exchange(self, request: bytes) -> asyncio.Future[Answer]:
        if self.transport is None or self.lost:
            raise ConnectionFailed("the connection was closed before the request")
        self.reading = Reading()
        self.answer = self.loop.create_future()
        self.reusable = False
        self.transport.write(request)
        return self.answer

    def data_received(self, data: bytes) -> None:
        if self.reading is None:  # nothing was asked: a server that talks out of turn
            self.close()
            return
        try:
            done = self.reading.feed(data)
        except BadAnswer as error:
            self._end(error)
            return
        if done:
            self.reusable = self.reading.keeps_alive() and not self.reading.left_over
            self._end(self.reading.answer())

    def eof_received(self) -> bool:
        return False  # the transport closes; connection_lost ends the answer

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.registry.discard(self)
        if self.reading is not None and self.reading.until_close and exc is None:
            self._end(self.reading.answer())
        else:
            self._end(ConnectionFailed("the connection was lost before the answer ended"))

    def close(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.close()

    def _end(self, outcome: Answer | Exception) -> None:
        answer, self.answer, self.reading = self.answer, None, None
        if answer is None or answer.done():
            return
        if isinstance(outcome, Exception):
            answer.set_exception(outcome)
        else:
            answer.set_result(outcome)


_TARGET = re.compile(r"/[!#-~]*")  # a path (and query) of visible ASCII, no space
