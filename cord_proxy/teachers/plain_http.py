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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

IDLE_S = 4.0  # a connection idle longer is closed rather than reused
USER_AGENT = "cord-proxy"
MAX_HEAD_BYTES = 65536  # a status line and headers longer than this are refused
NO_BODY = (204, 304)


class ConnectionFailed(Exception):
    """No connection could be made, or it was lost before the answer was complete."""


class BadAnswer(Exception):
    """The server answered something this client does not read as HTTP/1.x."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case; a repeated header's last value
    body: bytes


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
        head = b"POST %s HTTP/1.1\r\n%s%sContent-Length: %d\r\n\r\n" % (
            path.encode("ascii"),
            self._fixed,
            headers,
            len(body),
        )
        try:
            answer = await connection.exchange(head + body)
        except BaseException:
            connection.close()  # cancelled or failed mid-answer: it cannot carry another
            raise
        if connection.reusable:
            connection.idle_since = connection.loop.time()
            self._idle.append(connection)
            if self._pruning is None:
                self._pruning = connection.loop.call_later(IDLE_S, self._prune)
        else:
            connection.close()
        return answer

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
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop: the old one's connections are gone
            self._stop_pruning()
            self._loop, self._idle, self._open = loop, deque(), set()
        while self._idle:
            connection = self._idle.pop()
            if not connection.lost and connection.idle_for() < IDLE_S:
                return connection
            connection.close()
        return None

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
    """One TCP connection: it sends a request and reads its answer (`_Reading`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, registry: set[_Connection]):
        self.loop = loop
        self.registry = registry
        self.transport: asyncio.Transport | None = None
        self.reading: _Reading | None = None
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
        self.reading = _Reading()
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


class _Reading:
    """An answer read as it arrives: its head, then its body by the head's framing."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.status = 0
        self.version = ""
        self.headers: dict[str, str] = {}
        self.length: int | None = None  # body bytes still expected (framed by length)
        self.chunked = False
        self.until_close = False
        self.parts: list[bytes] = []
        self.left_over = False

    def feed(self, data: bytes) -> bool:
        """Take `data`; True once the answer is complete."""
        self.buffer += data
        while not self.status:
            if not self._head():
                return False
        if self.until_close:
            self.parts.append(bytes(self.buffer))
            self.buffer.clear()
            return False
        return self._chunks() if self.chunked else self._sized()

    def answer(self) -> Answer:
        return Answer(self.status, self.headers, b"".join(self.parts))

    def keeps_alive(self) -> bool:
        if "connection" not in self.headers:
            return self.version == "1.1"
        tokens = {t.strip().lower() for t in self.headers["connection"].split(",")}
        if self.version == "1.1":
            return "close" not in tokens
        return "keep-alive" in tokens

    def _head(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD_BYTES:
                raise BadAnswer("an answer's head is too long")
            return False
        head = self.buffer[: end + 2].decode("latin-1")
        del self.buffer[: end + 4]
        status_line, _, header_lines = head.partition("\r\n")
        status, version = _status_line(status_line)
        if 100 <= status < 200:
            return True  # an informational head: the answer follows
        self.status, self.version, self.headers = status, version, _headers(header_lines)
        self._framing()
        return True

    def _framing(self) -> None:
        encoding = self.headers.get("content-encoding", "identity").strip().lower()
        if encoding != "identity":
            raise BadAnswer(f"an answer encoded as {encoding!r}, where identity was asked")
        coding = self.headers.get("transfer-encoding", "").strip().lower()
        if self.status in NO_BODY:
            self.length = 0
        elif coding:
            if coding.split(",")[-1].strip() != "chunked":
                raise BadAnswer(f"an answer with transfer-encoding {coding!r}")
            self.chunked = True
        elif "content-length" in self.headers:
            self.length = _length(self.headers["content-length"])
        else:
            self.until_close = True

    def _sized(self) -> bool:
        assert self.length is not None
        if len(self.buffer) < self.length:
            return False
        self.parts.append(bytes(self.buffer[: self.length]))
        self.left_over = len(self.buffer) > self.length
        self.buffer.clear()
        return True

    def _chunks(self) -> bool:
        """Take the whole chunks buffered; True after the last chunk and its trailers."""
        at, done = 0, False
        while True:
            line_end = self.buffer.find(b"\r\n", at)
            if line_end < 0:
                break
            size = _chunk_size(bytes(self.buffer[at:line_end]))
            if size == 0:
                trailers_end = self.buffer.find(b"\r\n\r\n", line_end)
                if trailers_end >= 0:
                    self.left_over = len(self.buffer) > trailers_end + 4
                    at, done = len(self.buffer), True
                break
            start, end = line_end + 2, line_end + 2 + size
            if len(self.buffer) < end + 2:
                break
            if self.buffer[end : end + 2] != b"\r\n":
                raise BadAnswer("a chunk does not end where its size says")
            self.parts.append(bytes(self.buffer[start:end]))
            at = end + 2
        del self.buffer[:at]
        return done


def _status_line(line: str) -> tuple[int, str]:
    found = _STATUS.match(line)
    if found is None:
        raise BadAnswer(f"an answer that is not HTTP/1.x: {line[:40]!r}")
    return int(found[2]), found[1]


def _headers(lines: str) -> dict[str, str]:
    """Header lines, each ending with CRLF, by lower-case name (a repeated one's last). The
    block is checked by one match, then split (a match object per line cost twice as much)."""
    if _HEADERS.fullmatch(lines) is None:
        bad = next((line for line in lines.split("\r\n") if not _HEADER.fullmatch(line)), lines)
        raise BadAnswer(f"a header line that cannot be read: {bad[:40]!r}")
    headers: dict[str, str] = {}
    for line in lines.split("\r\n")[:-1]:
        name, _, value = line.partition(":")
        headers[name.lower()] = value.strip(" \t")
    return headers


def _length(value: str) -> int:
    if not value.isdigit():  # the usual case is one number; a list must repeat one
        values = {v.strip() for v in value.split(",")}
        if len(values) != 1:
            raise BadAnswer(f"an answer with content-length {value!r}")
        value = values.pop()
    if not _DIGITS.fullmatch(value):
        raise BadAnswer(f"an answer with content-length {value!r}")
    return int(value)


def _chunk_size(line: bytes) -> int:
    size = line.split(b";", 1)[0].strip()
    if not _HEX.fullmatch(size):
        raise BadAnswer(f"a chunk size that is not hexadecimal: {line[:20]!r}")
    return int(size, 16)


_DIGITS = re.compile(r"[0-9]+")
_STATUS = re.compile(r"HTTP/(1\.[01]) ([0-9]{3})(?: |$)")
_HEADER = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+:[^\r\n]*")
_HEADERS = re.compile(rf"(?:{_HEADER.pattern}\r\n)*")
_TARGET = re.compile(r"/[!#-~]*")  # a path (and query) of visible ASCII, no space
_HEX = re.compile(rb"[0-9A-Fa-f]+")
