"""The responses this process decodes in the background, and the stored responses' service.

A background response is decoded by a task of its own, at most ``[batches] concurrency`` at
once; its Responses events (responses_events.py) are kept in memory while it runs, so that a
reader can follow the stream from any event (``starting_after``), and are stored with the
final Response. A response that was queued or in progress when its process died (its
``runner_pid`` is gone) runs again when the proxy starts (a foreground one, whose client is
gone, is marked failed instead); one that is final is never decoded again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from cord_proxy.api.chat_events import KEEPALIVE_S, chat_events
from cord_proxy.api.outcome import finish_decode
from cord_proxy.api.responses_events import Event, ResponseEvents
from cord_proxy.auth import KeyOwners
from cord_proxy.batches.routes import data_dir
from cord_proxy.errors import CordError
from cord_proxy.responses.conversion import chat_request, provenance
from cord_proxy.responses.objects import response_object
from cord_proxy.responses.request import parse_response_request
from cord_proxy.responses.store import ResponseStore, Row
from cord_proxy.runtime import ChatJob, Runtime

log = logging.getLogger(__name__)
CANCEL_WAIT_S = 10.0
STOPPED = "the proxy stopped before this response finished"


@dataclass
class Run:
    """One running response: its events so far, and a signal set at each new one."""

    builder: ResponseEvents
    events: list[Event] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    done: bool = False

    def add(self, events: list[Event]) -> None:
        self.events.extend(events)
        self.changed.set()
        self.changed = asyncio.Event()

    def end(self) -> None:
        self.done = True
        self.changed.set()


class ResponseRuns:
    """The store of responses, the owners of the keys, and the background runs."""

    def __init__(self, app: web.Application, runtime: Runtime):
        config = runtime.config
        self.app = app
        self.runtime = runtime
        self.store = ResponseStore(data_dir(config.batches) / "responses.sqlite")
        self.owners = KeyOwners(config.batches.owners)
        self.slots = asyncio.Semaphore(config.batches.concurrency)
        self.runs: dict[str, Run] = {}

    def owner(self, request: web.Request) -> str:
        return self.owners.owner(request)

    def scope(self, request: web.Request) -> str | None:
        """The owner whose responses this request may see; None: all (no owners set)."""
        return self.owners.owner(request) if self.owners.enabled else None

    @property
    def timeout(self) -> float:
        return self.runtime.config.server.request_timeout

    def finish(self, job: ChatJob, response_id: str) -> Any:
        return functools.partial(finish_decode, self.app, job, completion_id=response_id)

    def start(self, response_id: str, job: ChatJob, builder: ResponseEvents) -> None:
        """Decode `job` in the background as the stored response `response_id`."""
        run = Run(builder)
        self.runs[response_id] = run
        run.task = asyncio.create_task(self._run(response_id, job, run))

    async def _run(self, response_id: str, job: ChatJob, run: Run) -> None:
        try:
            async with self.slots:
                begun = run.builder.begin()
                if not await self._save(response_id, run):
                    return  # cancelled or deleted while queued
                run.add(begun)
                events = chat_events(job, self.timeout, self.finish(job, response_id))
                async with aclosing(events):
                    async for event in events:
                        run.add(run.builder.on(event))
            await self._save(response_id, run, final=True)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background response failed", extra={"response_id": response_id})
            run.add(run.builder.failed("internal error"))
            await self._save(response_id, run, final=True)
        finally:
            run.end()
            self.runs.pop(response_id, None)

    async def _save(self, response_id: str, run: Run, final: bool = False) -> bool:
        response = run.builder.response
        events = json.dumps(run.events) if final else None
        return await self.store.update(
            response_id, response["status"], json.dumps(response), events
        )

    async def follow(
        self, response_id: str, row: Row, after: int
    ) -> AsyncGenerator[Event | None, None]:
        """The events of a response after number `after`: live while it runs, else stored;
        None for a quiet while."""
        run = self.runs.get(response_id)
        if run is None:
            stored = await self.store.get(response_id, None) or row  # it may have just ended
            for event in json.loads(stored["events"] or "[]"):
                if event["sequence_number"] > after:
                    yield event
            return
        sent = 0
        while True:
            changed = run.changed
            for event in run.events[sent:]:
                if event["sequence_number"] > after:
                    yield event
            sent = len(run.events)
            if run.done:
                return
            try:
                async with asyncio.timeout(KEEPALIVE_S):
                    await changed.wait()
            except TimeoutError:
                yield None  # a quiet while: the writer sends a keep-alive

    def live(self, response_id: str) -> dict[str, Any] | None:
        """The Response of a response running here, as it stands."""
        run = self.runs.get(response_id)
        return run.builder.snapshot() if run is not None else None

    async def cancel(self, response_id: str) -> None:
        """Stop a background response: no teacher call starts after this returns."""
        run = self.runs.get(response_id)
        if run is None:
            await self._mark_stopped(response_id, "cancelled")
            return
        run.builder.cancelled()
        await self._save(response_id, run, final=True)
        if run.task is not None:
            run.task.cancel()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CANCEL_WAIT_S):
                    await asyncio.gather(run.task, return_exceptions=True)
        run.end()

    async def _mark_stopped(self, response_id: str, status: str, error: str | None = None) -> None:
        row = await self.store.get(response_id, None)
        if row is None:
            return
        response = json.loads(row["response"])
        response["status"] = status
        if error is not None:
            response["error"] = {"code": "server_error", "message": error}
        await self.store.update(response_id, status, json.dumps(response), "[]")

    async def resume(self) -> None:
        """Run again the background responses whose process died; fail the foreground ones."""
        for row in await self.store.active():
            if _alive(row["runner_pid"]):
                continue
            if not row["background"]:
                await self._mark_stopped(row["id"], "failed", STOPPED)
                continue
            try:
                request = parse_response_request(json.loads(row["body"]))
                turns = json.loads(row["turns"])
                chat = chat_request(request, turns)
                job = self.runtime.job_for_request(chat)
            except CordError as error:
                await self._mark_stopped(row["id"], "failed", error.message)
                continue
            response = response_object(row["id"], request, "queued", row["created_at"])
            builder = ResponseEvents(response, provenance(request, chat))
            await self.store.claim(row["id"], os.getpid())
            log.info("background response resumed", extra={"response_id": row["id"]})
            self.start(row["id"], job, builder)

    async def aclose(self) -> None:
        tasks = [run.task for run in self.runs.values() if run.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.store.close()


def _alive(pid: int | None) -> bool:
    """A process with this id runs (other than this one)."""
    if pid is None or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
