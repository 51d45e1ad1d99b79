"""The app factory: a runtime (and a dataset sink) in, the proxy's aiohttp application out.

`create_app` assembles the middlewares, outermost first (the request's id, the access log
and counters, errors as OpenAI objects, the API keys), every route family and the cleanup
of the runtime. `new_app` is what every app of cord-proxy starts from, ``cord-proxy view``'s
included: requests with ids, in their log lines and their ``x-request-id`` header.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from cord_proxy.api.access_log import access_middleware
from cord_proxy.api.admission import send_rate_limits
from cord_proxy.api.attach import Decodes
from cord_proxy.api.auth import auth_middleware
from cord_proxy.api.batches import install_batches
from cord_proxy.api.chat import chat_completions
from cord_proxy.api.errors import errors_middleware
from cord_proxy.api.metrics import add_metrics_route
from cord_proxy.api.models import add_model_routes
from cord_proxy.api.request_id import request_id_middleware, send_request_id
from cord_proxy.api.responses import install_responses
from cord_proxy.api.state import CHAT_ROUTE, DECODES, METRICS, RUNTIME, SINK
from cord_proxy.auth import ApiKeys
from cord_proxy.data.sink import TraceSink
from cord_proxy.metrics import Metrics
from cord_proxy.redact import remember_endpoint
from cord_proxy.runtime import Runtime
from cord_proxy.ui import add_ui_routes


def new_app(middlewares: Sequence[Middleware], **kwargs: Any) -> web.Application:
    """An app whose every request has an id; `middlewares` run inside the one that sets it."""
    app = web.Application(middlewares=[request_id_middleware, *middlewares], **kwargs)
    app.on_response_prepare.append(send_request_id)
    return app


def create_app(runtime: Runtime, sink: TraceSink | None = None) -> web.Application:
    config = runtime.config
    app = new_app(
        [access_middleware, errors_middleware, auth_middleware(ApiKeys(config.server.api_keys))],
        client_max_size=config.server.max_body_bytes,
    )
    for teacher in config.teachers:
        remember_endpoint(teacher.base_url)
    app[RUNTIME] = runtime
    app[METRICS] = Metrics()
    app.on_response_prepare.append(send_rate_limits)
    if sink is not None:
        app[SINK] = sink
    app[DECODES] = Decodes(config.server.detach_grace_s, app[METRICS].observe_detach)
    app.router.add_post(CHAT_ROUTE, chat_completions)
    add_model_routes(app)
    add_metrics_route(app)
    install_batches(app, runtime, sink, app[METRICS])
    install_responses(app)
    add_ui_routes(app, config, app[METRICS])

    async def close_runtime(_: web.Application) -> None:
        await app[DECODES].aclose()  # the decodes no client follows, before their teachers
        await runtime.aclose()

    app.on_cleanup.append(close_runtime)
    return app
