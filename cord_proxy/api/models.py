"""The models and health routes: ``/v1/models`` lists the ensembles and ``/v1/models/{model}``
gives one (the openai SDK's ``models.retrieve``), ``/health`` says the process answers,
``/health/ready`` that every teacher answers and no breaker is open."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from cord_proxy.api.state import RUNTIME


def model_object(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "cord-proxy"}


async def list_models(request: web.Request) -> web.Response:
    created = int(time.time())
    data = [model_object(name, created) for name in request.app[RUNTIME].ensemble_names]
    return web.json_response({"object": "list", "data": data})


async def retrieve_model(request: web.Request) -> web.Response:
    """One ensemble as a model; an unknown name is a 404 ``model_not_found``."""
    ensemble = request.app[RUNTIME].ensemble(request.match_info["model"])
    return web.json_response(model_object(ensemble.name, int(time.time())))


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    """Ready when every teacher answers and no teacher's circuit breaker is open."""
    readiness = await request.app[RUNTIME].readiness()
    return web.json_response(
        {
            "status": "ready" if readiness.ready else "not_ready",
            "teachers": readiness.teachers,
            "breakers": readiness.breakers,
        },
        status=200 if readiness.ready else 503,
    )


def add_model_routes(app: web.Application) -> None:
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model}", retrieve_model)
    app.router.add_get("/health", health)
    app.router.add_get("/health/ready", ready)
