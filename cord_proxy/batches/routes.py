"""The OpenAI Files and Batches routes, and the service they share (its store, file area and
worker); the app installs them (cord_proxy/api/batches.py).

Files and batches sit behind the server's API keys (its auth covers ``/v1/``). With
``[batches] owners`` in the config, a key sees only the files and batches it created; without
it, everything is shared by every key.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any, Literal

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cord_proxy.auth import KeyOwners
from cord_proxy.batches.files import FileArea, file_object, receive_upload
from cord_proxy.batches.runner import BatchWorker, Context, RunSettings
from cord_proxy.batches.store import Row, Store
from cord_proxy.config import BatchesConfig
from cord_proxy.data.sink import TraceSink
from cord_proxy.errors import (
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    RequestTooLargeError,
    field_problems,
    format_validation_error,
)
from cord_proxy.metrics import Metrics
from cord_proxy.protocol import param_name
from cord_proxy.redact import without_echoed_bytes
from cord_proxy.runtime import Runtime

MAX_CREATE_BODY = 65536
SERVICE: web.AppKey[BatchService] = web.AppKey("batches")
ROUTES = web.RouteTableDef()


def data_dir(config: BatchesConfig) -> Path:
    """``[batches] data_dir``, or ``$XDG_DATA_HOME/cord-proxy`` (``~/.local/share/cord-proxy``)."""
    if config.data_dir:
        return Path(config.data_dir).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "cord-proxy"


class CreateBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_file_id: str = Field(min_length=1, max_length=64)
    endpoint: Literal["/v1/chat/completions", "/v1/responses"]
    completion_window: Literal["24h"]
    metadata: dict[str, str] | None = None

    @field_validator("metadata")
    @classmethod
    def _small(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value and (
            len(value) > 16 or any(len(k) > 64 or len(v) > 512 for k, v in value.items())
        ):
            raise ValueError("at most 16 pairs, keys of 64 and values of 512 characters")
        return value


class BatchService:
    """The store, the file area, the worker and the owners of the keys."""

    def __init__(
        self, config: BatchesConfig, runtime: Runtime, sink: TraceSink | None, metrics: Metrics
    ):
        root = data_dir(config)
        self.config = config
        self.store = Store(root / "batches.sqlite")
        self.area = FileArea(root)
        self.owners = KeyOwners(config.owners)
        server = runtime.config.server
        settings = RunSettings(
            concurrency=config.concurrency,
            retries=config.retries,
            max_line_bytes=server.max_body_bytes,
            timeout_s=server.request_timeout,
        )
        context = Context(
            self.store,
            self.area,
            runtime,
            settings,
            asyncio.Semaphore(config.concurrency),
            sink,
            metrics,
        )
        self.worker = BatchWorker(context, root / "worker.lock")

    def owner(self, request: web.Request) -> str:
        return self.owners.owner(request)

    def scope(self, request: web.Request) -> str | None:
        """The owner whose things this request may see; None: everything (no owners set)."""
        return self.owners.owner(request) if self.owners.enabled else None

    async def batch_object(self, row: Row) -> dict[str, Any]:
        counts = await self.store.counts(row["id"])
        done, failed = counts.get("done", 0), counts.get("failed", 0)
        stamps = ("in_progress", "finalizing", "completed", "failed", "expired", "cancelling")
        return {
            "id": row["id"],
            "object": "batch",
            "endpoint": row["endpoint"],
            "errors": json.loads(row["errors"]) if row["errors"] else None,
            "input_file_id": row["input_file_id"],
            "completion_window": row["completion_window"],
            "status": row["status"],
            "output_file_id": row["output_file_id"],
            "error_file_id": row["error_file_id"],
            "created_at": row["created_at"],
            "expires_at": row["expires_at"],
            **{f"{s}_at": row.get(f"{s}_at") for s in stamps},
            "cancelled_at": row["cancelled_at"],
            "request_counts": {"total": row["total"], "completed": done, "failed": failed},
            "metadata": json.loads(row["metadata"]) if row["metadata"] else None,
        }


def _service(request: web.Request) -> BatchService:
    return request.app[SERVICE]


def _limit(request: web.Request, default: int = 20, most: int = 10000) -> int:
    text = request.query.get("limit", str(default))
    if not text.isdigit() or not 1 <= int(text) <= most:
        raise InvalidRequestError(f"'limit' must be an integer from 1 to {most}", param="limit")
    return int(text)


def _page(data: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    shown = data[:limit]
    return {
        "object": "list",
        "data": shown,
        "first_id": shown[0]["id"] if shown else None,
        "last_id": shown[-1]["id"] if shown else None,
        "has_more": len(data) > limit,
    }


# --- files -----------------------------------------------------------------------------------


@ROUTES.post("/v1/files")
async def create_file(request: web.Request) -> web.Response:
    service = _service(request)
    try:
        upload = await receive_upload(request, service.area, service.config.max_upload_bytes)
    except (ValueError, AssertionError, LookupError, RuntimeError, HttpProcessingError) as error:
        reason = error.message if isinstance(error, HttpProcessingError) else str(error)
        raise InvalidRequestError(
            f"malformed multipart body: {without_echoed_bytes(reason)}"[:300]
        ) from None
    row = upload.row(service.owner(request))
    try:
        await service.store.add_file(row)
    except BaseException:
        service.area.remove(upload.file_id)
        raise
    return web.json_response(file_object(row))


@ROUTES.get("/v1/files")
async def list_files(request: web.Request) -> web.Response:
    service, limit = _service(request), _limit(request, 10000)
    order = request.query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequestError("'order' must be 'asc' or 'desc'", param="order")
    rows = await service.store.list_files(
        service.scope(request),
        request.query.get("purpose"),
        request.query.get("after"),
        limit + 1,
        order,
    )
    return web.json_response(_page([file_object(r) for r in rows], limit))


async def _file(request: web.Request) -> Row:
    service = _service(request)
    row = await service.store.get_file(request.match_info["file_id"], service.scope(request))
    if row is None:
        raise NotFoundError(f"No such File object: {request.match_info['file_id'][:100]}")
    return row


@ROUTES.get("/v1/files/{file_id}")
async def get_file(request: web.Request) -> web.Response:
    return web.json_response(file_object(await _file(request)))


@ROUTES.get("/v1/files/{file_id}/content")
async def file_content(request: web.Request) -> web.StreamResponse:
    row = await _file(request)
    path = _service(request).area.path(row["id"])
    if not path.is_file():
        raise NotFoundError(f"the content of {row['id']} is gone")
    return web.FileResponse(path, headers={"Content-Type": "application/octet-stream"})


@ROUTES.delete("/v1/files/{file_id}")
async def delete_file(request: web.Request) -> web.Response:
    row, service = await _file(request), _service(request)
    await service.store.delete_file(row["id"])
    service.area.remove(row["id"])
    return web.json_response({"id": row["id"], "object": "file", "deleted": True})


# --- batches ---------------------------------------------------------------------------------


async def _create_body(request: web.Request) -> CreateBatch:
    raw = await request.content.read(MAX_CREATE_BODY + 1)
    if len(raw) > MAX_CREATE_BODY:
        raise RequestTooLargeError(f"request body is over the limit of {MAX_CREATE_BODY} bytes")
    try:
        return CreateBatch.model_validate_json(raw)
    except ValidationError as error:
        param = param_name(field_problems(error)[0].location)
        message = "; ".join(format_validation_error(error))
        raise InvalidRequestError(f"invalid batch: {message}"[:500], param=param) from None


@ROUTES.post("/v1/batches")
async def create_batch(request: web.Request) -> web.Response:
    service = _service(request)
    body = await _create_body(request)
    owner = service.owner(request)
    source = await service.store.get_file(body.input_file_id, service.scope(request))
    if source is None or source["purpose"] != "batch":
        raise InvalidRequestError(
            f"no file {body.input_file_id[:100]!r} with purpose 'batch'", param="input_file_id"
        )
    active = await service.store.active_batches()
    if len(active) >= service.config.max_active_batches:
        raise RateLimitError(
            f"{len(active)} batches are in progress (limit {service.config.max_active_batches})"
        )
    now = int(time.time())
    row: Row = {
        "id": f"batch_{secrets.token_hex(12)}",
        "owner": owner,
        "input_file_id": body.input_file_id,
        "endpoint": body.endpoint,
        "completion_window": body.completion_window,
        "metadata": json.dumps(body.metadata) if body.metadata is not None else None,
        "status": "validating",
        "created_at": now,
        "expires_at": now + service.config.completion_window_s,
    }
    await service.store.add_batch(row)
    service.worker.wake()
    return web.json_response(await service.batch_object(await _batch_row(request, row["id"])))


async def _batch_row(request: web.Request, batch_id: str) -> Row:
    service = _service(request)
    row = await service.store.get_batch(batch_id, service.scope(request))
    if row is None:
        raise NotFoundError(f"No such Batch object: {batch_id[:100]}")
    return row


@ROUTES.get("/v1/batches/{batch_id}")
async def get_batch(request: web.Request) -> web.Response:
    row = await _batch_row(request, request.match_info["batch_id"])
    return web.json_response(await _service(request).batch_object(row))


@ROUTES.get("/v1/batches")
async def list_batches(request: web.Request) -> web.Response:
    service, limit = _service(request), _limit(request, 20, 100)
    rows = await service.store.list_batches(
        service.scope(request), request.query.get("after"), limit + 1
    )
    return web.json_response(_page([await service.batch_object(r) for r in rows], limit))


@ROUTES.post("/v1/batches/{batch_id}/cancel")
async def cancel_batch(request: web.Request) -> web.Response:
    service = _service(request)
    row = await _batch_row(request, request.match_info["batch_id"])
    if row["status"] not in ("cancelling", "cancelled"):
        if not await service.store.move(row["id"], "cancelling", ["validating", "in_progress"]):
            raise InvalidRequestError(
                f"cannot cancel a batch that is {row['status']}", param="batch_id"
            )
        await service.worker.cancel(row["id"])
    return web.json_response(await service.batch_object(await _batch_row(request, row["id"])))
