"""The server process's lifecycle: start serving an app, run until SIGINT or SIGTERM, clean up.

``cord-proxy serve`` and ``up`` (cli.py) and ``cord-proxy view`` (ui/view.py) run their apps
through here: the connections are the guarded ones (connections.py), and a request whose
client disconnects has its handler cancelled. An address it cannot listen on (a port in
use) is a `ListenError`, which the commands report in one line.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket

from aiohttp import web

from cord_proxy.api.connections import GuardedRunner
from cord_proxy.api.state import METRICS, RUNTIME
from cord_proxy.config import ServerConfig
from cord_proxy.gc_settings import settle_start_up
from cord_proxy.metrics import Metrics

LINGERING_S = 2.0


class ListenError(Exception):
    """The server cannot listen on ``host:port``: the port is in use, or the host not ours."""

    def __init__(self, host: str, port: int, cause: OSError) -> None:
        super().__init__(f"{host}:{port}: {cause}")
        self.host, self.port = host, port
        self.in_use = cause.errno == errno.EADDRINUSE
        # asyncio's bind errors carry the address in strerror; a lookup's errno is negative
        code = cause.errno or 0
        self.reason = os.strerror(code) if code > 0 else (cause.strerror or str(cause))

    def explain(self, flag: str) -> str:
        """One line for the user, naming the option (`flag`) that sets the port."""
        if self.in_use:
            return f"port {self.port} on {self.host} is already in use; choose another with {flag}"
        return f"cannot listen on {self.host}:{self.port} ({self.reason}); check --host and {flag}"


def refuse_taken_port(host: str, port: int) -> None:
    """`ListenError` now if ``host:port`` cannot be bound, before a slow start that needs it.

    Binds as the server will (``SO_REUSEADDR``, every address the host resolves to), then
    lets go."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in addresses:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:  # as asyncio's server binds it
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                probe.bind(address)
    except OSError as error:
        raise ListenError(host, port, error) from None


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start serving; cancel the handler of a request whose client disconnects.

    An app without a runtime (`cord-proxy view`) gets the default server settings. This ends
    a server process's start-up: the garbage collector is set as gc_settings.py says.
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
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as error:
        await runner.cleanup()
        raise ListenError(host, port, error) from None
    settle_start_up()
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
