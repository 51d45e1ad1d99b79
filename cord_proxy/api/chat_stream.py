"""The chat completion's stream writer: `chat_events` written as OpenAI's SSE chunks.

Each event becomes ``chat.completion.chunk`` objects (cord_proxy/completion.py builds
them), a keep-alive comment, or the error event ``data: {"error": {...}}``; the stream ends
with ``data: [DONE]``. The writer decides nothing: what to send, and when, is the events'.
`event_frames` gives an event's bytes without writing them: the chat route keeps a stream's
frames so that a retry gets it from its start (api/attach.py).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import Any

from aiohttp import web

from cord_proxy.api.chat_events import (
    Answer,
    Began,
    ChatEvent,
    Failed,
    Finished,
    KeepAlive,
    Reasoning,
    Usage,
)
from cord_proxy.api.errors import openai_error
from cord_proxy.api.sse import KEEP_ALIVE, close_stream, data_frame, send_data, send_keep_alive
from cord_proxy.completion import ChunkWriter, usage_counts

OnFailed = Callable[[Failed], None]


async def write_chat_stream(
    response: web.StreamResponse,
    events: AsyncGenerator[ChatEvent, None],
    chunks: ChunkWriter,
    *,
    inline: bool,
    on_failed: OnFailed,
) -> None:
    """Write every event of `events` to the open stream `response`, then end it; `on_failed`
    hears of an error event before it is written. `events` is closed however this ends."""
    async with aclosing(events):
        async for event in events:
            if isinstance(event, Failed):
                on_failed(event)
            await _write(response, event, chunks, inline)
    await close_stream(response)


async def _write(
    response: web.StreamResponse, event: ChatEvent, chunks: ChunkWriter, inline: bool
) -> None:
    if isinstance(event, KeepAlive):
        await send_keep_alive(response)
        return
    for payload in _payloads(event, chunks, inline):
        await send_data(response, payload)


def event_frames(event: ChatEvent, chunks: ChunkWriter, *, inline: bool) -> list[bytes]:
    """The event as the bytes written for it: a keep-alive comment or ``data:`` events."""
    if isinstance(event, KeepAlive):
        return [KEEP_ALIVE]
    return [data_frame(payload) for payload in _payloads(event, chunks, inline)]


def _payloads(event: ChatEvent, chunks: ChunkWriter, inline: bool) -> list[dict[str, Any]]:
    if isinstance(event, Began):
        return [chunks.role(event.choices)]
    if isinstance(event, Reasoning):
        return list(chunks.steps(event.index, event.steps, first=event.first, inline=inline))
    if isinstance(event, Answer):
        return list(chunks.answer(event.index, event.trace, inline))
    if isinstance(event, Finished):
        return [chunks.finish(event.traces, event.cord)]
    if isinstance(event, Usage):
        usage = usage_counts(
            event.prompt_tokens,
            event.reasoning_tokens,
            event.answer_tokens,
            cost=event.cost,
            teacher_tokens=event.teacher_tokens,
        )
        return [chunks.usage(usage)]
    if isinstance(event, Failed):
        return [openai_error(event.error)]
    return []
