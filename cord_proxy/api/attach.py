"""Decodes that outlive their connection: a client that drops leaves its decode running for
``[server] detach_grace_s`` seconds, and a retry of the same request attaches to it.

A decode runs in a task of its own (`Detachable`), not in the handler of the request that
started it; a handler follows it (`Detachable.attached`). When the last client following a
decode leaves before its end, the decode is detached: it runs on for the grace, and is
cancelled when nobody attaches within it (no teacher call starts after that). With a grace of
0 it is cancelled at once, and awaited, as a handler's own decode would be.

A request attaches to a decode only as a retry of the request that started it
(`RequestIdentity`): the same API key (or both keyless) and the same canonical body (the
parsed JSON object, keys sorted), and either the same ``Idempotency-Key`` header, or the
openai SDK's ``x-stainless-retry-count`` of 1 or more (then only to a decode that no client
follows and that was started without an ``Idempotency-Key``). Two clients that send the same
body without a retry marker each get a decode of their own.

A decode's output is kept as it is made: the whole completion's body, or every frame of a
stream from its start, so a retry gets the same completion, and a streaming retry the whole
stream from its first event. A decode that finishes while no client follows keeps its result
for the grace (counted from its end) for a retry to claim; at most `MAX_KEPT` results and
`MAX_KEPT_BYTES` bytes of them are kept, the oldest dropped first. A failed decode is never
kept: a retry starts over. A result goes to one client: once delivered it is forgotten.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from cord_proxy.auth import request_key
from cord_proxy.errors import CordError

log = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "Idempotency-Key"
RETRY_COUNT_HEADER = "x-stainless-retry-count"  # the openai SDK's: 0, then 1, 2, ...
MAX_KEPT = 256
"""Finished decodes kept for a retry to claim, at most (the oldest is dropped first)."""
MAX_KEPT_BYTES = 64 * 1024 * 1024
"""Bytes of kept results (bodies, or streams' frames), at most (the oldest dropped first)."""

Produce = Callable[["Detachable"], Coroutine[Any, Any, None]]
OnEvent = Callable[[str], None]
"""Hears of each event: detached, attached, finished_unclaimed, cancelled_after_grace,
claimed, dropped (a kept result expired or pushed out)."""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class RequestIdentity:
    """What makes a request a retry of another: its key and body, and its retry marker."""

    owner: str  # a digest of the API key; "" without one
    body: str  # a digest of the canonical body
    idempotency_key: str | None  # a digest of the header's value
    retry: bool  # x-stainless-retry-count >= 1

    @classmethod
    def unique(cls) -> RequestIdentity:
        """An identity no other request has: its decode is never attached to."""
        return cls("", f"unique:{uuid.uuid4()}", None, False)

    def same_request(self, other: RequestIdentity) -> bool:
        return self.owner == other.owner and self.body == other.body


def canonical_body(body: dict[str, Any]) -> str:
    """The body as canonical JSON: keys sorted, no spaces, ASCII only."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def identity_of(request: web.BaseRequest, body: dict[str, Any]) -> RequestIdentity:
    key = request_key(request)
    try:
        canonical = canonical_body(body)
    except (ValueError, RecursionError):  # cannot be compared: matches nothing
        return RequestIdentity.unique()
    idempotency = request.headers.get(IDEMPOTENCY_HEADER, "").strip()
    return RequestIdentity(
        owner="" if key is None else _digest(key),
        body=_digest(canonical),
        idempotency_key=_digest(idempotency) if idempotency else None,
        retry=_retry_count(request.headers.get(RETRY_COUNT_HEADER)) >= 1,
    )


def _retry_count(value: str | None) -> int:
    try:
        return int((value or "0").strip())
    except ValueError:
        return 0


class Detachable:
    """One decode that may outlive the clients that follow it (see the module).

    Its producer (a coroutine run in its own task) writes what the decode makes: `answer`
    (a whole completion's body) or `append` (a stream's frames, each maybe the error event
    of a failed stream, with its status). Clients follow it with `attached`, then `result`
    or `follow`.
    """

    def __init__(self, decodes: Decodes, who: RequestIdentity, name: str):
        self.decodes = decodes
        self.who = who
        self.name = name
        self.frames: list[bytes] = []
        self.body: str | None = None
        self.error: BaseException | None = None
        self.stream_error: tuple[int, int] | None = None  # (frame index, status)
        self.attached_clients = 0
        self.clients = 0  # every client that attached, the first included
        self.finished = False
        self.size = 0
        self.task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None

    # --- the producer ---------------------------------------------------------------------

    def answer(self, body: str) -> None:
        """The whole completion's body (JSON text)."""
        self.body = body
        self.size += len(body)

    def append(self, frames: list[bytes], error_status: int | None = None) -> None:
        """A stream's next frames; `error_status`: they end it with that error."""
        if error_status is not None:
            self.stream_error = (len(self.frames), error_status)
        self.frames.extend(frames)
        self.size += sum(len(f) for f in frames)
        self._wake()

    @property
    def failed(self) -> bool:
        return self.error is not None or self.stream_error is not None

    # --- the clients ----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def attached(self) -> AsyncIterator[None]:
        """Follow the decode while inside; leaving before its end detaches it (the module)."""
        self._attach()
        delivered = False
        try:
            yield
            delivered = True
        finally:
            await self._leave(delivered)

    async def result(self) -> str:
        """The whole completion's body, once the decode ends; or its error, raised."""
        while not self.finished:
            await self._changed.wait()
        if self.error is not None:
            raise self.error
        if self.body is None:
            raise CordError("the decode ended without a result")
        return self.body

    async def follow(self) -> AsyncGenerator[tuple[bytes, int | None], None]:
        """Every frame of the stream from its first, as made: each with the status of the
        error it carries (None for the rest); the decode's own error is raised at the end."""
        sent = 0
        while True:
            changed = self._changed
            while sent < len(self.frames):
                error = self.stream_error
                status = error[1] if error is not None and error[0] == sent else None
                yield self.frames[sent], status
                sent += 1
            if self.finished:
                break
            await changed.wait()
        if self.error is not None:
            raise self.error

    # --- its life -------------------------------------------------------------------------

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _attach(self) -> None:
        self._stop_timer()
        if self in self.decodes.kept:  # claimed: no longer counted as kept
            self.decodes.kept.remove(self)
        self.attached_clients += 1
        self.clients += 1
        if self.clients > 1:
            self._event(
                "attached",
                "decode attached",
                finished=self.finished,
                frames_replayed=len(self.frames),
            )

    async def _leave(self, delivered: bool) -> None:
        self.attached_clients -= 1
        if self.finished and (delivered or self.failed):
            if self.clients > 1 and delivered:
                self._event("claimed", "decode result claimed")
            self.decodes.forget(self)
            return
        if self.attached_clients > 0:
            return
        if self.finished:
            self._unclaimed()
            return
        grace = self.decodes.grace_s
        if grace <= 0:
            self.decodes.forget(self)
            if self.task is not None:
                self.task.cancel()
                await asyncio.gather(self.task, return_exceptions=True)
            return
        self._event("detached", "decode detached", grace_s=grace)
        self._timer = asyncio.get_running_loop().call_later(grace, self._expire)

    def _expire(self) -> None:
        self._timer = None
        if self.attached_clients > 0 or self.finished:
            return
        self._event("cancelled_after_grace", "decode cancelled after grace")
        self.decodes.forget(self)
        if self.task is not None:
            self.task.cancel()

    def _done(self, task: asyncio.Task[None]) -> None:
        self.finished = True
        if task.cancelled():
            self.error = CordError("the decode was cancelled")
        elif task.exception() is not None:
            self.error = task.exception()
        self._wake()
        if self.attached_clients == 0 and self in self.decodes.entries:
            self._unclaimed()

    def _unclaimed(self) -> None:
        if self.failed:
            self._event("dropped", "unclaimed decode failed; dropped", reason="failed")
            self.decodes.forget(self)
            return
        grace = self.decodes.grace_s
        self._event(
            "finished_unclaimed", "decode finished unclaimed", kept_s=grace, bytes=self.size
        )
        self._timer = asyncio.get_running_loop().call_later(grace, self._drop, "expired")
        self.decodes.keep(self)

    def _drop(self, reason: str) -> None:
        self._timer = None
        self._event("dropped", "unclaimed decode result dropped", reason=reason)
        self.decodes.forget(self)

    def _event(self, event: str, message: str, **extra: Any) -> None:
        log.info(message, extra={"completion_id": self.name, **extra})
        self.decodes.on_event(event)


class Decodes:
    """The registry of detachable decodes: running ones, and finished ones kept unclaimed."""

    def __init__(
        self,
        grace_s: float,
        on_event: OnEvent | None = None,
        *,
        max_kept: int = MAX_KEPT,
        max_kept_bytes: int = MAX_KEPT_BYTES,
    ):
        self.grace_s = grace_s
        self.on_event: OnEvent = on_event or (lambda _: None)
        self.max_kept = max_kept
        self.max_kept_bytes = max_kept_bytes
        self.entries: list[Detachable] = []  # oldest first
        self.kept: list[Detachable] = []  # finished, unclaimed: oldest first

    def find(self, who: RequestIdentity) -> Detachable | None:
        """The decode `who` retries, if any (the module says which)."""
        for entry in self.entries:
            if not entry.who.same_request(who):
                continue
            if who.idempotency_key is not None:
                if entry.who.idempotency_key == who.idempotency_key:
                    return entry
            elif who.retry and entry.who.idempotency_key is None and entry.attached_clients == 0:
                return entry
        return None

    def start(self, who: RequestIdentity, name: str, produce: Produce) -> Detachable:
        """A new decode: `produce` runs in its own task, from now."""
        entry = Detachable(self, who, name)
        self.entries.append(entry)
        entry.task = asyncio.create_task(produce(entry), name=f"decode {name}")
        entry.task.add_done_callback(entry._done)
        return entry

    def keep(self, entry: Detachable) -> None:
        self.kept.append(entry)
        while self.kept and (
            len(self.kept) > self.max_kept or sum(e.size for e in self.kept) > self.max_kept_bytes
        ):
            self.kept[0]._drop("over the bound")

    def forget(self, entry: Detachable) -> None:
        entry._stop_timer()
        if entry in self.entries:
            self.entries.remove(entry)
        if entry in self.kept:
            self.kept.remove(entry)

    async def aclose(self) -> None:
        """Cancel every decode still running, and forget every kept result."""
        tasks = [e.task for e in self.entries if e.task is not None and not e.task.done()]
        for entry in list(self.entries):
            self.forget(entry)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
