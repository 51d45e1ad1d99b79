"""Fan-out efficiency and proxy CPU per teacher call, with the engine in this process.

`cord_proxy.decoding.decode` drives simulated teachers running in other processes, so
``time.process_time()`` of this process is the engine's (and its HTTP client's) CPU time.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from bench.critical import ideal_paths, service_lag
from bench.procs import SimTeachers
from bench.scenario import question, teacher_config
from cord_proxy import DecodeJob, DecodeOptions, DecodeResult, decode
from cord_proxy.gc_settings import settle_start_up
from cord_proxy.teachers.openai_compat import OpenAICompatTeacher


@dataclass(frozen=True)
class FanoutSettings:
    beam_width: int = 4
    steps: int = 10
    concurrent_decodes: int = 16
    gc: str = "server"  # "server": as `serve` and `distill` set it (gc_settings.py); "python"
    runs: int = 3  # each measure is run this many times and reported as the median


def make_teachers(sims: SimTeachers) -> list[OpenAICompatTeacher]:
    """One teacher client per simulated model; each opens its own aiohttp session."""
    return [
        OpenAICompatTeacher(teacher_config(name, sims.base_url(index), name))
        for index, name in enumerate(sims.models)
    ]


async def close_teachers(teachers: Sequence[OpenAICompatTeacher]) -> None:
    for teacher in teachers:
        await teacher.aclose()


def decode_options(settings: FanoutSettings) -> DecodeOptions:
    # The simulated traces close with </think> at `steps`; max_steps leaves room for that.
    return DecodeOptions(beam_width=settings.beam_width, max_steps=settings.steps + 2)


@dataclass
class Measured:
    results: list[DecodeResult]
    wall_s: float
    cpu_s: float
    calls: int


async def _measure(
    sims: SimTeachers,
    teachers: list[OpenAICompatTeacher],
    options: DecodeOptions,
    count: int,
    tag: str,
) -> Measured:
    sims.reset()
    problems = [question(i, tag) for i in range(count)]
    cpu_before, started = time.process_time(), time.perf_counter()
    results = await asyncio.gather(
        *(decode(DecodeJob.create(q, teachers, options, reference_answer=a)) for q, a in problems)
    )
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    return Measured(list(results), wall, cpu, len(sims.records()))


def _round_ideal(result: DecodeResult) -> float:
    return sum(r.critical_s for r in result.rounds) + result.answer_wait_s


def _single(measured: Measured, sims: SimTeachers) -> dict[str, Any]:
    records = sims.records()
    (ideal,) = ideal_paths(records).values()
    result = measured.results[0]
    return {
        "wall_s": measured.wall_s,
        "ideal_s": ideal.wall_s,
        "efficiency": ideal.wall_s / measured.wall_s,
        "rounds_critical_s": _round_ideal(result),
        "rounds_efficiency": _round_ideal(result) / measured.wall_s,
        "steps": len(result.rounds),
        "candidates_per_step": max(r.candidates for r in result.rounds),
        "teacher_calls": measured.calls,
        "proxy_cpu_s": measured.cpu_s,
        "proxy_cpu_ms_per_call": 1000 * measured.cpu_s / max(measured.calls, 1),
        "added_latency_s": measured.wall_s - ideal.wall_s,
        "score": result.best.score,
        "sim_lag_p99_s": service_lag(records)["p99_s"],
    }


def _concurrent(measured: Measured, sims: SimTeachers) -> dict[str, Any]:
    records = sims.records()
    ideals = ideal_paths(records)
    walls = [r.wall_s for r in measured.results]
    ideal_walls = [i.wall_s for i in ideals.values()]
    return {
        "decodes": len(measured.results),
        "wall_s": measured.wall_s,
        "ideal_s": max(ideal_walls),
        "efficiency": max(ideal_walls) / measured.wall_s,
        "mean_decode_efficiency": statistics.fmean(ideal_walls) / statistics.fmean(walls),
        "teacher_calls": measured.calls,
        "proxy_cpu_s": measured.cpu_s,
        "proxy_cpu_ms_per_call": 1000 * measured.cpu_s / max(measured.calls, 1),
        "sim_conversations": len(ideals),
        "sim_lag_p99_s": service_lag(records)["p99_s"],
    }


async def run_fanout(sims: SimTeachers, settings: FanoutSettings) -> dict[str, Any]:
    """One B x K decode against its ideal; then many at once for CPU per call; each
    `settings.runs` times, alternating, reported as medians."""
    teachers = make_teachers(sims)
    options = decode_options(settings)
    singles: list[dict[str, Any]] = []
    concurrents: list[dict[str, Any]] = []
    try:
        await _measure(sims, teachers, options.model_copy(update={"max_steps": 2}), 2, "warm")
        with collector_as(settings.gc):
            for run in range(settings.runs):
                tag = f"-{run}" if run else ""  # the first run's questions as before
                one = await _measure(sims, teachers, options, 1, "fan" + tag)
                singles.append(_single(one, sims))
                many = await _measure(
                    sims, teachers, options, settings.concurrent_decodes, "cpu" + tag
                )
                concurrents.append(_concurrent(many, sims))
    finally:
        await close_teachers(teachers)
    return {
        "beam_width": settings.beam_width,
        "teachers": sims.models,
        "steps": settings.steps,
        "gc": settings.gc,
        "runs": settings.runs,
        "single": median_run(singles),
        "concurrent": median_run(concurrents),
    }


def median_run(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Each number's median over the runs, and the range of the CPU per call."""
    merged = {
        key: statistics.median(run[key] for run in runs) if _is_number(value) else value
        for key, value in runs[0].items()
    }
    cpu = [run["proxy_cpu_ms_per_call"] for run in runs]
    return {**merged, "proxy_cpu_ms_per_call_range": [min(cpu), max(cpu)]}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@contextmanager
def collector_as(setting: str) -> Iterator[None]:
    """The garbage collector as a cord-proxy process runs it after start-up ("server"), or
    as Python starts ("python"); as it was, after."""
    threshold = gc.get_threshold()
    if setting == "server":
        settle_start_up()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


async def profile_concurrent(sims: SimTeachers, settings: FanoutSettings) -> str:
    """A pyinstrument profile of the concurrent decodes (a separate, unmeasured pass)."""
    from pyinstrument import Profiler

    teachers = make_teachers(sims)
    profiler = Profiler(async_mode="disabled")
    try:
        with collector_as(settings.gc):
            profiler.start()
            await _measure(
                sims, teachers, decode_options(settings), settings.concurrent_decodes, "prof"
            )
            profiler.stop()
    finally:
        await close_teachers(teachers)
    return profiler.output_text(unicode=False, color=False)
