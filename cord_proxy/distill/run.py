"""The distill run: every problem left to do, solved by an engine, a few at once.

Each finished problem is appended to the output as one record, atomically and fsync'd;
failures go to a separate file with reasons. SIGINT and SIGTERM stop the workers and the
summary still comes out; rerunning the same command resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from cord_proxy.attempts import with_retries
from cord_proxy.data.jsonl import read_records
from cord_proxy.data.sink import JsonlSink
from cord_proxy.distill.engines import Engine
from cord_proxy.distill.problems import Problem
from cord_proxy.distill.resume import done_ids, load_problems, pending
from cord_proxy.distill.settings import DistillSettings
from cord_proxy.distill.summary import Summary
from cord_proxy.progress import ProgressBar

TICK_S = 1.0


async def run_distill(
    settings: DistillSettings, engine: Engine, *, progress_stream: TextIO | None = None
) -> Summary:
    """Solve every problem of the input not yet in the output; the engine is closed after."""
    stream = progress_stream if progress_stream is not None else sys.stderr
    summary = Summary()
    problems = load_problems(settings.input, summary, stream)
    done = done_ids([settings.output], stream)
    todo = pending(problems, done, summary, str(settings.output), stream)
    settings.output.parent.mkdir(parents=True, exist_ok=True)
    run = _Run(settings, engine, summary, ProgressBar(len(todo), stream=stream))
    started = time.monotonic()
    try:
        await run.solve_all(todo)
    finally:
        await engine.aclose()
        summary.wall_s = time.monotonic() - started
        summary.output_records = len(read_records(settings.output))
    return summary


class _Run:
    """The workers of one run, sharing a queue of problems, the sinks and the progress bar."""

    def __init__(
        self, settings: DistillSettings, engine: Engine, summary: Summary, bar: ProgressBar
    ):
        self.settings = settings
        self.engine = engine
        self.summary = summary
        self.bar = bar
        self.output = JsonlSink(settings.output)
        self.failures = JsonlSink(settings.failures)
        self.queue: asyncio.Queue[Problem] = asyncio.Queue()

    async def solve_all(self, todo: list[Problem]) -> None:
        for problem in todo:
            self.queue.put_nowait(problem)
        self.bar.update(force=True)
        workers = [
            asyncio.ensure_future(self.work()) for _ in range(max(1, self.settings.concurrency))
        ]
        ticker = asyncio.ensure_future(self.tick())
        undo = _on_signals(workers)
        try:
            await asyncio.gather(*workers)
        except asyncio.CancelledError:
            self.summary.interrupted = True
        finally:
            for task in [*workers, ticker]:
                task.cancel()
            await asyncio.gather(*workers, ticker, return_exceptions=True)
            undo()
            self.bar.close()

    async def work(self) -> None:
        while not self.queue.empty():
            await self.solve(self.queue.get_nowait())

    async def solve(self, problem: Problem) -> None:
        record, error, attempts = await with_retries(
            lambda: self.engine.solve(problem), self.settings.retries, self.settings.retry_backoff_s
        )
        if record is not None:
            await self.output(record)
            self.bar.succeeded(*self.summary.add(record))
            return
        assert error is not None  # with_retries gives a result or a failure
        await self.failures(error.record(problem.id, problem.line, attempts))
        self.summary.failed += 1
        self.bar.failure()

    async def tick(self) -> None:
        """Redraw (terminal) or print a line (log) even between events."""
        while True:
            await asyncio.sleep(TICK_S)
            self.bar.update()


def _on_signals(workers: Sequence[asyncio.Future[None]]) -> Callable[[], None]:
    """SIGINT / SIGTERM cancel the workers (the summary still prints); returns an undo."""
    loop = asyncio.get_running_loop()
    installed = []

    def cancel() -> None:
        for task in workers:
            task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, cancel)
            installed.append(sig)

    def undo() -> None:
        for sig in installed:
            loop.remove_signal_handler(sig)

    return undo
