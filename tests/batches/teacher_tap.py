"""A recording pass-through in front of the REAL local teacher (not a fake: every call is
forwarded to it and answered by it). It notes when each teacher call starts and ends and
which prompt it carried, so tests can count teacher calls per batch line and see that none
starts after a cancel. A test can also hold back the calls that carry a chosen text, so a
decode is certain to be in flight (and not yet done) when the test acts on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}


@dataclass
class Call:
    path: str
    body: str
    started: float
    ended: float | None = None
    status: int | None = None
    aborted: bool = False


@dataclass
class TeacherTap:
    upstream: str  # the real teacher's base URL, ``http://127.0.0.1:PORT/v1``
    calls: list[Call] = field(default_factory=list)
    port: int = 0
    held: frozenset[str] = frozenset()  # calls whose body mentions one of these wait here

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def in_flight(self) -> int:
        return sum(1 for c in list(self.calls) if c.ended is None)

    def calls_mentioning(self, text: str) -> list[Call]:
        return [c for c in list(self.calls) if text in c.body]

    def wait_for_call(self, text: str, within_s: float = 120.0) -> None:
        """Until a call that mentions ``text`` has reached the tap."""
        deadline = time.monotonic() + within_s
        while not self.calls_mentioning(text):
            assert time.monotonic() < deadline, f"no call mentioned {text!r} in {within_s} s"
            time.sleep(0.05)

    @contextlib.contextmanager
    def holding(self, text: str) -> Iterator[None]:
        """Inside the block, every call that mentions ``text`` waits at the tap, unanswered."""
        self.held = self.held | {text}
        try:
            yield
        finally:
            self.held = self.held - {text}

    async def _wait_while_held(self, call: Call) -> None:
        while any(text in call.body for text in self.held):
            await asyncio.sleep(0.05)

    def start(self) -> TeacherTap:
        ready = threading.Event()
        self.loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self._start())
            ready.set()
            self.loop.run_forever()

        threading.Thread(target=serve, name="teacher-tap", daemon=True).start()
        ready.wait(10)
        return self

    async def _start(self) -> None:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600))
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self.runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        call = Call(request.path, body.decode("utf-8", "replace"), time.time())
        self.calls.append(call)
        url = self.upstream.removesuffix("/v1") + request.path_qs
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        try:
            await self._wait_while_held(call)
            async with self.session.request(
                request.method, url, data=body, headers=headers
            ) as answer:
                payload = await answer.read()
                call.status = answer.status
                self._answered(payload)
                kind = answer.headers.get("Content-Type", "application/json")
                return web.Response(
                    body=payload, status=answer.status, content_type=kind.split(";")[0]
                )
        except asyncio.CancelledError:
            call.aborted = True
            raise
        finally:
            call.ended = time.time()

    def _answered(self, payload: bytes) -> None:
        """Called with each answer the teacher gave, before it is passed on."""

    def stop(self) -> None:
        async def shut() -> None:
            await self.runner.cleanup()
            await self.session.close()

        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
