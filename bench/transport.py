"""An experiment: httpx requests carried by aiohttp instead of httpcore.

`OpenAICompatTeacher` accepts an ``httpx.AsyncClient``; giving it one whose transport is
`AiohttpTransport` keeps the client code as it is and swaps only the connection pool and
HTTP/1.1 machinery underneath. ``python -m bench --teacher-transport aiohttp`` uses it in
the in-process arms, to measure what the transport costs. Not for production use: no
streaming, no proxies, no HTTP/2.
"""

from __future__ import annotations

import aiohttp
import httpx

# aiohttp has already undone these; httpx must not undo them again.
DROP = frozenset({"content-encoding", "content-length", "transfer-encoding"})


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Send httpx requests through one aiohttp session (keep-alive pool of `limit`)."""

    def __init__(self, limit: int = 1024, timeout_s: float = 600.0):
        self._limit = limit
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._limit)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._open()
        body = await request.aread()
        headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() != "host"]
        try:
            async with session.request(
                request.method, str(request.url), data=body, headers=headers
            ) as response:
                content = await response.read()
                return httpx.Response(
                    response.status,
                    headers=[(k, v) for k, v in response.headers.items() if k.lower() not in DROP],
                    content=content,
                    request=request,
                )
        except aiohttp.ClientConnectionError as error:
            raise httpx.ConnectError(str(error), request=request) from error
        except TimeoutError as error:
            raise httpx.ReadTimeout(str(error), request=request) from error

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def aiohttp_client(limit: int, timeout_s: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=AiohttpTransport(limit, timeout_s), timeout=httpx.Timeout(timeout_s)
    )
