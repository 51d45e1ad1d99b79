"""The web page at ``/ui``: its static files and the small JSON APIs it reads.

Every ``/ui/api/`` route but ``auth`` asks for one of the server's keys when keys are set,
and nothing they answer holds a teacher's ``api_key`` or the value of an ``env:``
reference. The page's own files hold no secret and are served to anyone.
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
from aiohttp import web

from cord_proxy.auth import ApiKeys
from cord_proxy.config import CordConfig, ensemble_scorers
from cord_proxy.errors import CordError, InvalidRequestError
from cord_proxy.metrics import Metrics
from cord_proxy.runtime import Reachability
from cord_proxy.ui.index import TraceIndex
from cord_proxy.ui.pairs import read_pairs
from cord_proxy.ui.query import file_stats, list_traces, parse_query, read_record

READY_TIMEOUT_S = 2.0
READY_CACHE_S = 1.5
STATIC_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class TraceNotFoundError(
    CordError, status=404, error_type="invalid_request_error", code="trace_not_found"
):
    """No trace file, or no trace at that line."""


@dataclass
class UiState:
    """What the page's APIs read: the config and counters of a proxy, or a trace file alone."""

    keys: ApiKeys
    config: CordConfig | None
    metrics: Metrics | None
    index: TraceIndex | None
    reachability: Reachability | None = None


UI_STATE = web.AppKey("ui_state", UiState)
ROUTES = web.RouteTableDef()


@functools.cache
def _static_files() -> dict[str, tuple[bytes, str]]:
    root = resources.files("cord_proxy.ui") / "static"
    files: dict[str, tuple[bytes, str]] = {}
    for entry in root.iterdir():
        suffix = Path(entry.name).suffix
        if entry.is_file() and suffix in STATIC_TYPES:
            files[entry.name] = (entry.read_bytes(), STATIC_TYPES[suffix])
    return files


def add_ui_routes(
    app: web.Application,
    config: CordConfig | None,
    metrics: Metrics | None,
    trace_file: str | Path | None = None,
) -> None:
    """Serve the page on `app`: for a running proxy (config, metrics) or a file alone."""
    keys = ApiKeys(config.server.api_keys if config is not None else ())
    if config is not None and trace_file is None and config.dataset.path:
        trace_file = config.dataset.path
    index = TraceIndex(Path(trace_file)) if trace_file is not None else None
    reachability = Reachability(config.teachers, READY_CACHE_S, READY_TIMEOUT_S) if config else None
    app[UI_STATE] = UiState(keys, config, metrics, index, reachability)
    _static_files()  # read at start, not at the first request
    app.add_routes(ROUTES)


@ROUTES.get("/ui")
@ROUTES.get("/ui/")
async def page(request: web.Request) -> web.Response:
    return _static("index.html")


@ROUTES.get("/ui/static/{name}")
async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in _static_files():
        raise web.HTTPNotFound()
    return _static(name)


def _static(name: str) -> web.Response:
    body, content_type = _static_files()[name]
    return web.Response(
        body=body, content_type=content_type, charset="utf-8", headers=SECURITY_HEADERS
    )


def _json(data: Any) -> web.Response:
    body = orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY)
    return web.Response(
        body=body, content_type="application/json", headers={"Cache-Control": "no-store"}
    )


def _state(request: web.Request) -> UiState:
    state = request.app[UI_STATE]
    state.keys.check(request)
    return state


@ROUTES.get("/ui/api/auth")
async def auth_status(request: web.Request) -> web.Response:
    """Whether a key is needed and whether the one sent is good; never a 401."""
    keys = request.app[UI_STATE].keys
    return _json({"auth_required": keys.required, "authorized": keys.accepts(request)})


def _ensemble(config: CordConfig, name: str) -> dict[str, Any]:
    ensemble = next(e for e in config.ensembles if e.name == name)
    defaults = ensemble.defaults.model_dump(mode="json")
    return {
        "name": ensemble.name,
        "teachers": list(ensemble.teachers),
        "scorers": list(ensemble_scorers(config, ensemble)),
        "defaults": defaults,
    }


@ROUTES.get("/ui/api/info")
async def info(request: web.Request) -> web.Response:
    state = _state(request)
    config = state.config
    return _json(
        {
            "mode": "proxy" if config is not None else "view",
            "ensembles": [_ensemble(config, e.name) for e in config.ensembles] if config else [],
            "teachers": [t.name for t in config.teachers] if config else [],
            "trace_file": state.index.path.name if state.index is not None else None,
        }
    )


def _index(state: UiState) -> TraceIndex:
    if state.index is None:
        raise TraceNotFoundError("this server has no trace file ([dataset] path is not set)")
    return state.index


@ROUTES.get("/ui/api/traces")
async def traces(request: web.Request) -> web.Response:
    index = _index(_state(request))
    query = parse_query(request.query)
    return _json(await asyncio.to_thread(list_traces, index, query))


@ROUTES.get("/ui/api/traces/{line}")
async def trace(request: web.Request) -> web.Response:
    index = _index(_state(request))
    raw = request.match_info["line"]
    found = await asyncio.to_thread(read_record, index, int(raw)) if raw.isdigit() else None
    if found is None:
        raise TraceNotFoundError(f"no trace at line {raw!r}", param="line")
    return _json(found)


@ROUTES.get("/ui/api/traces/{line}/pairs")
async def pairs(request: web.Request) -> web.Response:
    """The preference pairs of one step (`step`, from 1) of a record's search tree."""
    index = _index(_state(request))
    raw, step = request.match_info["line"], request.query.get("step", "1")
    if not step.isdigit():
        raise InvalidRequestError("'step' must be a positive integer", param="step")
    found = (
        await asyncio.to_thread(read_pairs, index, int(raw), int(step)) if raw.isdigit() else None
    )
    if found is None:
        raise TraceNotFoundError(f"no trace at line {raw!r}", param="line")
    return _json(found.to_json())


@ROUTES.get("/ui/api/stats")
async def stats(request: web.Request) -> web.Response:
    index = _index(_state(request))
    return _json(await asyncio.to_thread(file_stats, index))


def _endpoint(url: str | None) -> str | None:
    """The teacher's URL without credentials or a query: nothing secret leaves."""
    if url is None:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@ROUTES.get("/ui/api/teachers")
async def teachers(request: web.Request) -> web.Response:
    state = _state(request)
    if state.config is None or state.metrics is None or state.reachability is None:
        return _json({"teachers": [], "in_flight": 0})
    config, metrics = state.config, state.metrics
    reachable = await state.reachability.get()
    ready = [reachable[t.name] for t in config.teachers]
    rows = [
        {
            "name": t.name,
            "kind": t.kind,
            "model": t.model,
            "endpoint": _endpoint(t.base_url),
            "roles": sorted(t.roles),
            "ready": ok,
            **metrics.teacher_stats(t.name),
        }
        for t, ok in zip(config.teachers, ready, strict=True)
    ]
    return _json({"teachers": rows, "in_flight": metrics.in_flight, "checked_at": time.time()})
