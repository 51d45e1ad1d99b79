"""What a finished decode leaves behind, whichever route ran it: its counters, its ``decode
finished`` log line and its dataset record; and the result cleaned for sending out.

The log line carries the request's ``request_id`` (cord_proxy/logs.py) and the completion's
own id as ``completion_id``, which is also the dataset record's ``request_id``.
"""

from __future__ import annotations

import logging

from aiohttp import web

from cord_proxy.api.state import METRICS, SINK
from cord_proxy.data.records import trace_record
from cord_proxy.decoding.trace import DecodeResult
from cord_proxy.redact import excerpt
from cord_proxy.runtime import ChatJob

log = logging.getLogger(__name__)


def cleaned(result: DecodeResult) -> DecodeResult:
    """The result with each teacher failure's text cut to a clean excerpt (it is sent out)."""
    if not result.failures:
        return result
    failures = [f.model_copy(update={"error": excerpt(f.error)}) for f in result.failures]
    return result.model_copy(update={"failures": failures})


async def finish_decode(
    app: web.Application, job: ChatJob, result: DecodeResult, completion_id: str
) -> None:
    """Count the decode, log it, and append its record to the dataset sink (if one is set)."""
    app[METRICS].observe_decode(result.teachers)
    log.info(
        "decode finished",
        extra={
            "completion_id": completion_id,
            "ensemble": job.ensemble,
            "wall_s": round(result.wall_s, 3),
            "steps": len(result.best.steps),
            "score": result.best.score,
            "teacher_failures": [f"{f.teacher}/{f.role}: {f.error}" for f in result.failures],
            "dropped": result.dropped,
        },
    )
    sink = app.get(SINK)
    if sink is None:
        return
    try:
        await sink(trace_record(completion_id, job.ensemble, job.decode, result))
    except OSError as error:
        log.error(
            "dataset sink failed; the trace is only in the response",
            extra={"completion_id": completion_id, "error": str(error)},
        )
