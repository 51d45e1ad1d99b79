"""The batch runner: validate, decode every pending line, finalize; resumable, cancellable,
and expiring: at its ``expires_at`` a batch stops as on a cancel and ends ``expired``.

Each line runs on the proxy's own decode path (``Runtime.job_for_request`` and ``run_job``), with
the retries of transient failures that distill uses too (``cord_proxy.attempts``); a
``/v1/responses`` line is first converted to its chat request as the Responses route converts
it, and its output body is a Response object. Progress lives in the store, so a restarted
proxy carries on with the lines not done yet. One process of those sharing a data directory
runs the batches (it holds ``worker.lock``); the others only record them.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from cord_proxy.attempts import ProblemFailed, decode_or_fail, with_retries
from cord_proxy.batches.files import FileArea, new_file_id
from cord_proxy.batches.output import error_line, expired_line, response_line, success_line
from cord_proxy.batches.store import Row, Store
from cord_proxy.batches.validate import RESPONSES, check_input, responses_chat_request
from cord_proxy.completion import completion_id
from cord_proxy.data.records import trace_record
from cord_proxy.data.sink import TraceSink
from cord_proxy.errors import CordError
from cord_proxy.metrics import Metrics
from cord_proxy.protocol import ChatCompletionRequest
from cord_proxy.request_fields import without_refused
from cord_proxy.responses.objects import new_id
from cord_proxy.runtime import Runtime

log = logging.getLogger(__name__)
TICK_S = 1.0
CANCEL_WAIT_S = 10.0
OUTPUTS = (("done", "output", "output_file_id"), ("failed", "error", "error_file_id"))
FINAL = {"finalizing": "completed", "cancelling": "cancelled"}


@dataclass(frozen=True)
class RunSettings:
    concurrency: int
    retries: int
    max_line_bytes: int
    timeout_s: float
    retry_backoff_s: float = 1.0


@dataclass
class Context:
    """What every batch run shares."""

    store: Store
    area: FileArea
    runtime: Runtime
    settings: RunSettings
    slots: asyncio.Semaphore
    sink: TraceSink | None
    metrics: Metrics


class BatchRun:
    """One batch, from where the store says it is to a final status."""

    def __init__(self, context: Context, batch_id: str):
        self.context = context
        self.batch_id = batch_id
        self.cancelled = False
        self.expired = False
        self.endpoint = ""
        self._workers: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        store = self.context.store
        row = await store.get_batch(self.batch_id)
        if row is None:
            return
        self.endpoint = row["endpoint"]
        timer = self._arm_expiry(row["expires_at"])
        try:
            if row["status"] == "validating" and not self.stopped:
                await self._validate(row)
            row = await store.get_batch(self.batch_id)
            if row is not None and row["status"] == "in_progress" and not self.stopped:
                await self._run_lines()
                if not self.stopped:
                    await store.move(self.batch_id, "finalizing", ["in_progress"])
        finally:
            if timer is not None:
                timer.cancel()
        if self.expired and not self.cancelled:
            await self._finish_if_all_ended()
        await self._finalize()

    @property
    def stopped(self) -> bool:
        return self.cancelled or self.expired

    async def cancel(self) -> None:
        """Stop every line: none starts a teacher call after this returns."""
        self.cancelled = True
        for worker in self._workers:
            worker.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CANCEL_WAIT_S):
                await asyncio.gather(*self._workers, return_exceptions=True)

    def _arm_expiry(self, expires_at: int | None) -> asyncio.TimerHandle | None:
        """At `expires_at` the lines stop as on a cancel; one already past it stops now."""
        if expires_at is None:
            return None
        left = expires_at - time.time()
        if left <= 0:
            self._expire()
            return None
        return asyncio.get_running_loop().call_later(left, self._expire)

    async def _finish_if_all_ended(self) -> None:
        """A window that ran out after every line ended leaves a finished batch, not an
        expired one (the stop came between the last line and `finalizing`)."""
        counts = await self.context.store.counts(self.batch_id)
        if counts and not counts.get("pending"):
            await self.context.store.move(self.batch_id, "finalizing", ["in_progress"])

    def _expire(self) -> None:
        if not self.expired:
            log.info("batch window ran out", extra={"batch_id": self.batch_id})
        self.expired = True
        for worker in self._workers:
            worker.cancel()

    async def _validate(self, row: Row) -> None:
        store, area = self.context.store, self.context.area
        path = area.path(row["input_file_id"])
        limit = self.context.settings.max_line_bytes
        check = await asyncio.to_thread(check_input, path, row["endpoint"], limit)
        if check.errors:
            errors = {"object": "list", "data": check.errors}
            await store.move(self.batch_id, "failed", ["validating"], errors=_json(errors))
            log.info("batch failed validation", extra={"batch_id": self.batch_id})
            return
        await store.add_lines(self.batch_id, check.lines)
        await store.move(self.batch_id, "in_progress", ["validating"])
        log.info("batch in progress", extra={"batch_id": self.batch_id, "lines": len(check.lines)})

    async def _run_lines(self) -> None:
        queue = list(reversed(await self.context.store.pending_lines(self.batch_id)))
        count = min(len(queue), self.context.settings.concurrency)
        self._workers = [asyncio.create_task(self._work(queue)) for _ in range(count)]
        await asyncio.gather(*self._workers, return_exceptions=True)

    async def _work(self, queue: list[Row]) -> None:
        while queue and not self.stopped:
            line = queue.pop()
            async with self.context.slots:
                if self.stopped:
                    return
                await self._line(line)

    async def _line(self, line: Row) -> None:
        settings = self.context.settings
        custom_id = line["custom_id"]
        text, failure, attempts = await with_retries(
            lambda: self._solve(custom_id, line["body"]), settings.retries, settings.retry_backoff_s
        )
        if text is not None:
            status, output = "done", text
        else:
            assert failure is not None  # with_retries gives a result or a failure
            status, output = "failed", error_line(custom_id, failure)
        await self.context.store.finish_line(self.batch_id, line["idx"], status, output, attempts)
        self.context.metrics.observe_batch_requests("completed" if status == "done" else "failed")
        log.info(
            "batch line finished",
            extra={"batch_id": self.batch_id, "custom_id": custom_id, "line_status": status},
        )

    async def _solve(self, custom_id: str, body: str) -> str:
        log.info("batch line decode", extra={"batch_id": self.batch_id, "custom_id": custom_id})
        responses = None
        try:
            if self.endpoint == RESPONSES:
                responses, request = responses_chat_request(orjson.loads(body))
            else:
                request = ChatCompletionRequest.model_validate(without_refused(orjson.loads(body)))
            job = self.context.runtime.job_for_request(request)
        except CordError as error:
            kind = error.code or type(error).__name__
            raise ProblemFailed(error.message, kind, transient=False, status=error.status) from None
        try:
            result = await decode_or_fail(job, self.context.settings.timeout_s)
        except ProblemFailed as failure:
            log.warning(
                "batch line attempt failed",
                extra={"batch_id": self.batch_id, "custom_id": custom_id, "error": failure.message},
            )
            raise
        self.context.metrics.observe_decode(result.teachers)
        request_id = new_id("resp") if responses is not None else completion_id()
        record = trace_record(request_id, job.ensemble, job.decode, result, problem_id=custom_id)
        await self._keep(record)
        if responses is not None:
            return response_line(record, job, result, responses, request)
        return success_line(record, job, result)

    async def _keep(self, record: dict[str, Any]) -> None:
        if self.context.sink is None:
            return
        try:
            await self.context.sink(record)
        except OSError as error:
            log.error("dataset sink failed", extra={"batch_id": self.batch_id, "error": str(error)})

    async def _finalize(self) -> None:
        store = self.context.store
        row = await store.get_batch(self.batch_id)
        to = None if row is None else self._final_status(row["status"])
        if row is None or to is None:
            return
        expired = await self._expired_lines() if to == "expired" else []
        files: list[Row] = []
        ids: dict[str, str] = {}
        for status, purpose, field in OUTPUTS:
            lines = await store.outputs(self.batch_id, status)
            if status == "failed":
                lines += [output for _, output in expired]
            if lines:
                name = f"batch_{self.batch_id}_{purpose}.jsonl"
                file_row = await self._write(lines, name, row["owner"])
                files.append(file_row)
                ids[field] = file_row["id"]
        if not await store.finish_batch(self.batch_id, to, row["status"], files, expired, **ids):
            for file_row in files:
                self.context.area.remove(file_row["id"])
            return
        if expired:
            self.context.metrics.observe_batch_requests("expired", len(expired))
        log.info("batch finished", extra={"batch_id": self.batch_id, "status": to})

    def _final_status(self, status: str) -> str | None:
        """Where a batch that stopped in `status` ends; None: it has not stopped."""
        if status in FINAL:
            return FINAL[status]
        return "expired" if self.expired and status in ("validating", "in_progress") else None

    async def _expired_lines(self) -> list[tuple[int, str]]:
        pending = await self.context.store.pending_lines(self.batch_id)
        return [(line["idx"], expired_line(line["custom_id"])) for line in pending]

    async def _write(self, lines: list[str], filename: str, owner: str) -> Row:
        file_id = new_file_id()
        size = await asyncio.to_thread(self.context.area.write, file_id, lines)
        return {
            "id": file_id,
            "owner": owner,
            "filename": filename,
            "purpose": "batch_output",
            "bytes": size,
            "created_at": int(time.time()),
        }


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


class BatchWorker:
    """Runs every active batch of the data directory; wakes on new work and on a timer."""

    def __init__(self, context: Context, lock_path: Path):
        self.context = context
        self.lock_path = lock_path
        self.runs: dict[str, BatchRun] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._lock_fd: int | None = None

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._loop())

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Stop working (the batches stay active in the store, for the next start)."""
        tasks = [t for t in (self._loop_task, *self._tasks.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    async def cancel(self, batch_id: str) -> None:
        run = self.runs.get(batch_id)
        if run is not None:
            await run.cancel()
        self.wake()

    async def _loop(self) -> None:
        while True:
            try:
                await self._tick()
            except Exception:  # the worker outlives a bad tick (a locked or full disk)
                log.exception("batch worker tick failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_S):
                    await self._wake.wait()
            self._wake.clear()

    async def _tick(self) -> None:
        if not self.context.store.exists() or not self._holds_lock():
            return
        for row in await self.context.store.active_batches():
            run = self.runs.get(row["id"])
            if run is None:
                self._start(row["id"])
            elif row["status"] == "cancelling" and not run.cancelled:
                await run.cancel()

    def _start(self, batch_id: str) -> None:
        run = BatchRun(self.context, batch_id)
        task = asyncio.create_task(run.run())
        self.runs[batch_id] = run
        self._tasks[batch_id] = task
        task.add_done_callback(lambda done: self._finished(batch_id, done))

    def _finished(self, batch_id: str, task: asyncio.Task[None]) -> None:
        self.runs.pop(batch_id, None)
        self._tasks.pop(batch_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "batch run failed; retried on the next tick",
                extra={"batch_id": batch_id, "error": repr(task.exception())},
            )

    def _holds_lock(self) -> bool:
        if self._lock_fd is not None:
            return True
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True
