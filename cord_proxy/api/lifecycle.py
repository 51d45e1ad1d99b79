"""The server process's lifecycle: start serving an app, run until SIGINT or SIGTERM, clean up.

``cord-proxy serve`` and ``up`` (cli.py) and ``cord-proxy view`` (ui/view.py) run their apps
through here: the connections are the guarded ones (connections.py), and a request whose
client disconnects has its handler cancelled.
"""

from __future__ import annotations

import asyncio
import signal

from aiohttp import web

from cord_proxy.api.connections import GuardedRunner
from cord_proxy.api.state import METRICS, RUNTIME
from cord_proxy.config import ServerConfig
from cord_proxy.metrics import Metrics

LINGERING_S = 2.0


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start serving; cancel the handler of a request whose client disconnects.

    An app without a runtime (`cord-proxy view`) gets the default server settings.
    """
    settings = app[RUNTIME].config.server if RUNTIME in app else ServerConfig()
    metrics = app[METRICS] if METRICS in app else Metrics()
    runner = GuardedRunner(
        app,
        header_timeout=settings.header_timeout,
        on_rejected=metrics.observe_rejected,
        handler_cancellation=True,
        access_log=None,
        keepalive_timeout=settings.keepalive_timeout,
        lingering_time=LINGERING_S,
    )
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def run_until_stopped(runner: web.AppRunner) -> None:
    """Serve until SIGINT or SIGTERM, then clean up."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
