"""Real teachers: CoRD against curation and against one teacher alone, on one vLLM server.

The K teachers are one model at K temperatures (the paper's homogeneous set-up). Each
problem runs the three arms one after another, so they never share the server.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx

from bench.curation import curate
from bench.scenario import question
from cord_proxy import DecodeJob, DecodeOptions, decode
from cord_proxy.config import ScoreMethod, TeacherConfig
from cord_proxy.teachers import Message
from cord_proxy.teachers.openai_compat import OpenAICompatTeacher

TEMPERATURES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass(frozen=True)
class RealSettings:
    base_url: str = "http://127.0.0.1:8401/v1"
    model: str = "gemma3-270m"
    problems: int = 3
    beam_width: int = 2
    teachers: int = 3
    max_steps: int = 4
    step_tokens: int = 32
    answer_tokens: int = 16
    seed: int | None = None
    timeout_s: float = 600.0


@dataclass
class ArmRun:
    wall_s: float
    tokens: int
    calls: int
    score: float
    correct: bool


def reachable(settings: RealSettings) -> str | None:
    """Why the real teacher cannot be used, or None."""
    try:
        response = httpx.get(settings.base_url.rstrip("/") + "/models", timeout=5.0)
        names = [m.get("id") for m in response.json().get("data", [])]
    except (httpx.HTTPError, ValueError, AttributeError) as error:
        return f"no teacher at {settings.base_url} ({type(error).__name__})"
    if settings.model not in names:
        return f"no teacher at {settings.base_url} serving {settings.model} (found {names})"
    return None


def local_teachers(
    base_url: str,
    model: str,
    count: int,
    *,
    timeout_s: float,
    max_concurrency: int,
    score_method: ScoreMethod = "auto",
    sessions: Sequence[aiohttp.ClientSession | None] = (),
) -> list[OpenAICompatTeacher]:
    """The first `count` homogeneous teachers of the local model, one per temperature; the
    i-th on `sessions[i]` where given (the caller closes it), else on a session of its own."""
    given = [*sessions, *[None] * (count - len(sessions))]
    return [
        OpenAICompatTeacher(
            TeacherConfig(
                name=f"{model}-t{temperature}",
                base_url=base_url,
                model=model,
                temperature=temperature,
                score_method=score_method,
                timeout=timeout_s,
                max_concurrency=max_concurrency,
            ),
            session=session,
        )
        for temperature, session in zip(TEMPERATURES[:count], given, strict=False)
    ]


def step_options(
    beam_width: int, max_steps: int, step_tokens: int, answer_tokens: int, seed: int | None
) -> DecodeOptions:
    """Decode options with a thinking budget of `max_steps` full steps."""
    return DecodeOptions(
        beam_width=beam_width,
        max_steps=max_steps,
        max_step_tokens=step_tokens,
        thinking_budget=max_steps * step_tokens,
        answer_budget=answer_tokens,
        seed=seed,
    )


def make_teachers(settings: RealSettings) -> list[OpenAICompatTeacher]:
    return local_teachers(
        settings.base_url,
        settings.model,
        settings.teachers,
        timeout_s=settings.timeout_s,
        max_concurrency=64,
    )


def decode_options(settings: RealSettings) -> DecodeOptions:
    s = settings
    return step_options(s.beam_width, s.max_steps, s.step_tokens, s.answer_tokens, s.seed)


async def _timed(
    arm: str, teachers: list[OpenAICompatTeacher], index: int, settings: RealSettings
) -> ArmRun:
    text, reference = question(index, tag=None)
    conversation = [Message(role="user", content=text)]
    options = decode_options(settings)
    started = time.perf_counter()
    if arm == "cord":
        result = await decode(
            DecodeJob.create(conversation, teachers, options, reference_answer=reference)
        )
        score, answer = result.best.score, result.best.answer
        tokens = sum(u.completion_tokens for u in result.teachers)
        calls = sum(u.propose_calls + u.score_calls for u in result.teachers)
    else:
        proposers = teachers if arm == "curation" else teachers[:1]
        samples = settings.beam_width if arm == "curation" else 1
        trace = await curate(conversation, proposers, teachers, reference, options, samples)
        score, answer, tokens, calls = trace.score, trace.answer, trace.tokens, trace.calls
    wall = time.perf_counter() - started
    return ArmRun(wall, tokens, calls, score, reference in answer)


def _summary(runs: list[ArmRun]) -> dict[str, Any]:
    return {
        "wall_s": sum(r.wall_s for r in runs),
        "wall_s_per_problem": statistics.fmean(r.wall_s for r in runs),
        "teacher_tokens": sum(r.tokens for r in runs),
        "teacher_calls": sum(r.calls for r in runs),
        "mean_score": statistics.fmean(r.score for r in runs),
        "accuracy": sum(r.correct for r in runs) / len(runs),
    }


async def run_real(settings: RealSettings) -> dict[str, Any]:
    """The three arms on every problem; or why there is no teacher to run them on."""
    problem = reachable(settings)
    if problem is not None:
        return {"skipped": problem}
    teachers = make_teachers(settings)
    arms: dict[str, list[ArmRun]] = {"cord": [], "curation": [], "single": []}
    try:
        for index in range(settings.problems):
            for arm, runs in arms.items():
                runs.append(await _timed(arm, teachers, index, settings))
    finally:
        for teacher in teachers:
            await teacher.aclose()
    summary = {arm: _summary(runs) for arm, runs in arms.items()}
    curation_wall = summary["curation"]["wall_s"]
    return {
        "settings": settings.__dict__,
        "teachers": [t.name for t in teachers],
        "arms": summary,
        "cord_curation_wall_ratio": (
            summary["cord"]["wall_s"] / curation_wall if curation_wall else math.nan
        ),
    }
