"""The chat completions route (``POST /v1/chat/completions``): a request in, one decode, the
completion out, whole or streamed.

The body is read and parsed (body.py, parsing.py) and turned into the runtime's job. A retry
of a request whose decode still runs, or finished unclaimed, follows that decode (attach.py);
any other request is admitted (admission.py) and starts a decode of its own, which holds its
slot until it ends. Whole, the decode's answer is one ``chat.completion``; streamed, its
events (chat_events.py) are written as SSE frames (chat_stream.py), kept so that a retry gets
the stream from its start. A client that leaves detaches from its decode, which runs on for
``[server] detach_grace_s`` (0: it is cancelled and awaited at once). The finished decode is
counted, logged and sunk once (outcome.py), however many clients followed it.
"""

from __future__ import annotations

import functools
import json
from contextlib import aclosing

from aiohttp import web

from cord_proxy.api.admission import RequestSlot
from cord_proxy.api.attach import Detachable, Produce, RequestIdentity, identity_of
from cord_proxy.api.body import read_body
from cord_proxy.api.chat_events import Failed, chat_events
from cord_proxy.api.chat_stream import event_frames
from cord_proxy.api.outcome import cleaned, finish_decode
from cord_proxy.api.parsing import parse_chat_request
from cord_proxy.api.sse import DONE, open_stream
from cord_proxy.api.state import DECODES, METRICS, RUNTIME, STREAM_ERROR
from cord_proxy.completion import ChunkWriter, completion_body, completion_id
from cord_proxy.runtime import ChatJob, run_job


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await read_body(request)
    job = request.app[RUNTIME].job_for_request(parse_chat_request(body))
    who = identity_of(request, body)
    entry = request.app[DECODES].find(who)
    if entry is None:
        slot = RequestSlot(request.app).__enter__()  # over the limit: the 429, at once
        entry = start_decode(request.app, job, who)
        assert entry.task is not None
        entry.task.add_done_callback(lambda _: slot.__exit__())
    if job.stream:
        return await follow_stream(request, entry)
    return await follow_whole(entry)


def start_decode(
    app: web.Application, job: ChatJob, who: RequestIdentity | None = None
) -> Detachable:
    """`job`'s decode, started in a task of its own; without `who`, no retry attaches to it."""
    produce = stream_decode if job.stream else whole_decode
    return app[DECODES].start(who or RequestIdentity.unique(), completion_id(), produce(app, job))


async def whole_completion(request: web.Request, job: ChatJob) -> web.StreamResponse:
    """`job` decoded and answered whole, as the route does (admission aside)."""
    return await follow_whole(start_decode(request.app, job))


async def stream_completion(request: web.Request, job: ChatJob) -> web.StreamResponse:
    """`job` decoded and streamed, as the route does (admission aside)."""
    return await follow_stream(request, start_decode(request.app, job))


def whole_decode(app: web.Application, job: ChatJob) -> Produce:
    """The decode of a whole completion: its body, once."""

    async def produce(entry: Detachable) -> None:
        result = cleaned(await run_job(job, app[RUNTIME].config.server.request_timeout))
        await finish_decode(app, job, result, entry.name)
        body = completion_body(
            result,
            ensemble=job.ensemble,
            n=job.decode.options.n,
            reasoning_format=job.reasoning_format,
            request_id=entry.name,
        )
        entry.answer(json.dumps(body))

    return produce


def stream_decode(app: web.Application, job: ChatJob) -> Produce:
    """The decode of a streamed completion: its frames, from the first to ``[DONE]``."""

    async def produce(entry: Detachable) -> None:
        timeout = app[RUNTIME].config.server.request_timeout
        finish = functools.partial(finish_decode, app, job, completion_id=entry.name)
        chunks = ChunkWriter(entry.name, job.ensemble)
        inline = job.reasoning_format == "inline"
        async with aclosing(chat_events(job, timeout, finish)) as events:
            async for event in events:
                status = None
                if isinstance(event, Failed):
                    status = event.error.status
                    if event.unhandled:
                        app[METRICS].observe_unhandled()
                entry.append(event_frames(event, chunks, inline=inline), status)
        entry.append([DONE])

    return produce


async def follow_whole(entry: Detachable) -> web.StreamResponse:
    async with entry.attached():
        text = await entry.result()
    return web.json_response(text=text)


async def follow_stream(request: web.Request, entry: Detachable) -> web.StreamResponse:
    response = await open_stream(request)
    async with entry.attached(), aclosing(entry.follow()) as frames:
        async for frame, error_status in frames:
            if error_status is not None:
                request[STREAM_ERROR] = error_status
            await response.write(frame)
    return response  # aiohttp ends it after the middlewares: the request is logged first
