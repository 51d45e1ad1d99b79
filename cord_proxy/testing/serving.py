"""A FAKE HTTP endpoint on a free loopback port, for fakes of teachers in tests and benches."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import web

from cord_proxy.local.vllm_plugin.cord_spans_wire import ROUTE as SPANS_ROUTE

Handle = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serving_posts(handle: Handle, *, spans: bool = False) -> AsyncIterator[str]:
    """Serve every POST with `handle`; yields the endpoint's ``/v1`` base URL. As on a stock
    vLLM server, cord-proxy's spans route is not found (404) unless `spans` is set."""
    app = web.Application()
    if not spans:
        app.router.add_post(SPANS_ROUTE, _not_found)
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    finally:
        await runner.cleanup()


async def _not_found(_request: web.Request) -> web.Response:
    return web.json_response({"detail": "Not Found"}, status=404)
