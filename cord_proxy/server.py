"""The aiohttp server: OpenAI routes, errors as OpenAI error objects, SSE, disconnect cancels."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import ValidationError

from cord_proxy.completion import ChunkWriter, completion_body, completion_id, provenance, usage_of
from cord_proxy.config import CordConfig, TeacherConfig, resolve_secret
from cord_proxy.dataset import trace_record
from cord_proxy.decoding.beam import DecodeProgress
from cord_proxy.decoding.trace import DecodeResult
from cord_proxy.errors import (
    AuthenticationError,
    CordError,
    InvalidRequestError,
    RateLimitError,
    RequestTooLargeError,
    UnsupportedFieldError,
)
from cord_proxy.metrics import Metrics
from cord_proxy.protocol import ChatCompletionRequest, unsupported_fields
from cord_proxy.runtime import DecodePlan, Runtime, run_decode
from cord_proxy.teachers.check import listed_models
from cord_proxy.ui import add_ui_routes

log = logging.getLogger("cord_proxy.server")

RUNTIME = web.AppKey("runtime", Runtime)
METRICS = web.AppKey("metrics", Metrics)
KEEPALIVE_S = 15.0
READY_TIMEOUT_S = 5.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TraceSink = Callable[[dict[str, Any]], Awaitable[None]]
SINK: web.AppKey[TraceSink] = web.AppKey("sink")


def error_response(error: CordError) -> web.Response:
    return web.json_response(error.to_openai(), status=error.status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes an OpenAI error object; no traceback ever reaches a client."""
    try:
        return await handler(request)
    except CordError as error:
        return error_response(error)
    except web.HTTPRequestEntityTooLarge:
        return error_response(RequestTooLargeError("request body is too large"))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kind = "not_found" if exc.status == 404 else "invalid_request_error"
        body = {"error": {"message": exc.reason, "type": kind, "param": None, "code": None}}
        return web.json_response(body, status=exc.status)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error", extra={"path": request.path})
        body = {
            "error": {
                "message": "internal error",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        }
        return web.json_response(body, status=500)


def auth_middleware(keys: list[str]) -> Middleware:
    @web.middleware
    async def check_key(request: web.Request, handler: Handler) -> web.StreamResponse:
        if keys and request.path.startswith("/v1/"):
            given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if not any(hmac.compare_digest(given.encode(), k.encode()) for k in keys):
                raise AuthenticationError(
                    "Incorrect or missing API key: send 'Authorization: Bearer <key>'"
                )
        return await handler(request)

    return check_key


async def read_body(request: web.Request) -> dict[str, Any]:
    limit = request.app[RUNTIME].config.server.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise RequestTooLargeError(f"request body is over the limit of {limit} bytes")
    raw = await request.read()
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidRequestError("request body is not valid UTF-8") from None
    except (ValueError, RecursionError) as error:
        raise InvalidRequestError(f"request body is not valid JSON: {error}"[:300]) from None
    if not isinstance(data, dict):
        raise InvalidRequestError("request body must be a JSON object")
    return data


def parse_request(body: dict[str, Any]) -> ChatCompletionRequest:
    refused = unsupported_fields(body)
    if refused:
        raise UnsupportedFieldError(
            f"'{refused[0]}' is not supported by cord-proxy", param=refused[0]
        )
    try:
        return ChatCompletionRequest.model_validate(body)
    except ValidationError as error:
        raise _validation_error(error) from None


def _validation_error(error: ValidationError) -> InvalidRequestError:
    first = error.errors()[0]
    param = ".".join(str(p) for p in first["loc"]) or None
    if first["type"] == "extra_forbidden":
        message = f"Unrecognized request argument supplied: {param}"
    else:
        message = f"Invalid value for '{param}': {first['msg'].removeprefix('Value error, ')}"
    return InvalidRequestError(message, param=param)


class RequestSlot:
    """Admission control: over the concurrency limit, a request gets a 429 at once."""

    def __init__(self, app: web.Application):
        self.metrics = app[METRICS]
        self.limit = app[RUNTIME].config.server.max_concurrent_requests

    def __enter__(self) -> RequestSlot:
        if self.metrics.in_flight >= self.limit:
            raise RateLimitError(
                f"too many concurrent requests (limit {self.limit}); retry shortly"
            )
        self.metrics.in_flight += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self.metrics.in_flight -= 1


async def chat_completions(request: web.Request) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        parsed = parse_request(await read_body(request))
        plan = request.app[RUNTIME].plan(parsed)
        with RequestSlot(request.app):
            handle = stream_completion if parsed.stream else whole_completion
            response = await handle(request, parsed, plan)
        status = response.status
        return response
    except CordError as error:
        status = error.status
        raise
    finally:
        elapsed = time.perf_counter() - started
        request.app[METRICS].observe_request("/v1/chat/completions", status, elapsed)
        log.info("request", extra={"status": status, "duration_s": round(elapsed, 4)})


async def _finish_decode(
    request: web.Request, plan: DecodePlan, result: DecodeResult, request_id: str
) -> None:
    request.app[METRICS].observe_decode(result.teachers)
    log.info(
        "decode finished",
        extra={
            "request_id": request_id,
            "ensemble": plan.ensemble,
            "wall_s": round(result.wall_s, 3),
            "steps": len(result.best.steps),
            "score": result.best.score,
            "teacher_failures": [f"{f.teacher}/{f.role}: {f.error}" for f in result.failures],
            "dropped": result.dropped,
        },
    )
    sink = request.app.get(SINK)
    if sink is None:
        return
    try:
        await sink(trace_record(request_id, plan, result))
    except OSError as error:
        log.error(
            "dataset sink failed; the trace is only in the response",
            extra={"request_id": request_id, "error": str(error)},
        )


async def whole_completion(
    request: web.Request, parsed: ChatCompletionRequest, plan: DecodePlan
) -> web.StreamResponse:
    request_id = completion_id()
    result = await run_decode(plan, request.app[RUNTIME].config.server.request_timeout)
    await _finish_decode(request, plan, result, request_id)
    body = completion_body(
        result,
        ensemble=plan.ensemble,
        n=parsed.n,
        reasoning_format=plan.reasoning_format,
        request_id=request_id,
    )
    return web.json_response(body)


async def stream_completion(
    request: web.Request, parsed: ChatCompletionRequest, plan: DecodePlan
) -> web.StreamResponse:
    request_id = completion_id()
    writer = ChunkWriter(request_id, plan.ensemble)
    inline = plan.reasoning_format == "inline"
    progress: asyncio.Queue[DecodeProgress] = asyncio.Queue()
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    timeout = request.app[RUNTIME].config.server.request_timeout
    decode: asyncio.Future[DecodeResult] = asyncio.ensure_future(
        run_decode(plan, timeout, progress.put_nowait)
    )
    try:
        await _send(response, writer.role(parsed.n))
        streamed = await _stream_certain_steps(response, writer, decode, progress, inline)
        result = decode.result()
        await _finish_decode(request, plan, result, request_id)
        await _stream_traces(response, writer, result, parsed.n, streamed, inline)
        cord = provenance(result, plan.ensemble, parsed.n)
        await _send(response, writer.finish(result.traces[: parsed.n], cord))
        if parsed.stream_options and parsed.stream_options.include_usage:
            await _send(response, writer.usage(usage_of(result, result.traces[: parsed.n])))
    except CordError as error:
        await _send(response, error.to_openai())
    except (ConnectionResetError, asyncio.CancelledError):
        raise
    except Exception:
        log.exception("stream failed", extra={"request_id": request_id})
        await _send(response, CordError("internal error").to_openai())
    finally:
        decode.cancel()
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def _stream_certain_steps(
    response: web.StreamResponse,
    writer: ChunkWriter,
    decode: asyncio.Future[DecodeResult],
    progress: asyncio.Queue[DecodeProgress],
    inline: bool,
) -> int:
    """Send each step once every live beam shares it; return how many were sent."""
    sent = 0
    while not (decode.done() and progress.empty()):
        getter: asyncio.Future[Any] = asyncio.ensure_future(progress.get())
        waiting: set[asyncio.Future[Any]] = {getter, decode}
        done, _ = await asyncio.wait(
            waiting, timeout=KEEPALIVE_S, return_when=asyncio.FIRST_COMPLETED
        )
        if getter not in done:
            getter.cancel()
            if not done:
                await response.write(b": keep-alive\n\n")
            continue
        update = getter.result()
        for chunk in writer.steps(0, update.certain_steps, first=sent == 0, inline=inline):
            await _send(response, chunk)
        sent += len(update.certain_steps)
    decode.result()
    return sent


async def _stream_traces(
    response: web.StreamResponse,
    writer: ChunkWriter,
    result: DecodeResult,
    n: int,
    streamed: int,
    inline: bool,
) -> None:
    for index, trace in enumerate(result.traces[:n]):
        already = streamed if index == 0 else 0
        for chunk in writer.steps(index, trace.steps[already:], first=already == 0, inline=inline):
            await _send(response, chunk)
        for chunk in writer.answer(index, trace, inline):
            await _send(response, chunk)


async def _send(response: web.StreamResponse, payload: dict[str, Any]) -> None:
    await response.write(b"data: " + json.dumps(payload).encode() + b"\n\n")


async def list_models(request: web.Request) -> web.Response:
    created = int(time.time())
    data = [
        {"id": name, "object": "model", "created": created, "owned_by": "cord-proxy"}
        for name in request.app[RUNTIME].ensemble_names
    ]
    return web.json_response({"object": "list", "data": data})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    config = request.app[RUNTIME].config
    checks = await asyncio.gather(*(_reachable(t) for t in config.teachers))
    teachers = {t.name: ok for t, ok in zip(config.teachers, checks, strict=True)}
    is_ready = all(teachers.values())
    return web.json_response(
        {"status": "ready" if is_ready else "not_ready", "teachers": teachers},
        status=200 if is_ready else 503,
    )


async def _reachable(teacher: TeacherConfig) -> bool:
    """A teacher with an endpoint answers its model list; a provider-only one counts as up."""
    if teacher.base_url is None:
        return True
    return await listed_models(teacher, timeout=READY_TIMEOUT_S) is not None


async def metrics(request: web.Request) -> web.Response:
    return web.Response(text=request.app[METRICS].render(), content_type="text/plain")


def create_app(runtime: Runtime, sink: TraceSink | None = None) -> web.Application:
    config: CordConfig = runtime.config
    keys = [k for k in (resolve_secret(ref) for ref in config.server.api_keys) if k]
    app = web.Application(
        middlewares=[errors_middleware, auth_middleware(keys)],
        client_max_size=config.server.max_body_bytes,
    )
    app[RUNTIME] = runtime
    app[METRICS] = Metrics()
    if sink is not None:
        app[SINK] = sink
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/health", health)
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/metrics", metrics)
    add_ui_routes(app, config, app[METRICS])

    async def close_runtime(_: web.Application) -> None:
        await runtime.aclose()

    app.on_cleanup.append(close_runtime)
    return app


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start serving; cancel the handler of a request whose client disconnects."""
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
