"""`cord-proxy view traces.jsonl`: the web page over one trace file, without teachers."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from aiohttp import web

from cord_proxy.api.app import new_app
from cord_proxy.api.errors import errors_middleware
from cord_proxy.api.lifecycle import run_until_stopped, serve
from cord_proxy.ui.routes import add_ui_routes

VIEW_PORT = 8402  # beside the proxy's 8400 and the local teacher's 8401, so all three can run


def view_app(path: Path) -> web.Application:
    app = new_app([errors_middleware])
    add_ui_routes(app, None, None, trace_file=path)

    async def to_page(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/ui")

    app.router.add_get("/", to_page)
    return app


async def _view(path: Path, host: str, port: int) -> None:
    runner = await serve(view_app(path), host, port)
    print(f"cord-proxy view: http://{host}:{port}/ui ({path}); Ctrl-C stops", flush=True)
    await run_until_stopped(runner)


def run_view(path: str, host: str, port: int) -> int:
    file = Path(path)
    if not file.is_file():
        print(f"cord-proxy view: {path} is not a file", file=sys.stderr)
        return 2
    asyncio.run(_view(file, host, port))
    return 0
