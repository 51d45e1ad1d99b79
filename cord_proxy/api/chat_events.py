"""A streamed chat completion as events, free of any transport: what happened, in order.

`chat_events` runs the decode and yields: `Began` (the choices), `Reasoning` for each run of
steps that became certain (every live beam shares them) while the decode runs, `KeepAlive`
when nothing happened for `keepalive_s` seconds, then for each returned trace the
`Reasoning` not yet sent and its `Answer`, `Finished` (with the ``cord`` provenance),
`Usage` if asked, or `Failed` in place of whatever could not follow. A writer turns them
into a wire format (chat_stream.py: chat completion chunks over SSE); the Responses API's
stream is a second writer over the same events.

The decode runs in a task of its own. However the iteration ends (the last event, a failure,
the consumer closing it: the chat route's decode cancelled when no client came back within
its grace, api/attach.py), that task is cancelled and awaited before the iterator closes:
nothing is left running behind it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from cord_proxy.api.outcome import cleaned
from cord_proxy.completion import decode_cost, provenance, teacher_tokens
from cord_proxy.decoding.beam import DecodeProgress
from cord_proxy.decoding.trace import DecodeResult, FinishedTrace, StepRecord
from cord_proxy.errors import CordError
from cord_proxy.runtime import ChatJob, run_job

log = logging.getLogger(__name__)

KEEPALIVE_S = 15.0
Finish = Callable[[DecodeResult], Awaitable[None]]
"""Called with the cleaned result before the traces are sent (counters, log line, sink)."""


@dataclass(frozen=True)
class Began:
    """The completion began, with this many choices."""

    choices: int


@dataclass(frozen=True)
class Reasoning:
    """Steps of choice `index`'s trace; `first`: they begin it (the trace's first step)."""

    index: int
    steps: list[StepRecord]
    first: bool


@dataclass(frozen=True)
class Answer:
    """Choice `index`'s trace is complete: its answer follows its reasoning."""

    index: int
    trace: FinishedTrace


@dataclass(frozen=True)
class Finished:
    """Every choice is sent: the returned traces, and the decode's ``cord`` provenance."""

    traces: list[FinishedTrace]
    cord: dict[str, Any]
    result: DecodeResult


@dataclass(frozen=True)
class Usage:
    """The tokens of the returned choices (sent when the request asked for usage), and the
    whole decode's `cost` (USD) and `teacher_tokens` (completion.py `teacher_tokens`)."""

    prompt_tokens: int
    reasoning_tokens: int
    answer_tokens: int
    cost: float = 0.0
    teacher_tokens: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Failed:
    """The completion failed; nothing else follows. `unhandled`: a bug, not a `CordError`."""

    error: CordError
    unhandled: bool = False


@dataclass(frozen=True)
class KeepAlive:
    """Nothing happened for a while: a writer whose connection may idle out says so."""


ChatEvent = Began | Reasoning | Answer | Finished | Usage | Failed | KeepAlive


async def chat_events(
    job: ChatJob, timeout: float, finish: Finish, keepalive_s: float | None = None
) -> AsyncGenerator[ChatEvent, None]:
    """The events of `job`'s streamed completion (see the module); `timeout` bounds the decode,
    `keepalive_s` the quiet before a `KeepAlive` (`KEEPALIVE_S` when None)."""
    n = job.decode.options.n
    quiet = KEEPALIVE_S if keepalive_s is None else keepalive_s
    updates: asyncio.Queue[DecodeProgress | None] = asyncio.Queue()
    decode = asyncio.create_task(run_job(job, timeout, updates.put_nowait))
    decode.add_done_callback(lambda _: updates.put_nowait(None))  # after every update
    try:
        yield Began(n)
        sent = 0
        while True:
            try:
                async with asyncio.timeout(quiet):
                    update = await updates.get()
            except TimeoutError:
                yield KeepAlive()
                continue
            if update is None:
                break
            if update.certain_steps:
                yield Reasoning(0, update.certain_steps, first=sent == 0)
                sent += len(update.certain_steps)
        result = cleaned(decode.result())
        await finish(result)
        traces = result.traces[:n]
        for index, trace in enumerate(traces):
            already = sent if index == 0 else 0
            if trace.steps[already:]:
                yield Reasoning(index, trace.steps[already:], first=already == 0)
            yield Answer(index, trace)
        yield Finished(traces, provenance(result, job.ensemble, n), result)
        if job.include_usage:
            yield Usage(
                result.prompt_tokens,
                sum(t.reasoning_tokens for t in traces),
                sum(t.answer_tokens for t in traces),
                decode_cost(result.teachers),
                teacher_tokens(result.teachers),
            )
    except CordError as error:
        yield Failed(error)
    except Exception:
        log.exception("stream failed")
        yield Failed(CordError("internal error"), unhandled=True)
    finally:
        decode.cancel()
        await asyncio.gather(decode, return_exceptions=True)
