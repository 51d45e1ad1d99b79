"""A FAKE teacher that fails every call and quotes what it was sent: its Authorization
header, its key alone, the URL it was called on. A real teacher cannot be made to leak a key
on demand; the secrets test needs one that does."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web


class EchoAuthFakeTeacher:
    def __init__(self, status: int = 500) -> None:
        self.status = status
        self.calls = 0
        self.port = 0
        self.runner: web.AppRunner | None = None

    def start_in_thread(self) -> str:
        ready = threading.Event()
        self.loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self._start())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, name="echo-teacher", daemon=True)
        self.thread.start()
        ready.wait(10)
        return f"http://127.0.0.1:{self.port}/v1"

    def stop_thread(self) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._echo)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def _echo(self, request: web.Request) -> web.Response:
        self.calls += 1
        header = request.headers.get("Authorization", "")
        key = header.partition(" ")[2]
        text = (
            f'{{"error": {{"message": "rejected Authorization: {header} (key {key}) '
            f'at {request.url}", "key": "{key}"}}}}'
        )
        return web.Response(status=self.status, text=text, content_type="application/json")
