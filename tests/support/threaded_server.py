"""An aiohttp app served from its own thread and event loop, for the FAKE teacher servers.

Synchronous test code (the openai SDK, httpx, a subprocess) never blocks it. A subclass
builds its app in `make_app`.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiohttp import web


class ThreadedServer:
    thread_name = "fake-server"
    runner_options: dict[str, Any] = {}  # noqa: RUF012  (read only)

    def __init__(self) -> None:
        self.runner: web.AppRunner | None = None
        self.port = 0

    def make_app(self) -> web.Application:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start_in_thread(self) -> str:
        ready = threading.Event()
        self.loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.start())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, name=self.thread_name, daemon=True)
        self.thread.start()
        ready.wait(10)
        return self.base_url

    def stop_thread(self) -> None:
        asyncio.run_coroutine_threadsafe(self.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def __enter__(self) -> str:
        """``with Server() as url:`` serves in a thread for the block."""
        return self.start_in_thread()

    def __exit__(self, *exc: object) -> None:
        self.stop_thread()

    async def start(self) -> str:
        self.runner = web.AppRunner(self.make_app(), **self.runner_options)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self.base_url

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
