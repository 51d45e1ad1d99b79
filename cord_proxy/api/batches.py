"""The Files and Batches route family in the app: its routes (cord_proxy/batches/routes.py),
its service, and the batch worker, run while the app runs."""

from __future__ import annotations

from aiohttp import web

from cord_proxy.batches.routes import ROUTES, SERVICE, BatchService
from cord_proxy.data.sink import TraceSink
from cord_proxy.metrics import Metrics
from cord_proxy.runtime import Runtime


def install_batches(
    app: web.Application, runtime: Runtime, sink: TraceSink | None, metrics: Metrics
) -> None:
    """Add the Files and Batches routes, and run the batch worker while the app runs; batch
    decodes count in `metrics` as the chat completions' do."""
    service = BatchService(runtime.config.batches, runtime, sink, metrics)
    app[SERVICE] = service
    app.add_routes(ROUTES)

    async def start(_: web.Application) -> None:
        service.worker.start()

    async def stop(_: web.Application) -> None:
        await service.worker.stop()
        await service.store.close()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
