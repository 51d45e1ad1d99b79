"""A long decode on the real teacher: CoRD past 1,200 tokens of context, by each scoring method.

The question is long (a table of pens and cows) so that, with at least 12 steps, every
scorer reads more than 1,200 tokens by the end. For each method the same decode runs with
the teachers scoring that way; the round time by step index shows whether scoring grows
with the trace, and each round's propose and score times (its critical path) where the
time goes. Curation (bench/curation.py) runs once at the same budget, with the first
method's teachers, for the CoRD / curation wall ratio.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from bench.curation import curate
from bench.real import local_teachers, step_options
from cord_proxy import DecodeJob, DecodeOptions, decode
from cord_proxy.config import ScoreMethod
from cord_proxy.teachers import Message
from cord_proxy.teachers.openai_compat import OpenAICompatTeacher

PENS = 72


@dataclass(frozen=True)
class LongSettings:
    base_url: str = "http://127.0.0.1:8401/v1"
    model: str = "gemma3-270m"
    methods: tuple[ScoreMethod, ...] = ("cached", "prompt_logprobs")
    beam_width: int = 2
    teachers: int = 3
    max_steps: int = 16
    step_tokens: int = 64
    answer_tokens: int = 16
    seed: int = 7
    timeout_s: float = 900.0


def long_question() -> tuple[str, str]:
    """A question of about 750 tokens and its answer."""
    counts = [3 + (i * 7) % 9 for i in range(1, PENS + 1)]
    rows = "\n".join(f"- Pen {i}: {c} cows" for i, c in enumerate(counts, start=1))
    text = (
        "A farmer keeps cows in pens and wrote down how many cows each pen holds:\n"
        f"{rows}\n"
        "Add the pens one at a time, keeping a running total. How many cows are there?"
    )
    return text, str(sum(counts))


def make_teachers(settings: LongSettings, method: ScoreMethod) -> list[OpenAICompatTeacher]:
    return local_teachers(
        settings.base_url,
        settings.model,
        settings.teachers,
        timeout_s=settings.timeout_s,
        max_concurrency=256,
        score_method=method,
    )


def options(settings: LongSettings) -> DecodeOptions:
    s = settings
    return step_options(s.beam_width, s.max_steps, s.step_tokens, s.answer_tokens, s.seed)


async def _cord(settings: LongSettings, method: ScoreMethod) -> dict[str, Any]:
    text, reference = long_question()
    teachers = make_teachers(settings, method)
    try:
        started = time.perf_counter()
        result = await decode(
            DecodeJob.create(
                [Message(role="user", content=text)],
                teachers,
                options(settings),
                reference_answer=reference,
            )
        )
        wall = time.perf_counter() - started
    finally:
        for teacher in teachers:
            await teacher.aclose()
    best = result.best
    return {
        "wall_s": wall,
        "steps": len(result.rounds),
        "prompt_tokens": result.prompt_tokens,
        "final_context_tokens": result.prompt_tokens + best.reasoning_tokens,
        "rounds": [r.model_dump() for r in result.rounds],
        "score": best.score,
        "correct": reference in best.answer,
    }


async def _curation(settings: LongSettings) -> dict[str, Any]:
    text, reference = long_question()
    teachers = make_teachers(settings, settings.methods[0])
    try:
        started = time.perf_counter()
        trace = await curate(
            [Message(role="user", content=text)],
            teachers,
            teachers,
            reference,
            options(settings),
            settings.beam_width,
        )
        wall = time.perf_counter() - started
    finally:
        for teacher in teachers:
            await teacher.aclose()
    return {"wall_s": wall, "tokens": trace.tokens, "correct": reference in trace.answer}


async def run_long(settings: LongSettings) -> dict[str, Any]:
    """CoRD by each method, then curation; and the CoRD / curation wall ratios."""
    cord = {method: await _cord(settings, method) for method in settings.methods}
    curation = await _curation(settings)
    ratios = {m: r["wall_s"] / curation["wall_s"] for m, r in cord.items()}
    return {
        "settings": asdict(settings),
        "cord": cord,
        "curation": curation,
        "cord_curation_wall_ratio": ratios,
    }


def score_share(round_: dict[str, Any]) -> float:
    """Scoring's share of a round's critical path (proposals, then their reads)."""
    critical = round_["propose_s"] + round_["score_s"]
    return round_["score_s"] / critical if critical > 0 else 0.0
