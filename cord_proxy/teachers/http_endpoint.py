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

import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import aiohttp
import orjson

from cord_proxy.errors import TeacherHTTPError, TeacherProtocolError, TeacherUnreachableError
from cord_proxy.teachers.affinity import ROUTING_HEADER, routing_key
from cord_proxy.teachers.plain_http import (
    BadAnswer,
    ConnectionFailed,
    PlainHttp,
    header_block,
    plain_client,
)
from cord_proxy.teachers.retry import Retryable, is_retryable_status, parse_retry_after

ERROR_BODY_EXCERPT = 300
PROBE_TIMEOUT_S = 2.0  # the breaker's background check (breaker.py), at most the timeout
ROUTE_MISSING = (404, 405)


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
            except ConnectionFailed as exc:
                raise Retryable(self._unreachable(str(exc))) from None
            except BadAnswer as exc:
                raise TeacherProtocolError(self.name, f"answered badly: {exc}") from None
            status, raw, retry_after = answer.status, answer.body, answer.headers.get("retry-after")
        else:
            status, raw, retry_after = await self._post_aiohttp(url, body)
        if status >= 400:
            error = TeacherHTTPError(
                self.name, f"HTTP {status}: {_excerpt(raw)}", http_status=status
            )
            if is_retryable_status(status):
                raise Retryable(error, parse_retry_after(retry_after))
            raise error
        return self._object(raw)

    async def _post_aiohttp(self, url: str, body: dict[str, Any]) -> tuple[int, bytes, str | None]:
        try:
            async with self.client().post(
                url, data=orjson.dumps(body), headers=self._with_routing()
            ) as response:
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
