"""Scoring cost on the real teacher: one-token cached reads against ``prompt_logprobs``.

Six candidates of one step are scored at contexts of about 200, 800 and 1,600 tokens by
each method. Every run builds a fresh context (a run number in the question, so no earlier
run's prefix cache helps), reads it once with one proposal call that samples the six
candidates (as a step's proposals do; its time is kept beside the scores), then scores the
six together by each method, cached first, as a round does (`score_many`), counting the
HTTP requests each method sends by route. The default target is the reference answer after
``candidate + answer prompt`` (reference mode); ``step`` scores each candidate step itself.
Each figure is the median of the runs.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import httpx

from cord_proxy.config import ScoreMethod, TeacherConfig
from cord_proxy.errors import TeacherError
from cord_proxy.teachers import THINK_OPEN, Message
from cord_proxy.teachers.base import SpanScore
from cord_proxy.teachers.http_endpoint import EachPosted
from cord_proxy.teachers.openai_compat import OpenAICompatTeacher

ScoringMode = Literal["reference", "step"]
ANSWER_PROMPT = "</think> The final answer is "
PROPOSAL_CALLS = 5


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
    propose_s: list[float]
    requests: list[dict[str, int]]  # each run's requests by route

    @property
    def median_s(self) -> float:
        return statistics.median(self.runs_s)

    def requests_per_candidate(self, candidates: int) -> dict[str, float]:
        total: Counter[str] = Counter()
        for run in self.requests:
            total.update(run)
        runs = max(len(self.requests), 1)
        return {route: count / runs / candidates for route, count in sorted(total.items())}


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


def counting_requests(teacher: OpenAICompatTeacher) -> Counter[str]:
    """The HTTP requests `teacher` sends from now, by route (tokenize, detokenize,
    completions), counted as they leave its endpoint: one by one, or in a batch."""
    counts: Counter[str] = Counter()
    endpoint = teacher._endpoint
    post_json, post_json_many = endpoint.post_json, endpoint.post_json_many

    async def one(url: str, body: dict[str, Any]) -> dict[str, Any]:
        counts[url.rsplit("/", 1)[-1]] += 1
        return await post_json(url, body)

    async def many(
        url: str, bodies: Sequence[bytes], each: EachPosted, slots: asyncio.Semaphore
    ) -> None:
        counts[url.rsplit("/", 1)[-1]] += len(bodies)
        await post_json_many(url, bodies, each, slots)

    endpoint.post_json = one  # type: ignore[method-assign]
    endpoint.post_json_many = many  # type: ignore[method-assign]
    return counts


async def score_together(
    teacher: OpenAICompatTeacher, conversation: list[Message], requests: list[tuple[str, str]]
) -> list[SpanScore]:
    """The candidates scored as a round scores them: in one batch where the teacher takes
    one (`score_many`), else one call each."""
    many = getattr(teacher, "score_many", None)
    if many is None:
        return list(await asyncio.gather(*(teacher.score(conversation, p, t) for p, t in requests)))
    scored = await many(conversation, requests)
    for span in scored:
        if isinstance(span, TeacherError):
            raise span
    return list(scored)


async def distinct_proposals(
    settings: ScoringSettings,
    proposer: OpenAICompatTeacher,
    conversation: list[Message],
    trace: str,
) -> list[str]:
    """`settings.candidates` different step texts, sampled as a step's proposals are (twins
    would be one candidate in a round, read once): another call only when one sampled twins;
    where the model keeps writing the same step, shorter cuts of it make up the number."""
    texts: list[str] = []
    for _ in range(PROPOSAL_CALLS):
        proposals = await proposer.propose(
            conversation,
            trace,
            n=settings.candidates,
            stop=["\n\n"],  # the next step, whole: a step ends with a blank line
            max_tokens=settings.candidate_tokens,
        )
        for proposal in proposals:
            if proposal.text not in texts:
                texts.append(proposal.text)
        if len(texts) >= settings.candidates:
            return texts[: settings.candidates]
    cuts = [text[:-cut] for cut in range(3, 60, 3) for text in texts if len(text) > cut]
    for cut in cuts:
        if cut not in texts and len(texts) < settings.candidates:
            texts.append(cut)
    if len(texts) < settings.candidates:
        raise RuntimeError(f"only {len(texts)} distinct steps after {PROPOSAL_CALLS} calls")
    return texts


async def _one_run(
    settings: ScoringSettings,
    teachers: dict[str, OpenAICompatTeacher],
    counts: dict[str, Counter[str]],
    context: int,
    run: int,
    cells: dict[tuple[int, str], Cell],
) -> None:
    question = _question(run * 10_000 + context)
    trace, _ = build_trace(settings, question, context)
    conversation = [Message(role="user", content=question)]
    proposer = next(iter(teachers.values()))
    proposing = time.perf_counter()
    texts = await distinct_proposals(settings, proposer, conversation, trace)
    propose_s = time.perf_counter() - proposing
    requests = _requests(settings, trace, texts)
    for method, teacher in teachers.items():
        counts[method].clear()
        started = time.perf_counter()
        spans = await score_together(teacher, conversation, requests)
        cell = cells[(context, method)]
        cell.runs_s.append(time.perf_counter() - started)
        cell.propose_s.append(propose_s)
        cell.requests.append(dict(counts[method]))
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
    counts = {method: counting_requests(teacher) for method, teacher in teachers.items()}
    cells: dict[tuple[int, str], Cell] = {
        (c, m): Cell(c, m, [], [], [], [], [], [])
        for c in settings.contexts
        for m in settings.methods
    }
    try:
        for run in range(settings.runs):
            for context in settings.contexts:
                await _one_run(settings, teachers, counts, context, run, cells)
    finally:
        for teacher in teachers.values():
            await teacher.aclose()
    rows = [
        {
            **asdict(cell),
            "median_s": cell.median_s,
            "propose_median_s": statistics.median(cell.propose_s),
            "requests_per_candidate": cell.requests_per_candidate(settings.candidates),
            "methods_used": sorted(set(cell.methods_used)),
        }
        for cell in cells.values()
    ]
    return {"settings": asdict(settings), "rows": rows, "ratios": _ratios(cells, settings)}
