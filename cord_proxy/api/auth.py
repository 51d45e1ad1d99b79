"""Which requests need one of the server's API keys, and the middleware that asks for it.

The OpenAI routes (``/v1/``) always do, ``/metrics`` unless ``[server] metrics_public``; the
page's APIs check the same keys themselves (cord_proxy/ui/routes.py). The keys and the
check are `cord_proxy.auth.ApiKeys`.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Middleware

from cord_proxy.api.errors import Handler
from cord_proxy.api.state import RUNTIME
from cord_proxy.auth import ApiKeys


def needs_key(request: web.Request) -> bool:
    if request.path.startswith("/v1/"):
        return True
    return request.path == "/metrics" and not request.app[RUNTIME].config.server.metrics_public


def auth_middleware(keys: ApiKeys) -> Middleware:
    """Refuse, with the 401 error object, a request that needs a key and sends no good one."""

    @web.middleware
    async def check_key(request: web.Request, handler: Handler) -> web.StreamResponse:
        if keys.required and needs_key(request):
            keys.check(request)
        return await handler(request)

    return check_key
