"""The chat completions route (``POST /v1/chat/completions``): a request in, one decode, the
completion out, whole or streamed.

The body is read and parsed (body.py, parsing.py), turned into the runtime's job, admitted
(admission.py), and decoded: whole, it is answered as one ``chat.completion``; streamed, its
events (chat_events.py) are written as SSE (chat_stream.py). A client that leaves cancels
its decode (the server cancels the handler; the stream's decode task is cancelled and
awaited). Either way the finished decode is counted, logged and sunk (outcome.py).
"""

from __future__ import annotations

import functools

from aiohttp import web

from cord_proxy.api.admission import RequestSlot
from cord_proxy.api.body import read_body
from cord_proxy.api.chat_events import Failed, chat_events
from cord_proxy.api.chat_stream import write_chat_stream
from cord_proxy.api.outcome import cleaned, finish_decode
from cord_proxy.api.parsing import parse_chat_request
from cord_proxy.api.sse import open_stream
from cord_proxy.api.state import METRICS, RUNTIME, STREAM_ERROR
from cord_proxy.completion import ChunkWriter, completion_body, completion_id
from cord_proxy.runtime import ChatJob, run_job


async def chat_completions(request: web.Request) -> web.StreamResponse:
    parsed = parse_chat_request(await read_body(request))
    job = request.app[RUNTIME].job_for_request(parsed)
    with RequestSlot(request.app):
        handle = stream_completion if job.stream else whole_completion
        return await handle(request, job)


async def whole_completion(request: web.Request, job: ChatJob) -> web.StreamResponse:
    completion = completion_id()
    result = cleaned(await run_job(job, request.app[RUNTIME].config.server.request_timeout))
    await finish_decode(request.app, job, result, completion)
    body = completion_body(
        result,
        ensemble=job.ensemble,
        n=job.decode.options.n,
        reasoning_format=job.reasoning_format,
        request_id=completion,
    )
    return web.json_response(body)


async def stream_completion(request: web.Request, job: ChatJob) -> web.StreamResponse:
    completion = completion_id()
    response = await open_stream(request)
    timeout = request.app[RUNTIME].config.server.request_timeout
    finish = functools.partial(finish_decode, request.app, job, completion_id=completion)
    events = chat_events(job, timeout, finish)

    def failed(event: Failed) -> None:
        request[STREAM_ERROR] = event.error.status
        if event.unhandled:
            request.app[METRICS].observe_unhandled()

    chunks = ChunkWriter(completion, job.ensemble)
    inline = job.reasoning_format == "inline"
    await write_chat_stream(response, events, chunks, inline=inline, on_failed=failed)
    return response
