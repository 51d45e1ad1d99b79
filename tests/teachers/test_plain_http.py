"""The teachers' own HTTP/1.1 client (cord_proxy/teachers/plain_http.py): how it reads
answers, byte by byte where they may be split, and how it keeps, reuses and drops its
connections, against a FAKE server that writes exactly the bytes each test gives it."""

from __future__ import annotations

import asyncio
import gzip
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import uvloop

from cord_proxy.teachers import http_answer, plain_http
from cord_proxy.teachers.http_answer import BadAnswer, Reading
from cord_proxy.teachers.plain_http import ConnectionFailed, PlainHttp, header_block, plain_client

JSON = b'{"ok": true}'
SIZED = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nRetry-After: 3\r\n\r\n" + JSON
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;name=value\r\n" + JSON[:5] + b"\r\n7\r\n" + JSON[5:] + b"\r\n0\r\nX-Trailer: 1\r\n\r\n"
)


def nothing(_: object) -> None:
    """A started POST's `then` that does nothing."""


def read_in_pieces(raw: bytes, size: int) -> Reading:
    reading = Reading()
    pieces = [raw[i : i + size] for i in range(0, len(raw), size)]
    done = [reading.feed(piece) for piece in pieces]
    assert done == [False] * (len(pieces) - 1) + [True], f"done only at the end ({size})"
    return reading


@pytest.mark.parametrize("raw", [SIZED, CHUNKED, b"HTTP/1.1 100 Continue\r\n\r\n" + SIZED])
def test_an_answer_is_read_whole_however_its_bytes_arrive(raw: bytes) -> None:
    for size in range(1, len(raw) + 1):
        reading = read_in_pieces(raw, size)
        answer = reading.answer()
        assert (answer.status, answer.body) == (200, JSON)
        assert reading.keeps_alive() and not reading.left_over


def test_headers_are_read_by_lower_case_name() -> None:
    answer = read_in_pieces(SIZED, len(SIZED)).answer()
    assert answer.headers == {"content-length": "12", "retry-after": "3"}


@pytest.mark.parametrize(
    ("head", "keeps"),
    [
        (b"HTTP/1.1 200 OK\r\n", True),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\n", False),
        (b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close\r\n", False),
        (b"HTTP/1.0 200 OK\r\n", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n", True),
    ],
)
def test_a_connection_is_kept_as_the_answer_allows(head: bytes, keeps: bool) -> None:
    reading = Reading()
    assert reading.feed(head + b"Content-Length: 0\r\n\r\n")
    assert reading.keeps_alive() is keeps


def test_an_answer_without_length_ends_with_its_connection() -> None:
    reading = Reading()
    assert not reading.feed(b"HTTP/1.1 200 OK\r\n\r\n" + JSON[:4])
    assert not reading.feed(JSON[4:])
    assert reading.until_close and reading.answer().body == JSON


def test_a_no_content_answer_has_no_body_whatever_its_headers_say() -> None:
    reading = Reading()
    assert reading.feed(b"HTTP/1.1 204 No Content\r\nContent-Length: 12\r\n\r\n")
    assert reading.answer().body == b""


def test_bytes_after_the_answer_leave_the_connection_unusable() -> None:
    reading = Reading()
    assert reading.feed(SIZED + b"HTTP/1.1")
    assert reading.left_over


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/2 200 OK\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nA: 1\r\n folded\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nName : value\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 12, 13\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: \xc2\xb2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n",
    ],
)
def test_what_is_not_http_1_as_read_here_is_refused(raw: bytes) -> None:
    with pytest.raises(BadAnswer):
        Reading().feed(raw)


def test_an_endless_head_is_refused() -> None:
    reading = Reading()
    reading.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(BadAnswer, match="too long"):
        reading.feed(b"X: " + b"y" * http_answer.MAX_HEAD_BYTES)


def test_headers_that_would_break_the_request_are_refused() -> None:
    assert header_block({"X-Session-ID": "beam-1"}) == b"X-Session-ID: beam-1\r\n"
    for name, value in [("X", "a\r\nHost: evil"), ("X", "a\nb"), ("X:Y", "1"), ("X\r", "1")]:
        with pytest.raises(ValueError):
            header_block({name: value})


def test_only_plain_http_urls_on_its_own_host_are_served() -> None:
    client = plain_client("http://127.0.0.1:8401/v1", {})
    assert client is not None and (client.host, client.port) == ("127.0.0.1", 8401)
    assert client.path_of("http://127.0.0.1:8401/v1/completions") == "/v1/completions"
    assert client.path_of("http://127.0.0.1:8401/tokenize?x=1") == "/tokenize?x=1"
    assert client.path_of("http://127.0.0.1:8402/tokenize") is None
    assert client.path_of("https://127.0.0.1:8401/tokenize") is None
    assert client.path_of("http://127.0.0.1:8401/a b") is None
    assert plain_client("http://teacher/v1", {}).port == 80  # type: ignore[union-attr]
    for url in ["https://h/v1", "http://user:key@h/v1", "http:///v1", "http://h/v1#x"]:
        assert plain_client(url, {}) is None
    assert plain_client("http://h/v1", {"Authorization": "Bearer a\r\nb"}) is None


class ScriptedServer:
    """A FAKE HTTP server: each request gets the next of `answers` (bytes, or a callable
    given the writer), read only as far as its head and Content-Length."""

    def __init__(self, answers: list[bytes | Callable[[asyncio.StreamWriter], object]]):
        self.answers = answers
        self.requests: list[bytes] = []
        self.connections = 0
        self.closed_by_client = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                self.requests.append(head + await reader.readexactly(length))
                answer = self.answers.pop(0)
                if callable(answer):
                    answer(writer)
                else:
                    writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed_by_client += 1
        finally:
            writer.close()

    @asynccontextmanager
    async def client(self) -> AsyncIterator[PlainHttp]:
        server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        plain = PlainHttp("127.0.0.1", port, f"127.0.0.1:{port}", {"Authorization": "Bearer k"})
        try:
            yield plain
        finally:
            plain.close()
            server.close()
            await server.wait_closed()


def test_it_runs_on_uvloop_as_on_asyncio() -> None:
    """A library user's server may run on uvloop (uvicorn does where it is installed), whose
    transports are not asyncio.Transport subclasses."""
    fake = ScriptedServer([SIZED, CHUNKED])

    async def two_posts() -> tuple[bytes, bytes]:
        async with fake.client() as plain:
            first = await plain.post("/v1/x", b"{}")
            second = await plain.post("/v1/x", b"{}")
        return first.body, second.body

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(two_posts()) == (JSON, JSON)
    assert fake.connections == 1


async def test_a_request_is_sent_whole_and_a_kept_connection_carries_the_next() -> None:
    fake = ScriptedServer([SIZED, CHUNKED])
    async with fake.client() as plain:
        first = await plain.post("/v1/x", b'{"a": 1}', header_block({"X-Session-ID": "b1"}))
        second = await plain.post("/tokenize", b"{}")
    assert (first.status, first.body, second.body) == (200, JSON, JSON)
    assert first.headers["retry-after"] == "3"
    head, _, body = fake.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/x HTTP/1.1" and body == b'{"a": 1}'
    assert {b"Authorization: Bearer k", b"X-Session-ID: b1", b"Content-Length: 8"} <= set(lines)
    assert b"Accept-Encoding: identity" in lines
    assert fake.connections == 1


async def test_a_connection_the_answer_closes_is_not_reused() -> None:
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 12\r\n\r\n" + JSON
    fake = ScriptedServer([closing, SIZED])
    async with fake.client() as plain:
        await plain.post("/a", b"{}")
        await plain.post("/a", b"{}")
    assert fake.connections == 2


async def test_a_connection_the_server_dropped_while_idle_is_replaced() -> None:
    def answer_then_hang_up(writer: asyncio.StreamWriter) -> None:
        writer.write(SIZED)
        writer.close()

    fake = ScriptedServer([answer_then_hang_up, SIZED])
    async with fake.client() as plain:
        await plain.post("/a", b"{}")
        await until(lambda: plain.connections == 0)  # the close reached the client
        assert (await plain.post("/a", b"{}")).body == JSON
    assert fake.connections == 2


async def test_an_idle_connection_is_not_reused_past_its_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(plain_http, "IDLE_S", 0.05)
    fake = ScriptedServer([SIZED, SIZED, SIZED])
    async with fake.client() as plain:
        await plain.post("/a", b"{}")
        await plain.post("/a", b"{}")
        await asyncio.sleep(0.1)
        await plain.post("/a", b"{}")
    assert fake.connections == 2


async def test_idle_connections_are_closed_in_time_without_another_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(plain_http, "IDLE_S", 0.05)
    fake = ScriptedServer([SIZED, SIZED])
    async with fake.client() as plain:
        await asyncio.gather(plain.post("/a", b"{}"), plain.post("/a", b"{}"))
        assert plain.connections == 2
        await until(lambda: fake.closed_by_client == 2)  # closed by the client, no call made
        assert plain.connections == 0


async def test_an_answer_cut_short_fails_and_a_cancelled_call_closes_its_connection() -> None:
    def half(writer: asyncio.StreamWriter) -> None:
        writer.write(SIZED[:-4])
        writer.close()

    fake = ScriptedServer([half, lambda writer: None, SIZED])
    async with fake.client() as plain:
        with pytest.raises(ConnectionFailed):
            await plain.post("/a", b"{}")
        call = asyncio.ensure_future(plain.post("/a", b"{}"))  # the server never answers it
        await until(lambda: len(fake.requests) == 2)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await until(lambda: fake.closed_by_client == 2)  # the cut one's, and the cancelled one's
        assert (await plain.post("/a", b"{}")).body == JSON
    assert fake.connections == 3


async def test_a_large_chunked_answer_is_read_whole() -> None:
    body = gzip.compress(b"x" * 10) * 20000  # any bytes: the client does not decode them
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in _parts(body, 1000))
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    fake = ScriptedServer([answer])
    async with fake.client() as plain:
        assert (await plain.post("/a", b"{}")).body == body


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


def _parts(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


async def test_a_refused_connection_fails_as_unreachable() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    plain = PlainHttp("127.0.0.1", port, f"127.0.0.1:{port}", {})
    with pytest.raises(ConnectionFailed, match="ConnectionRefusedError"):
        await plain.post("/a", b"{}")


async def test_connections_left_open_warn_as_an_unclosed_session() -> None:
    fake = ScriptedServer([SIZED])
    async with fake.client() as plain:
        await plain.post("/a", b"{}")
        assert plain.connections == 1
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            plain.__del__()
        plain.close()
        assert plain.connections == 0
    assert [str(w.message) for w in caught] == ["Unclosed client session: 1 teacher connections"]


async def test_posts_started_at_once_each_take_an_idle_connection_opened_together() -> None:
    fake = ScriptedServer([SIZED] * 5)
    async with fake.client() as plain:
        await plain.post("/a", b"{}")
        await plain.open_idle(3)  # one was idle: two more
        assert plain.connections == 3
        started = [plain.start("/a", b"{}", b"", nothing) for _ in range(3)]
        assert plain.start("/a", b"{}", b"", nothing) is None  # none is idle now
        answers = await asyncio.gather(*(answer for answer in started if answer is not None))
        assert [answer.body for answer in answers] == [JSON] * 3
        await plain.post("/a", b"{}")  # on one of the three, idle again
    assert fake.connections == 3


async def test_a_cancelled_started_answer_closes_its_connection() -> None:
    fake = ScriptedServer([lambda writer: None, SIZED])
    async with fake.client() as plain:
        await plain.open_idle(1)
        answer = plain.start("/a", b"{}", b"", nothing)
        assert answer is not None
        await until(lambda: len(fake.requests) == 1)
        answer.cancel()
        await until(lambda: fake.closed_by_client == 1)
        assert (await plain.post("/a", b"{}")).body == JSON
    assert fake.connections == 2
