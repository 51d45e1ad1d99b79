"""The aiohttp server: OpenAI routes, errors as OpenAI error objects, SSE, disconnect cancels."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Middleware
from pydantic import ValidationError

from cord_proxy.auth import ApiKeys
from cord_proxy.batches import install_batches
from cord_proxy.completion import ChunkWriter, completion_body, completion_id, provenance, usage_of
from cord_proxy.config import CordConfig, ServerConfig
from cord_proxy.connections import GuardedRunner
from cord_proxy.data.records import trace_record
from cord_proxy.data.sink import TraceSink
from cord_proxy.decoding.beam import DecodeProgress
from cord_proxy.decoding.trace import DecodeResult
from cord_proxy.errors import (
    CordError,
    InvalidRequestError,
    RateLimitError,
    RequestTimeoutError,
    RequestTooLargeError,
    UnsupportedFieldError,
    field_problems,
)
from cord_proxy.metrics import Metrics, render_breakers
from cord_proxy.protocol import (
    ChatCompletionRequest,
    param_name,
    unencodable_text,
    unsupported_fields,
)
from cord_proxy.redact import excerpt, remember_endpoint
from cord_proxy.runtime import ChatJob, Runtime, run_job
from cord_proxy.ui import add_ui_routes

log = logging.getLogger("cord_proxy.server")

RUNTIME = web.AppKey("runtime", Runtime)
METRICS = web.AppKey("metrics", Metrics)
KEEPALIVE_S = 15.0
CLIENT_CLOSED = 499  # nginx's status for a client that went away before its answer
LINGERING_S = 2.0
ERROR_MESSAGE_LIMIT = 1000
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SINK: web.AppKey[TraceSink] = web.AppKey("sink")


def openai_error(error: CordError) -> dict[str, Any]:
    """The error's OpenAI object, its message cleaned of endpoints and credentials."""
    body = error.to_openai()
    body["error"]["message"] = excerpt(error.message, ERROR_MESSAGE_LIMIT)
    return body


def error_response(error: CordError) -> web.Response:
    return web.json_response(openai_error(error), status=error.status, headers=error.headers())


def _http_error_response(exc: web.HTTPException) -> web.Response:
    kind = "not_found" if exc.status == 404 else "invalid_request_error"
    body = {"error": {"message": exc.reason, "type": kind, "param": None, "code": None}}
    headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
    return web.json_response(body, status=exc.status, headers=headers)


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
        return _http_error_response(exc)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        request.app[METRICS].observe_unhandled()
        log.exception("unhandled error", extra={"path": request.path})  # cleaned by logs.py
        return error_response(CordError("internal error"))


def _needs_key(request: web.Request) -> bool:
    if request.path.startswith("/v1/"):
        return True
    return request.path == "/metrics" and not request.app[RUNTIME].config.server.metrics_public


def auth_middleware(keys: ApiKeys) -> Middleware:
    @web.middleware
    async def check_key(request: web.Request, handler: Handler) -> web.StreamResponse:
        if keys.required and _needs_key(request):
            keys.check(request)
        return await handler(request)

    return check_key


async def read_body(request: web.Request) -> dict[str, Any]:
    server = request.app[RUNTIME].config.server
    limit = server.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise RequestTooLargeError(f"request body is over the limit of {limit} bytes")
    try:
        async with asyncio.timeout(server.body_timeout):
            raw = await request.read()
    except TimeoutError:
        raise RequestTimeoutError(
            f"the request body did not arrive within {server.body_timeout:g} s"
        ) from None
    except (HttpProcessingError, web.RequestPayloadError) as error:
        raise InvalidRequestError(
            f"the request body could not be read ({type(error).__name__})"
        ) from None
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
    bad_text = unencodable_text(body)
    if bad_text is not None:
        raise InvalidRequestError(
            f"Invalid value for '{bad_text}': a string holds a lone UTF-16 surrogate, "
            "which is not Unicode text",
            param=bad_text,
        )
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
    first = field_problems(error)[0]
    param = param_name(first.location)
    if first.kind == "extra_forbidden":
        message = f"Unrecognized request argument supplied: {param}"
    else:
        message = f"Invalid value for '{param}': {first.message}"
    return InvalidRequestError(message, param=param)


STREAM_ERROR = web.RequestKey("stream_error", int)
"""The status of the error event that ended a stream; the client received a 200."""
SENT = web.RequestKey("sent", int)
"""The status already sent when a handler fails after its response began (a stream)."""
UNMATCHED = "(unmatched)"
CHAT_ROUTE = "/v1/chat/completions"


def route_of(request: web.Request) -> str:
    """The route's template (``/v1/files/{file_id}``), never the path a client sent."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and log every routed request by the status its client received: what the errors
    handler answered, 499 for a client that left before any answer, 200 for a stream that
    began (a stream that ended in an error event is counted apart, by that error's status)."""
    started = time.perf_counter()
    status = CLIENT_CLOSED
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # a redirect: the errors handler answers the rest
        status = exc.status
        raise
    except (asyncio.CancelledError, ConnectionResetError):
        status = request.get(SENT, CLIENT_CLOSED)
        if SENT in request:
            request[STREAM_ERROR] = CLIENT_CLOSED
        raise
    except Exception:  # past the errors handler, aiohttp answers a 500
        status = request.get(SENT, 500)
        raise
    finally:
        _observe(request, status, time.perf_counter() - started)


def _observe(request: web.Request, status: int, elapsed: float) -> None:
    route = route_of(request)
    stream_error = request.get(STREAM_ERROR)
    metrics = request.app[METRICS]
    metrics.observe_request(route, status)
    if route == CHAT_ROUTE:
        metrics.observe_latency(elapsed)
    if stream_error is not None:
        metrics.observe_stream_error(route, stream_error)
    extra: dict[str, Any] = {"method": request.method, "route": route, "status": status}
    if stream_error is not None:
        extra["stream_error"] = stream_error
    log.info("request", extra={**extra, "duration_s": round(elapsed, 4)})


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
    parsed = parse_request(await read_body(request))
    job = request.app[RUNTIME].job_for_request(parsed)
    with RequestSlot(request.app):
        handle = stream_completion if job.stream else whole_completion
        return await handle(request, job)


async def _finish_decode(
    request: web.Request, job: ChatJob, result: DecodeResult, request_id: str
) -> None:
    request.app[METRICS].observe_decode(result.teachers)
    log.info(
        "decode finished",
        extra={
            "request_id": request_id,
            "ensemble": job.ensemble,
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
        await sink(trace_record(request_id, job.ensemble, job.decode, result))
    except OSError as error:
        log.error(
            "dataset sink failed; the trace is only in the response",
            extra={"request_id": request_id, "error": str(error)},
        )


async def whole_completion(request: web.Request, job: ChatJob) -> web.StreamResponse:
    request_id = completion_id()
    result = _cleaned(await run_job(job, request.app[RUNTIME].config.server.request_timeout))
    await _finish_decode(request, job, result, request_id)
    body = completion_body(
        result,
        ensemble=job.ensemble,
        n=job.decode.options.n,
        reasoning_format=job.reasoning_format,
        request_id=request_id,
    )
    return web.json_response(body)


async def stream_completion(request: web.Request, job: ChatJob) -> web.StreamResponse:
    request_id = completion_id()
    writer = ChunkWriter(request_id, job.ensemble)
    inline = job.reasoning_format == "inline"
    n = job.decode.options.n
    progress: asyncio.Queue[DecodeProgress] = asyncio.Queue()
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    request[SENT] = response.status
    timeout = request.app[RUNTIME].config.server.request_timeout
    decode: asyncio.Future[DecodeResult] = asyncio.ensure_future(
        run_job(job, timeout, progress.put_nowait)
    )
    try:
        await _send(response, writer.role(n))
        streamed = await _stream_certain_steps(response, writer, decode, progress, inline)
        result = _cleaned(decode.result())
        await _finish_decode(request, job, result, request_id)
        await _stream_traces(response, writer, result, n, streamed, inline)
        cord = provenance(result, job.ensemble, n)
        await _send(response, writer.finish(result.traces[:n], cord))
        if job.include_usage:
            await _send(response, writer.usage(usage_of(result, result.traces[:n])))
    except CordError as error:
        request[STREAM_ERROR] = error.status
        await _send(response, openai_error(error))
    except (ConnectionResetError, asyncio.CancelledError):
        raise
    except Exception:
        request[STREAM_ERROR] = 500
        request.app[METRICS].observe_unhandled()
        log.exception("stream failed", extra={"request_id": request_id})
        await _send(response, openai_error(CordError("internal error")))
    finally:
        decode.cancel()
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


def _cleaned(result: DecodeResult) -> DecodeResult:
    """The result with each teacher failure's text cut to a clean excerpt (it is sent out)."""
    if not result.failures:
        return result
    failures = [f.model_copy(update={"error": excerpt(f.error)}) for f in result.failures]
    return result.model_copy(update={"failures": failures})


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


async def metrics(request: web.Request) -> web.Response:
    breakers = render_breakers(request.app[RUNTIME].breaker_states())
    return web.Response(text=request.app[METRICS].render() + breakers, content_type="text/plain")


def create_app(runtime: Runtime, sink: TraceSink | None = None) -> web.Application:
    config: CordConfig = runtime.config
    app = web.Application(
        middlewares=[
            access_middleware,
            errors_middleware,
            auth_middleware(ApiKeys(config.server.api_keys)),
        ],
        client_max_size=config.server.max_body_bytes,
    )
    for teacher in config.teachers:
        remember_endpoint(teacher.base_url)
    app[RUNTIME] = runtime
    app[METRICS] = Metrics()
    if sink is not None:
        app[SINK] = sink
    app.router.add_post(CHAT_ROUTE, chat_completions)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/health", health)
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/metrics", metrics)
    install_batches(app, runtime, sink, app[METRICS])
    add_ui_routes(app, config, app[METRICS])

    async def close_runtime(_: web.Application) -> None:
        await runtime.aclose()

    app.on_cleanup.append(close_runtime)
    return app


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
