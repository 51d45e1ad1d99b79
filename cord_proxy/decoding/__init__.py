"""The CoRD decoding engine, usable without HTTP. Its one door is `decode(job)`.

job = DecodeJob.create("What is 2 + 3?", teachers, DecodeOptions(beam_width=2),
                       reference_answer="5")
result = await decode(job)
print(result.best.reasoning, result.best.answer)
"""

from __future__ import annotations

from cord_proxy.decoding.beam import BeamSearch, ProgressCallback
from cord_proxy.decoding.job import DecodeJob
from cord_proxy.decoding.options import DecodeOptions
from cord_proxy.decoding.trace import DecodeResult

__all__ = ["DecodeJob", "DecodeOptions", "DecodeResult", "ProgressCallback", "decode"]


async def decode(job: DecodeJob, on_progress: ProgressCallback | None = None) -> DecodeResult:
    """Write one reasoning trace by collaborative step-wise multi-teacher decoding.

    Raises only the engine's errors (`cord_proxy.errors.CordError`); cancelling it cancels
    every teacher call in flight.
    """
    return await BeamSearch(job, on_progress).run()
