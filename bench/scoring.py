"""Scoring cost on the real teacher: one-token cached reads against ``prompt_logprobs``.

Six candidates of one step are scored at contexts of about 200, 800 and 1,600 tokens by
each method. Every run builds a fresh context (a run number in the question, so no earlier
run's prefix cache helps), reads it once with one proposal call that samples the six
candidates (as a step's proposals do), then scores the six by each method, cached first.
The default target is the reference answer after ``candidate + answer prompt`` (reference
mode); ``step`` scores each candidate step itself. Each figure is the median of the runs.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import httpx

from cord_proxy.config import ScoreMethod, TeacherConfig
from cord_proxy.teachers import THINK_OPEN, Message
from cord_proxy.teachers.openai_compat import OpenAICompatTeacher

ScoringMode = Literal["reference", "step"]
ANSWER_PROMPT = "</think> The final answer is "


@dataclass(frozen=True)
class ScoringSettings:
    base_url: str = "http://127.0.0.1:8401/v1"
    model: str = "gemma3-270m"
    contexts: tuple[int, ...] = (200, 800, 1600)
    methods: tuple[ScoreMethod, ...] = ("cached", "prompt_logprobs")
    runs: int = 3
    candidates: int = 6
    candidate_tokens: int = 24
    reference: str = "42 cows in total"
    mode: ScoringMode = "reference"
    timeout_s: float = 600.0


@dataclass
class Cell:
    """One (context size, method): every run's seconds and what was scored."""

    context: int
    method: str
    runs_s: list[float]
    context_tokens: list[int]
    target_tokens: list[int]
    methods_used: list[str]

    @property
    def median_s(self) -> float:
        return statistics.median(self.runs_s)


def _question(run: int) -> str:
    return (
        f"[run {run}] A farmer keeps cows in many pens and counts them pen by pen. "
        "How many cows are there in total?"
    )


def _step(index: int) -> str:
    cows = 3 + (index * 7) % 5
    return (
        f"### Step {index}. Pen {index} holds {cows} cows; we add them to the running total "
        f"and note that pen {index} has {cows} cows before we move on.\n\n"
    )


def _tokenize_url(base_url: str) -> str:
    root = base_url.rstrip("/")
    return (root[: -len("/v1")] if root.endswith("/v1") else root) + "/tokenize"


def count_tokens(settings: ScoringSettings, question: str, trace: str) -> int:
    """The rendered prompt's tokens, by the teacher's own chat template."""
    body = {
        "model": settings.model,
        "messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": trace},
        ],
        "add_generation_prompt": False,
        "continue_final_message": True,
        "add_special_tokens": False,
    }
    response = httpx.post(_tokenize_url(settings.base_url), json=body, timeout=60.0)
    response.raise_for_status()
    return int(response.json()["count"])


def build_trace(settings: ScoringSettings, question: str, tokens: int) -> tuple[str, int]:
    """A thinking trace that makes the whole prompt about `tokens` tokens long."""
    size = count_tokens(settings, question, THINK_OPEN + _step(1))
    per_step = max(size - count_tokens(settings, question, THINK_OPEN), 1)
    steps = max(1, round((tokens - size) / per_step) + 1)
    while True:
        trace = THINK_OPEN + "".join(_step(i) for i in range(1, steps + 1))
        size = count_tokens(settings, question, trace)
        if size >= tokens or steps > 400:
            return trace, size
        steps += max(1, (tokens - size) // per_step)


def _teacher(settings: ScoringSettings, method: ScoreMethod) -> OpenAICompatTeacher:
    return OpenAICompatTeacher(
        TeacherConfig(
            name=f"{settings.model}-{method}".replace("_", "-"),
            base_url=settings.base_url,
            model=settings.model,
            temperature=1.0,
            score_method=method,
            timeout=settings.timeout_s,
            max_concurrency=256,
            max_retries=0,
        )
    )


def _requests(settings: ScoringSettings, trace: str, texts: Sequence[str]) -> list[tuple[str, str]]:
    """(prefix, target) of each candidate's score."""
    if settings.mode == "step":
        return [(trace, text or " .") for text in texts]
    return [(trace + text + ANSWER_PROMPT, settings.reference) for text in texts]


async def _one_run(
    settings: ScoringSettings,
    teachers: dict[str, OpenAICompatTeacher],
    context: int,
    run: int,
    cells: dict[tuple[int, str], Cell],
) -> None:
    question = _question(run * 10_000 + context)
    trace, _ = build_trace(settings, question, context)
    conversation = [Message(role="user", content=question)]
    proposer = next(iter(teachers.values()))
    proposals = await proposer.propose(
        conversation,
        trace,
        n=settings.candidates,
        stop=["### Step"],
        max_tokens=settings.candidate_tokens,
        seed=run,
    )
    requests = _requests(settings, trace, [p.text for p in proposals])
    for method, teacher in teachers.items():
        started = time.perf_counter()
        spans = await asyncio.gather(
            *(teacher.score(conversation, prefix, target) for prefix, target in requests)
        )
        cell = cells[(context, method)]
        cell.runs_s.append(time.perf_counter() - started)
        cell.context_tokens.append(spans[0].context_tokens)
        cell.target_tokens.append(sum(len(s.logprobs) for s in spans))
        cell.methods_used.extend(sorted({str(getattr(s, "method", "?")) for s in spans}))


def _ratios(cells: dict[tuple[int, str], Cell], settings: ScoringSettings) -> dict[str, float]:
    small, large = min(settings.contexts), max(settings.contexts)
    ratios: dict[str, float] = {}
    cached_small, cached_large = cells.get((small, "cached")), cells.get((large, "cached"))
    slow_large = cells.get((large, "prompt_logprobs"))
    if cached_small and cached_large:
        ratios["cached_large_over_small"] = cached_large.median_s / cached_small.median_s
    if cached_large and slow_large:
        ratios["prompt_logprobs_over_cached_large"] = slow_large.median_s / cached_large.median_s
    return ratios


async def run_scoring(settings: ScoringSettings) -> dict[str, Any]:
    """The table of median seconds per (context, method); or why it could not run."""
    teachers: dict[str, OpenAICompatTeacher] = {m: _teacher(settings, m) for m in settings.methods}
    cells: dict[tuple[int, str], Cell] = {
        (c, m): Cell(c, m, [], [], [], []) for c in settings.contexts for m in settings.methods
    }
    try:
        for run in range(settings.runs):
            for context in settings.contexts:
                await _one_run(settings, teachers, context, run, cells)
    finally:
        for teacher in teachers.values():
            await teacher.aclose()
    rows = [
        {**asdict(cell), "median_s": cell.median_s, "methods_used": sorted(set(cell.methods_used))}
        for cell in cells.values()
    ]
    return {"settings": asdict(settings), "rows": rows, "ratios": _ratios(cells, settings)}


def table(result: dict[str, Any]) -> str:
    """The result as a plain-text table, one row per context size."""
    methods = list(result["settings"]["methods"])
    header = ["context (tokens)"] + [f"{m} median s (runs)" for m in methods]
    lines = [" | ".join(header)]
    by_context: dict[int, dict[str, dict[str, Any]]] = {}
    for row in result["rows"]:
        by_context.setdefault(row["context"], {})[row["method"]] = row
    for context, row in sorted(by_context.items()):
        measured = row[methods[0]]["context_tokens"]
        cells = [f"~{context} ({'/'.join(str(t) for t in measured)})"]
        for method in methods:
            runs = ", ".join(f"{s:.3f}" for s in row[method]["runs_s"])
            cells.append(f"{row[method]['median_s']:.3f} ({runs})")
        lines.append(" | ".join(cells))
    for name, value in result["ratios"].items():
        lines.append(f"{name}: {value:.2f}")
    return "\n".join(lines)
