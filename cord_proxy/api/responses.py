"""The Responses routes (``/v1/responses``): create (whole, streamed or in the background),
retrieve (or follow its stream from an event), cancel, delete, and its input items.

A create is parsed (cord_proxy/responses/), turned into the chat job the proxy decodes, and
its chat events written as Responses events (responses_events.py): gathered into one Response,
or sent over SSE as they come. ``background: true`` answers at once with ``queued`` and the
decode runs on (responses_runs.py). A stored response (``store``, the default) is kept per API
key as files and batches are: another key gets a 404 for it.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

from aiohttp import web

from cord_proxy.api.admission import RequestSlot
from cord_proxy.api.body import read_body
from cord_proxy.api.chat_events import Failed, KeepAlive, chat_events
from cord_proxy.api.responses_events import Event, ResponseEvents
from cord_proxy.api.responses_runs import ResponseRuns
from cord_proxy.api.sse import close_stream, open_stream, send_keep_alive
from cord_proxy.api.state import RUNTIME, STREAM_ERROR
from cord_proxy.errors import InvalidRequestError, NotFoundError
from cord_proxy.responses.conversion import chat_request, conversation, provenance
from cord_proxy.responses.objects import FINAL, Status, input_item, new_id, response_object
from cord_proxy.responses.request import ResponseRequest, parse_response_request
from cord_proxy.responses.store import Row
from cord_proxy.runtime import ChatJob

RUNS = web.AppKey("responses", ResponseRuns)
ROUTE = "/v1/responses"


def install_responses(app: web.Application) -> None:
    """Add the Responses routes; resume the background responses of a stopped proxy."""
    runs = ResponseRuns(app, app[RUNTIME])
    app[RUNS] = runs
    app.router.add_post(ROUTE, create_response)
    app.router.add_get(ROUTE + "/{id}", retrieve_response)
    app.router.add_delete(ROUTE + "/{id}", delete_response)
    app.router.add_post(ROUTE + "/{id}/cancel", cancel_response)
    app.router.add_get(ROUTE + "/{id}/input_items", list_input_items)

    async def start(_: web.Application) -> None:
        await runs.resume()

    async def stop(_: web.Application) -> None:
        await runs.aclose()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)


async def create_response(request: web.Request) -> web.StreamResponse:
    runs = request.app[RUNS]
    body = await read_body(request)
    parsed = parse_response_request(body)
    if parsed.background and not parsed.store:
        raise InvalidRequestError("background responses need store: true", param="background")
    turns = conversation(parsed, await _previous_turns(request, parsed))
    chat = chat_request(parsed, turns)
    job = request.app[RUNTIME].job_for_request(chat)
    response_id = new_id("resp")
    status: Status = "queued" if parsed.background else "in_progress"
    builder = ResponseEvents(response_object(response_id, parsed, status), provenance(parsed, chat))
    if parsed.store:
        await runs.store.add(_row(request, response_id, parsed, body, turns, builder))
    if parsed.background:
        runs.start(response_id, job, builder)
        if not parsed.stream:
            return web.json_response(builder.snapshot())
        row = await runs.store.get(response_id, None)
        return await _send_stream(request, runs.follow(response_id, row or {"events": None}, -1))
    with RequestSlot(request.app):
        if parsed.stream:
            return await _stream(request, job, builder, response_id, parsed)
        return await _whole(request, job, builder, response_id, parsed)


async def _previous_turns(request: web.Request, parsed: ResponseRequest) -> list[dict[str, str]]:
    if parsed.previous_response_id is None:
        return []
    runs = request.app[RUNS]
    row = await runs.store.get(parsed.previous_response_id, runs.scope(request))
    if row is None:
        raise NotFoundError(
            f"Previous response with id '{parsed.previous_response_id}' not found.",
            param="previous_response_id",
        )
    previous = json.loads(row["response"])
    if previous["status"] not in ("completed", "incomplete"):
        raise InvalidRequestError(
            f"Previous response '{parsed.previous_response_id}' is {previous['status']}: "
            "only a finished response goes on",
            param="previous_response_id",
        )
    answer = "".join(
        part.get("text", "")
        for item in previous["output"]
        if item.get("type") == "message"
        for part in item.get("content", [])
    )
    turns: list[dict[str, str]] = json.loads(row["turns"])
    return [*turns, {"role": "assistant", "content": answer}]


def _row(
    request: web.Request,
    response_id: str,
    parsed: ResponseRequest,
    body: dict[str, Any],
    turns: list[dict[str, str]],
    builder: ResponseEvents,
) -> dict[str, Any]:
    items = [input_item(new_id("msg"), m.role, m.text()) for m in parsed.input_messages()]
    return {
        "id": response_id,
        "owner": request.app[RUNS].owner(request),
        "status": builder.response["status"],
        "background": int(bool(parsed.background)),
        "created_at": builder.response["created_at"],
        "body": json.dumps(body),
        "turns": json.dumps(turns),
        "input_items": json.dumps(items),
        "response": json.dumps(builder.response),
        "runner_pid": os.getpid(),
    }


async def _decode(
    request: web.Request, job: ChatJob, builder: ResponseEvents, response_id: str
) -> AsyncIterator[Event | Failed | None]:
    """The response's events; None for a quiet while, and the `Failed` after its events."""
    runs = request.app[RUNS]
    events = chat_events(job, runs.timeout, runs.finish(job, response_id))
    for event in builder.begin():
        yield event
    async with aclosing(events):
        async for chat_event in events:
            if isinstance(chat_event, KeepAlive):
                yield None
                continue
            for event in builder.on(chat_event):
                yield event
            if isinstance(chat_event, Failed):
                yield chat_event


async def _finished(
    request: web.Request, builder: ResponseEvents, response_id: str, parsed: ResponseRequest
) -> None:
    """Store the response as it ended (a client that left: ``cancelled``)."""
    if not parsed.store:
        return
    if builder.response["status"] not in FINAL:
        builder.cancelled()
    await request.app[RUNS].store.update(
        response_id, builder.response["status"], json.dumps(builder.response), "[]"
    )


async def _whole(
    request: web.Request,
    job: ChatJob,
    builder: ResponseEvents,
    response_id: str,
    parsed: ResponseRequest,
) -> web.StreamResponse:
    failed: Failed | None = None
    try:
        async for event in _decode(request, job, builder, response_id):
            if isinstance(event, Failed):
                failed = event
    finally:
        await asyncio.shield(_finished(request, builder, response_id, parsed))
    if failed is not None:
        raise failed.error
    return web.json_response(builder.response)


async def _stream(
    request: web.Request,
    job: ChatJob,
    builder: ResponseEvents,
    response_id: str,
    parsed: ResponseRequest,
) -> web.StreamResponse:
    async def events() -> AsyncGenerator[Event | None, None]:
        try:
            async for event in _decode(request, job, builder, response_id):
                if isinstance(event, Failed):
                    request[STREAM_ERROR] = event.error.status
                    continue
                yield event
        finally:
            await asyncio.shield(_finished(request, builder, response_id, parsed))

    return await _send_stream(request, events())


async def _send_stream(
    request: web.Request, events: AsyncGenerator[Event | None, None]
) -> web.StreamResponse:
    """Write `events` as SSE (``event:`` its type, ``data:`` the event); None: a keep-alive."""
    response = await open_stream(request)
    async with aclosing(events):
        async for event in events:
            if event is None:
                await send_keep_alive(response)
                continue
            data = json.dumps(event)
            await response.write(f"event: {event['type']}\ndata: {data}\n\n".encode())
    await close_stream(response, done=False)
    return response


async def _owned(request: web.Request) -> Row:
    runs = request.app[RUNS]
    response_id = request.match_info["id"]
    row = await runs.store.get(response_id, runs.scope(request))
    if row is None:
        raise NotFoundError(f"Response with id '{response_id}' not found.", param="response_id")
    return row


def _current(request: web.Request, row: Row) -> dict[str, Any]:
    live = request.app[RUNS].live(row["id"])
    return live if live is not None else dict(json.loads(row["response"]))


def _int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    value = request.query.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise InvalidRequestError(
            f"Invalid value for '{name}': an integer from {low} to {high}", param=name
        )
    return number


async def retrieve_response(request: web.Request) -> web.StreamResponse:
    row = await _owned(request)
    stream = request.query.get("stream", "false").lower()
    if stream not in ("true", "false"):
        raise InvalidRequestError("Invalid value for 'stream': true or false", param="stream")
    if stream == "false":
        return web.json_response(_current(request, row))
    after = _int_query(request, "starting_after", -1, -1, 2**31)
    return await _send_stream(request, request.app[RUNS].follow(row["id"], row, after))


async def cancel_response(request: web.Request) -> web.StreamResponse:
    row = await _owned(request)
    if not row["background"]:
        raise InvalidRequestError(
            "Only background responses can be cancelled.", param="response_id"
        )
    if row["status"] not in FINAL:
        await request.app[RUNS].cancel(row["id"])
        row = await _owned(request)
    elif row["status"] != "cancelled":
        raise InvalidRequestError(
            f"Cannot cancel a response with status '{row['status']}'.", param="response_id"
        )
    return web.json_response(_current(request, row))


async def delete_response(request: web.Request) -> web.StreamResponse:
    row = await _owned(request)
    runs = request.app[RUNS]
    if row["id"] in runs.runs:
        await runs.cancel(row["id"])
    await runs.store.delete(row["id"])
    return web.json_response({"id": row["id"], "object": "response", "deleted": True})


async def list_input_items(request: web.Request) -> web.StreamResponse:
    row = await _owned(request)
    limit = _int_query(request, "limit", 20, 1, 100)
    order = request.query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequestError("Invalid value for 'order': asc or desc", param="order")
    items: list[dict[str, Any]] = json.loads(row["input_items"])
    if order == "desc":
        items.reverse()
    after = request.query.get("after")
    if after is not None:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    page = items[:limit]
    return web.json_response(
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > limit,
        }
    )
