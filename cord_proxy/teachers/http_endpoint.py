"""An OpenAI-compatible endpoint over HTTP: the client a teacher and its views share, one
POST of a JSON body read back as an object, and the health check its breaker runs.

POSTs to a plain ``http://`` endpoint go through the teachers' own HTTP/1.1 client
(plain_http.py), which costs less than half of aiohttp's CPU a request; aiohttp serves the rest
(``https``, a session the caller passes in) and the health check. aiohttp replaced httpx
before: on the benchmark's score responses httpx spent 2.36 ms of CPU per call against
0.99 ms for aiohttp, and teacher calls are most of the proxy's CPU (bench/README.md). Bodies
go through orjson: a score response holds every prompt token's log-probability, and orjson
parses it 2 to 2.7 times faster than the standard library (14.97 ms against 7.36 ms for a
16k-token context).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import Any

import aiohttp
import orjson

from cord_proxy.errors import (
    TeacherError,
    TeacherHTTPError,
    TeacherProtocolError,
    TeacherUnreachableError,
)
from cord_proxy.teachers.affinity import ROUTING_HEADER, routing_key
from cord_proxy.teachers.http_answer import Answer, BadAnswer
from cord_proxy.teachers.plain_http import ConnectionFailed, PlainHttp, header_block, plain_client
from cord_proxy.teachers.retry import Retryable, is_retryable_status, parse_retry_after

ERROR_BODY_EXCERPT = 300
PROBE_TIMEOUT_S = 2.0  # the breaker's background check (breaker.py), at most the timeout
ROUTE_MISSING = (404, 405)
Posted = dict[str, Any] | TeacherError | Retryable  # one POST of a batch: its answer, or why not
EachPosted = Callable[[int, Posted], None]  # told each POST's outcome, by its place in the batch


@dataclass
class HttpEndpoint:
    """What a teacher and its views share of their endpoint: the HTTP session, and what the
    server was found to serve. Errors name the teacher (`name`), never the URL."""

    name: str
    base_url: str
    timeout: float
    max_concurrency: int
    auth: dict[str, str]
    session: aiohttp.ClientSession | None = None
    owns_session: bool = True
    no_health_route: bool = False
    no_tokenize: bool = False
    context: int | None = None  # the served max_model_len, once measured
    plain: PlainHttp | None = field(init=False)  # the POSTs' client where the URL allows
    _headers: dict[str, str] = field(init=False)
    _paths: dict[str, str | None] = field(init=False)  # URL: its path for `plain`, or None

    def __post_init__(self) -> None:
        self._headers = {"Content-Type": "application/json", **self.auth}
        self._paths = {}
        self.plain = (
            None if self.session is not None else plain_client(self.base_url, self._headers)
        )

    def client(self) -> aiohttp.ClientSession:
        """The session, made on first use inside the running event loop."""
        if self.session is None or self.session.closed:
            # Every call has the teacher's deadline (retry.py): a timer of aiohttp's own on
            # each request would repeat it.
            self.session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None),
                connector=aiohttp.TCPConnector(limit=self.max_concurrency),
            )
            self.owns_session = True
        return self.session

    async def close(self) -> None:
        """Close the session and the connections where they are this endpoint's own."""
        if self.plain is not None:
            self.plain.close()
        if self.owns_session and self.session is not None:
            await self.session.close()
            self.session = None

    async def post_json(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        """One POST of `body`, its answer as a JSON object; a 429, 5xx or lost connection is
        `Retryable` (retry.py)."""
        path = self._paths[url] if url in self._paths else self._path(url)
        if path is not None and self.plain is not None:  # inline: no coroutine of its own
            key = routing_key()
            try:
                answer = await self.plain.post(
                    path, orjson.dumps(body), b"" if key is None else _routing_line(key)
                )
            except (ConnectionFailed, BadAnswer) as exc:
                raise self._failure(exc) from None
            return self._plain_object(answer)
        return self._answer_object(*await self._post_aiohttp(url, orjson.dumps(body)))

    async def post_json_many(
        self, url: str, bodies: Sequence[bytes], each: EachPosted, slots: asyncio.Semaphore
    ) -> None:
        """Every body (JSON, encoded) POSTed at once, each within one of `slots`; as each one
        ends, ``each(place, outcome)`` gets its answer as `post_json` reads it, or the error it
        would raise, so that no POST waits for a slower one. On a plain endpoint no POST has a
        task of its own: each is sent on an idle connection as its slot comes. What `each`
        raises ends the batch: the POSTs still out are dropped and it is raised here."""
        path = self._paths[url] if url in self._paths else self._path(url)
        if path is None or self.plain is None:
            await _all_or_none(
                self._posted(url, body, slots, partial(each, place))
                for place, body in enumerate(bodies)
            )
            return
        if not bodies:
            return
        key = routing_key()
        line = b"" if key is None else _routing_line(key)
        await self.plain.open_idle(len(bodies))
        ended = _Countdown(len(bodies), slots, self._plain_outcome, each)
        sent: list[asyncio.Future[Answer]] = []
        try:
            for place, body in enumerate(bodies):
                await slots.acquire()
                if ended.all.done():  # `each` refused an answer: the batch is over
                    slots.release()
                    break
                sent.append(self._sent(path, body, line, partial(ended.one, place), slots))
            await ended.all
        except BaseException:
            ended.all.cancel()  # what still ends is dropped
            for answer in sent:
                answer.cancel()
            raise

    def _sent(
        self,
        path: str,
        body: bytes,
        line: bytes,
        ended: Callable[[asyncio.Future[Answer]], None],
        slots: asyncio.Semaphore,
    ) -> asyncio.Future[Answer]:
        """One POST of a batch, sent on an idle connection where there is one (else in a task
        that opens one); `ended` is told when its answer ends, and gives back its slot."""
        assert self.plain is not None
        try:
            answer = self.plain.start(path, body, line, ended)
        except BaseException:
            slots.release()
            raise
        if answer is None:
            answer = asyncio.ensure_future(self.plain.post(path, body, line))
            answer.add_done_callback(ended)
        return answer

    async def _posted(
        self, url: str, body: bytes, slots: asyncio.Semaphore, each: Callable[[Posted], None]
    ) -> None:
        async with slots:
            try:
                outcome: Posted = self._answer_object(*await self._post_aiohttp(url, body))
            except (TeacherError, Retryable) as error:
                outcome = error
        each(outcome)

    def _plain_outcome(self, sent: asyncio.Future[Answer]) -> Posted:
        failure = sent.exception()
        if isinstance(failure, ConnectionFailed | BadAnswer):
            return self._failure(failure)
        if failure is not None:
            raise failure
        try:
            return self._plain_object(sent.result())
        except (TeacherError, Retryable) as error:
            return error

    def _failure(self, exc: ConnectionFailed | BadAnswer) -> Retryable | TeacherProtocolError:
        if isinstance(exc, ConnectionFailed):
            return Retryable(self._unreachable(str(exc)))
        return TeacherProtocolError(self.name, f"answered badly: {exc}")

    def _plain_object(self, answer: Answer) -> dict[str, Any]:
        return self._answer_object(answer.status, answer.body, answer.headers.get("retry-after"))

    def _answer_object(self, status: int, raw: bytes, retry_after: str | None) -> dict[str, Any]:
        if status >= 400:
            error = TeacherHTTPError(
                self.name, f"HTTP {status}: {_excerpt(raw)}", http_status=status
            )
            if is_retryable_status(status):
                raise Retryable(error, parse_retry_after(retry_after))
            raise error
        return self._object(raw)

    async def _post_aiohttp(self, url: str, body: bytes) -> tuple[int, bytes, str | None]:
        try:
            async with self.client().post(url, data=body, headers=self._with_routing()) as response:
                return response.status, await response.read(), response.headers.get("retry-after")
        except TimeoutError:  # aiohttp's own timeouts are TimeoutErrors too
            raise
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise Retryable(self._unreachable(type(exc).__name__)) from None

    def _unreachable(self, why: str) -> TeacherUnreachableError:
        return TeacherUnreachableError(self.name, f"cannot connect to its endpoint ({why})")

    def _path(self, url: str) -> str | None:
        """The request target of `url` for `plain`: None where it is not on its host."""
        path = self.plain.path_of(url) if self.plain is not None else None
        self._paths[url] = path
        return path

    def _with_routing(self) -> dict[str, str]:
        key = routing_key()
        return self._headers if key is None else {**self._headers, ROUTING_HEADER: key}

    async def answers(self) -> bool:
        """The breaker's background check: vLLM's ``GET /health`` (at the server's root),
        or ``GET /models`` where the server has no such route; True on a 2xx."""
        timeout = aiohttp.ClientTimeout(total=min(self.timeout, PROBE_TIMEOUT_S))
        if not self.no_health_route:
            status = await self._status(self.base_url.removesuffix("/v1") + "/health", timeout)
            if status not in ROUTE_MISSING:
                return status is not None and 200 <= status < 300
            self.no_health_route = True
        status = await self._status(self.base_url + "/models", timeout)
        return status is not None and 200 <= status < 300

    async def _status(self, url: str, timeout: aiohttp.ClientTimeout) -> int | None:
        """The status of one GET, or None when nothing answered in time."""
        try:
            async with self.client().get(url, headers=self.auth, timeout=timeout) as response:
                await response.read()
                return response.status
        except (aiohttp.ClientError, TimeoutError):
            return None

    def _object(self, raw: bytes) -> dict[str, Any]:
        data = _parse_json(raw)
        if data is None:
            raise TeacherProtocolError(self.name, f"answered invalid JSON: {_excerpt(raw)!r}")
        if not isinstance(data, dict):
            raise TeacherProtocolError(self.name, "answered JSON that is not an object")
        return data


class _Countdown:
    """The POSTs of one batch as they end: each gives back its slot and is passed on, read,
    to `each`; `all` is done with the last one, or with the first that `each` refuses."""

    def __init__(
        self,
        count: int,
        slots: asyncio.Semaphore,
        outcome: Callable[[asyncio.Future[Answer]], Posted],
        each: EachPosted,
    ) -> None:
        self.left = count
        self.slots = slots
        self.outcome = outcome
        self.each = each
        self.all: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def one(self, place: int, answer: asyncio.Future[Answer]) -> None:
        self.slots.release()
        self.left -= 1
        if self.all.done() or answer.cancelled():  # only the batch itself cancels a POST
            return
        try:
            self.each(place, self.outcome(answer))
        except Exception as error:
            self.all.set_exception(error)
            return
        if self.left == 0:
            self.all.set_result(None)


async def _all_or_none(posts: Iterable[Awaitable[None]]) -> None:
    """Run every POST; the first that raises cancels the others."""
    tasks = [asyncio.ensure_future(post) for post in posts]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        raise


@lru_cache(maxsize=4096)
def _routing_line(key: str) -> bytes:
    """A beam's routing header line, made once for its calls."""
    return header_block({ROUTING_HEADER: key})


def _excerpt(raw: bytes) -> str:
    return raw[:ERROR_BODY_EXCERPT].decode("utf-8", "replace")


def _parse_json(raw: bytes) -> Any | None:
    """The parsed body, or None when it is not JSON.

    Servers built on Python's json module may write NaN or Infinity, which orjson refuses.
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None
