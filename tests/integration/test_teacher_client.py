"""OpenAICompatTeacher against the real local vLLM teacher (Gemma 3 270M on the CPU).

Scores are checked against an independent computation by transformers on the same
converted weights (tests/integration/transformers_logprobs.py, run in the teacher's
virtualenv). Token counts are kept small: the CPU teacher generates about 24 tokens/s.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest

from cord_proxy.config import GEMMA_TEMPLATE, ChatPrompt, TeacherConfig
from cord_proxy.local import LOCAL_MODEL_NAME
from cord_proxy.teachers.base import Message
from cord_proxy.teachers.openai_compat import OpenAICompatTeacher
from cord_proxy.teachers.prompting import render_template
from tests.integration.reference_logprobs import transformers_items

pytestmark = pytest.mark.integration

MAX_MEAN_GAP = 0.1  # nats/token between vLLM (bf16) and transformers (float32)

QUESTION = "A baker makes 6 trays of 7 cookies. How many cookies is that in all?"
CONVERSATION = [Message(role="user", content=QUESTION)]
STEPS = (
    "### Step 1. Read the problem. The baker makes trays of cookies, and every tray holds the "
    "same number of cookies. There are 6 trays, and each tray holds 7 cookies. We want the "
    "total number of cookies on all of the trays together.\n\n"
    "### Step 2. Choose the operation. When a number of equal groups is combined, the total is "
    "the number of groups times the size of each group. Here the groups are the trays, so the "
    "total is 6 times 7. Adding 7 six times would give the same result, but multiplying is "
    "quicker and less likely to go wrong.\n\n"
    "### Step 3. Compute the product. Six times seven: 6 x 7. We can build it from facts we "
    "know well. Five sevens are 35, and one more seven is 7, so six sevens are 35 + 7. Then "
    "35 + 7 = 42. As a check, seven sixes are 6 + 6 + 6 + 6 + 6 + 6 + 6, which is 12 + 12 + "
    "12 + 6 = 36 + 6 = 42, the same number.\n\n"
    "### Step 4. Check the answer makes sense. Each tray has a little less than 10 cookies, so "
    "six trays have a little less than 60 cookies. 42 is less than 60 and more than 30, which "
    "is what we expected. The units are cookies.\n"
)  # about 350 tokens with the template around it
REFERENCE = "The final answer is 42."

# name -> (prefix, target). Each ends the prompt; the tokenizer may merge across the seam.
CASES: dict[str, tuple[str, str]] = {
    # the prefix's trailing space merges into " The"
    "reference-answer": (STEPS + "\n### Step 5. ", REFERENCE),
    # the prefix ends mid-word: " answer" straddles the seam
    "mid-word": (STEPS + "\n### Step 5. The final ans", "wer is 42."),
    # a step boundary: the prefix's "\n" and the target's "\n" make one "\n\n" token
    "newline": (STEPS, "\n### Step 5. " + REFERENCE),
    # "is " + " 42": the two spaces are one token
    "space": (STEPS + "\n### Step 5. The final answer is ", " 42"),
    # a rare character is four byte tokens: three decode to "", the fourth to the character
    "byte-fallback": (STEPS + "\n### Step 5. The baker's mark is ", "\U0002000b and 42."),
}
STRADDLING = ("reference-answer", "mid-word", "newline", "space")

TeacherFactory = Callable[..., OpenAICompatTeacher]


def rendered(prefix: str, target: str) -> str:
    return render_template(GEMMA_TEMPLATE, CONVERSATION, prefix + target)


@pytest.fixture
async def make_teacher(local_teacher: str) -> AsyncIterator[TeacherFactory]:
    teachers: list[OpenAICompatTeacher] = []

    def make(session: aiohttp.ClientSession | None = None, **overrides: Any) -> OpenAICompatTeacher:
        settings: dict[str, Any] = {
            "name": "local-gemma",
            "base_url": local_teacher,
            "model": LOCAL_MODEL_NAME,
            "timeout": 120.0,
            "max_retries": 0,
            **overrides,
        }
        teacher = OpenAICompatTeacher(TeacherConfig(**settings), session=session)
        teachers.append(teacher)
        return teacher

    yield make
    for teacher in teachers:
        await teacher.aclose()


@pytest.fixture(scope="module")
def transformers_spans(local_teacher: str) -> Iterator[dict[str, dict[str, Any]]]:
    """Per case: the span's tokens and log-probabilities by transformers, float32."""
    items = []
    for prefix, target in CASES.values():
        text = rendered(prefix, target)
        items.append({"text": text, "target_start": len(text) - len(target)})
    yield dict(zip(CASES, transformers_items(items, timeout=600), strict=True))


# --- propose ---------------------------------------------------------------------------


class ServedUsage:
    """The ``usage`` of every generation the server answered, read from the bytes it sent."""

    def __init__(self) -> None:
        self.bodies: dict[int, bytearray] = {}
        self.trace = aiohttp.TraceConfig()
        self.trace.on_response_chunk_received.append(self._chunk)

    async def _chunk(
        self, session: object, context: object, params: aiohttp.TraceResponseChunkReceivedParams
    ) -> None:
        if params.url.path.endswith("/completions"):
            self.bodies.setdefault(id(context), bytearray()).extend(params.chunk)

    def completion_tokens(self) -> int:
        return sum(json.loads(b)["usage"]["completion_tokens"] for b in self.bodies.values())

    def prompt_tokens(self) -> int:
        return sum(json.loads(b)["usage"]["prompt_tokens"] for b in self.bodies.values())


@pytest.fixture
async def served() -> AsyncIterator[tuple[ServedUsage, aiohttp.ClientSession]]:
    usage = ServedUsage()
    async with aiohttp.ClientSession(trace_configs=[usage.trace]) as session:
        yield usage, session


SHORT_STEPS = "### Step 1. One.\n\n### Step 2. Two.\n\n### Step 3."
COUNTING = [Message(role="user", content="Count from one to five, one step at a time.")]


@pytest.mark.parametrize("prompt", [GEMMA_TEMPLATE, ChatPrompt()], ids=["template", "chat"])
async def test_propose_stops_before_the_step_marker(
    make_teacher: TeacherFactory, prompt: Any, served: tuple[ServedUsage, aiohttp.ClientSession]
) -> None:
    usage, session = served
    teacher = make_teacher(session=session, prompt=prompt, seed=7)
    (proposal,) = await teacher.propose(
        COUNTING, SHORT_STEPS, n=1, stop=["### Step"], max_tokens=24, temperature=0.0
    )
    # the base model continues the pattern: " Three.\n\n" then "### Step", cut off
    assert proposal.finish_reason == "stop"
    assert proposal.stop_string == "### Step"
    assert "### Step" not in proposal.text
    assert proposal.text.strip() == "Three."
    assert 0 < proposal.tokens < 24
    assert len(usage.bodies) == 1
    assert proposal.tokens == usage.completion_tokens()  # the server's own count
    assert proposal.prompt_tokens == usage.prompt_tokens() > 0


async def test_propose_runs_into_max_tokens(
    make_teacher: TeacherFactory, served: tuple[ServedUsage, aiohttp.ClientSession]
) -> None:
    usage, session = served
    teacher = make_teacher(session=session, prompt=GEMMA_TEMPLATE)
    (proposal,) = await teacher.propose(
        COUNTING, SHORT_STEPS, n=1, stop=[], max_tokens=3, temperature=0.0
    )
    assert (proposal.finish_reason, proposal.stop_string) == ("length", None)
    assert proposal.tokens == 3 == usage.completion_tokens()
    assert proposal.text


async def test_propose_n_samples_with_a_sure_stop(
    make_teacher: TeacherFactory, served: tuple[ServedUsage, aiohttp.ClientSession]
) -> None:
    usage, session = served
    teacher = make_teacher(session=session, prompt=GEMMA_TEMPLATE, temperature=1.0)
    proposals = await teacher.propose(
        COUNTING, SHORT_STEPS + " Three.", n=2, stop=["\n"], max_tokens=8, seed=1
    )
    assert len(proposals) == 2
    for proposal in proposals:
        assert "\n" not in proposal.text
        assert proposal.finish_reason in ("stop", "length", "closed")
        if proposal.finish_reason == "stop":
            assert proposal.stop_string == "\n"
    assert sum(p.tokens for p in proposals) == usage.completion_tokens()


# --- score -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["cached", "prompt_logprobs", "echo"])
@pytest.mark.parametrize("case", list(CASES))
async def test_template_score_agrees_with_transformers(
    make_teacher: TeacherFactory,
    transformers_spans: dict[str, dict[str, Any]],
    case: str,
    method: str,
) -> None:
    """The span is the same token ids as transformers', with the same log-probabilities."""
    prefix, target = CASES[case]
    teacher = make_teacher(prompt=GEMMA_TEMPLATE, score_method=method)
    span = await teacher.score(CONVERSATION, prefix, target)
    reference = transformers_spans[case]
    assert list(span.token_ids) == reference["ids"]
    assert len(span.logprobs) == reference["count"]
    assert abs(span.mean_logprob - reference["mean"]) < MAX_MEAN_GAP
    assert span.context_tokens + len(span.token_ids) == reference["prompt_tokens"]
    assert span.method == method
    if case == "reference-answer":
        assert span.context_tokens > 300
    if case in STRADDLING:  # the first span token carries text of the prefix too
        assert reference["span_text"].endswith(target)
        assert len(reference["span_text"]) > len(target)


async def test_the_three_methods_agree(make_teacher: TeacherFactory) -> None:
    prefix, target = CASES["reference-answer"]
    spans = [
        await make_teacher(prompt=GEMMA_TEMPLATE, score_method=method).score(
            CONVERSATION, prefix, target
        )
        for method in ("prompt_logprobs", "echo", "cached")
    ]
    by_prompt_logprobs, by_echo, by_cached = spans
    assert by_echo.token_ids == by_prompt_logprobs.token_ids == by_cached.token_ids
    assert by_echo.context_tokens == by_prompt_logprobs.context_tokens
    assert by_echo.logprobs == pytest.approx(by_prompt_logprobs.logprobs, abs=1e-3)
    # a prefix-cache hit may differ from a fresh prefill by bf16 noise (DESIGN.md)
    assert by_cached.logprobs == pytest.approx(by_prompt_logprobs.logprobs, abs=0.1)


async def test_auto_probes_and_chooses_cached(make_teacher: TeacherFactory) -> None:
    teacher = make_teacher(prompt=GEMMA_TEMPLATE)
    probe = await teacher.probe_scoring()
    assert probe.method == "cached"
    assert probe.mean_abs_diff is not None and probe.mean_abs_diff < 0.1
    span = await teacher.score(CONVERSATION, *CASES["space"])
    assert span.method == "cached"


@pytest.mark.parametrize("case", ["reference-answer", "mid-word"])
async def test_chat_path_gives_the_same_tokens(make_teacher: TeacherFactory, case: str) -> None:
    """The server's chat template renders the same text as the proxy's Gemma template."""
    prefix, target = CASES[case]
    by_template = await make_teacher(prompt=GEMMA_TEMPLATE).score(CONVERSATION, prefix, target)
    by_chat = await make_teacher(prompt=ChatPrompt()).score(CONVERSATION, prefix, target)
    assert len(by_chat.tokens) == len(by_template.tokens)
    assert by_chat.tokens == by_template.tokens
    assert by_chat.logprobs == pytest.approx(by_template.logprobs, abs=1e-2)


# --- concurrency -----------------------------------------------------------------------


def timing_trace(spans: list[tuple[str, tuple[float, float]]]) -> aiohttp.TraceConfig:
    """Records each request's URL, when it went out and when its answer was in."""
    started: dict[int, float] = {}
    trace = aiohttp.TraceConfig()

    async def on_start(session: object, context: object, params: object) -> None:
        started[id(context)] = time.perf_counter()

    async def on_end(
        session: object, context: object, params: aiohttp.TraceRequestEndParams
    ) -> None:
        spans.append((str(params.url), (started.pop(id(context)), time.perf_counter())))

    trace.on_request_start.append(on_start)
    trace.on_request_end.append(on_end)
    return trace


async def test_six_candidates_are_scored_concurrently(
    make_teacher: TeacherFactory, local_teacher: str
) -> None:
    timings: list[tuple[str, tuple[float, float]]] = []
    async with aiohttp.ClientSession(trace_configs=[timing_trace(timings)]) as session:
        teacher = make_teacher(
            session=session, prompt=GEMMA_TEMPLATE, score_method="prompt_logprobs"
        )
        prefix = CASES["reference-answer"][0]
        targets = [f"The final answer is {n}." for n in (42, 41, 43, 36, 48, 13)]
        spans = await asyncio.gather(*(teacher.score(CONVERSATION, prefix, t) for t in targets))
        reads = [t for url, t in timings if url.endswith("/v1/completions")]
        assert len(reads) == 6
        starts, ends = zip(*reads, strict=True)
        assert max(starts) < min(ends), "the six score calls were not in flight together"
        for span, target in zip(spans, targets, strict=True):
            async with session.post(
                local_teacher.removesuffix("/v1") + "/detokenize",
                json={"model": LOCAL_MODEL_NAME, "tokens": list(span.token_ids)},
            ) as answer:
                assert (await answer.json())["prompt"].endswith(target)
            assert span.context_tokens > 300
