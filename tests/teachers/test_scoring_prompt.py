"""The scorer reads the prompt the proposer was given (issue 19, finding 7).

A teacher's `extra_body` goes with its proposals. The part of it that shapes the rendered
prompt (``chat_template``, ``chat_template_kwargs``, ``add_special_tokens``, ``tools``, and
what vLLM folds into the template's arguments: ``documents``, ``reasoning_effort``) must go
with its scoring ``/tokenize`` too, and be part of its score identity.

The FAKE vLLM here renders a character-level "chat template" that writes each of its keyword
arguments, its tools and the name of the template into the prompt, so that a field that is
lost shows up as other prompt tokens. Its chat completions merge the arguments as vLLM
0.32's ``ChatCompletionRequest.build_chat_params`` does; its ``/tokenize`` as
``TokenizeChatRequest`` does (only ``chat_template_kwargs``). The real server is exercised in
tests/integration/test_scoring_prompt_real.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from cord_proxy.config import GEMMA_TEMPLATE, TeacherConfig
from cord_proxy.errors import ConfigError
from cord_proxy.teachers.base import Message
from cord_proxy.teachers.factory import build_teacher
from cord_proxy.teachers.openai_compat import OpenAICompatTeacher
from cord_proxy.teachers.span_scoring import SpanReader
from cord_proxy.testing import fake_vllm_wire as wire
from cord_proxy.testing.serving import serving_posts

CONVERSATION = [Message(role="user", content="What is 6 times 7?")]
PREFIX = "<think>\n### Step 1. "
TARGET = "Six sevens are 42."
TOOLS = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
FLAGS = ("add_generation_prompt", "continue_final_message")
UNSET = (None, "auto")  # vLLM's merge_kwargs leaves these values out


def template_text(body: dict[str, Any], kwargs: dict[str, Any]) -> str:
    """The FAKE template: its name, its arguments and tools, then the turns (left open)."""
    marks = "".join(f"[{key}={kwargs[key]!r}]" for key in sorted(kwargs) if key not in FLAGS)
    tools = f"[tools={body['tools']!r}]" if body.get("tools") else ""
    turns = "".join(f"<{m['role']}>{m['content']}" for m in body["messages"])
    return f"({body.get('chat_template') or 'default'}){marks}{tools}{turns}"


def chat_ids(body: dict[str, Any], kwargs: dict[str, Any]) -> list[int]:
    """The template writes ``<bos>``; ``add_special_tokens`` (off by default) adds another."""
    ids = [wire.BOS, *(ord(c) for c in template_text(body, kwargs))]
    return [wire.BOS, *ids] if body.get("add_special_tokens", False) else ids


def text_ids(body: dict[str, Any]) -> list[int]:
    ids = [ord(c) for c in body["prompt"]]
    return [wire.BOS, *ids] if body.get("add_special_tokens", True) else ids


def completion_kwargs(body: dict[str, Any]) -> dict[str, Any]:
    """The template arguments of a chat completion, merged as vLLM 0.32 merges them."""
    given = body.get("chat_template_kwargs") or {}
    extra = {"documents": body.get("documents"), "reasoning_effort": body.get("reasoning_effort")}
    if body.get("reasoning_effort") is not None and "enable_thinking" not in given:
        extra["enable_thinking"] = body["reasoning_effort"] != "none"
    return given | {key: value for key, value in extra.items() if value not in UNSET}


class FakePromptVLLM:
    """A FAKE vLLM that records the prompt ids each proposal and each ``/tokenize`` read."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.proposed: list[list[int]] = []
        self.tokenized: list[list[int]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append((request.path, body))
        if request.path == "/tokenize":
            return web.json_response(self._tokenize(body))
        if request.path == "/detokenize":
            return web.json_response(wire.detokenize(body))
        if wire.is_scoring(body):
            return web.json_response(wire.score_completion(body, lambda t, p: -0.5))
        return web.json_response(self._propose(request.path, body))

    def _tokenize(self, body: dict[str, Any]) -> dict[str, Any]:
        if "messages" in body:
            ids = chat_ids(body, body.get("chat_template_kwargs") or {})
        else:
            ids = text_ids(body)
        self.tokenized.append(ids)
        pieces = [chr(i) for i in ids]
        return {"tokens": ids, "count": len(ids), "max_model_len": 2048, "token_strs": pieces}

    def _propose(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        chat = path.endswith("/chat/completions")
        ids = chat_ids(body, completion_kwargs(body)) if chat else text_ids(body)
        self.proposed.append(ids)
        choice: dict[str, Any] = {"index": 0, "finish_reason": "length"}
        choice.update({"message": {"role": "assistant", "content": "x"}} if chat else {"text": "x"})
        return {"choices": [choice], "usage": {"prompt_tokens": len(ids), "completion_tokens": 1}}

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [body for p, body in self.requests if p == path]

    def running(self) -> AbstractAsyncContextManager[str]:
        return serving_posts(self.handle)


def config(base_url: str = "http://h/v1", **overrides: Any) -> TeacherConfig:
    settings: dict[str, Any] = {
        "name": "shaped",
        "base_url": base_url,
        "model": "fake-model",
        "max_retries": 0,
        "timeout": 5.0,
        "score_method": "cached",
        **overrides,
    }
    return TeacherConfig(**settings)


@asynccontextmanager
async def teacher_on(fake: FakePromptVLLM, **overrides: Any) -> AsyncIterator[OpenAICompatTeacher]:
    async with fake.running() as base_url:
        teacher = OpenAICompatTeacher(config(base_url, **overrides))
        try:
            yield teacher
        finally:
            await teacher.aclose()


def identity(**overrides: Any) -> str:
    return OpenAICompatTeacher(config(**overrides)).score_identity


SHAPES: dict[str, dict[str, Any]] = {
    "chat_template_kwargs": {"chat_template_kwargs": {"enable_thinking": False}},
    "add_special_tokens": {"add_special_tokens": True},
    "chat_template": {"chat_template": "custom"},
    "tools": {"tools": TOOLS},
    "reasoning_effort": {"reasoning_effort": "low"},
    "reasoning_effort_with_kwargs": {
        "reasoning_effort": "none",
        "chat_template_kwargs": {"enable_thinking": True, "mode": "brief"},
    },
    "documents": {"documents": [{"title": "Sevens", "text": "Six sevens are 42."}]},
    "mixed_with_sampling": {"chat_template_kwargs": {"mode": "x"}, "top_k": 20},
}


# --- the scorer reads the proposer's prompt ---------------------------------------------


@pytest.mark.parametrize("extra_body", SHAPES.values(), ids=SHAPES.keys())
async def test_the_scorer_tokenizes_the_prompt_the_proposer_was_given(
    extra_body: dict[str, Any],
) -> None:
    fake = FakePromptVLLM()
    async with teacher_on(fake, extra_body=extra_body) as teacher:
        (proposal,) = await teacher.propose(CONVERSATION, PREFIX, n=1, stop=[], max_tokens=4)
        span = await teacher.score(CONVERSATION, PREFIX, TARGET)
    (proposed,) = fake.proposed
    assert proposed in fake.tokenized  # the prefix's /tokenize read the proposal's prompt
    assert span.context_tokens == proposal.prompt_tokens == len(proposed)


async def test_a_template_prompt_scores_with_the_proposals_special_tokens() -> None:
    fake = FakePromptVLLM()
    shaped = {"prompt": GEMMA_TEMPLATE, "extra_body": {"add_special_tokens": False}}
    async with teacher_on(fake, **shaped) as teacher:
        (proposal,) = await teacher.propose(CONVERSATION, PREFIX, n=1, stop=[], max_tokens=4)
        span = await teacher.score(CONVERSATION, PREFIX, TARGET)
    assert fake.proposed[0][0] != wire.BOS  # the field shaped the proposal's prompt
    assert fake.proposed[0] in fake.tokenized
    assert span.context_tokens == proposal.prompt_tokens


async def test_every_scoring_tokenize_carries_the_prompt_fields_and_no_sampling_field() -> None:
    fake = FakePromptVLLM()
    extra = {"chat_template_kwargs": {"enable_thinking": False}, "tools": TOOLS, "top_k": 20}
    async with teacher_on(fake, extra_body=extra) as teacher:
        await teacher.score(CONVERSATION, PREFIX, TARGET)
    bodies = fake.bodies("/tokenize")
    assert len(bodies) == 2  # the prefix and the full prompt
    for body in bodies:
        assert body["chat_template_kwargs"] == {"enable_thinking": False}
        assert body["tools"] == TOOLS
        assert "top_k" not in body
        assert body["continue_final_message"] is True and body["add_generation_prompt"] is False


async def test_the_probe_tokenizes_with_the_prompt_fields_too() -> None:
    fake = FakePromptVLLM()
    extra = {"chat_template_kwargs": {"enable_thinking": False}}
    async with teacher_on(fake, extra_body=extra, score_method="auto") as teacher:
        await teacher.probe_scoring()
    bodies = fake.bodies("/tokenize")
    assert bodies and all(b["chat_template_kwargs"] == {"enable_thinking": False} for b in bodies)


async def test_generation_flags_in_the_kwargs_do_not_reopen_the_turn() -> None:
    """vLLM sets both flags over the template's arguments, for proposals and /tokenize alike."""
    fake = FakePromptVLLM()
    extra = {"chat_template_kwargs": {"add_generation_prompt": True}, "add_generation_prompt": True}
    async with teacher_on(fake, extra_body=extra) as teacher:
        await teacher.propose(CONVERSATION, PREFIX, n=1, stop=[], max_tokens=4)
        await teacher.score(CONVERSATION, PREFIX, TARGET)
    assert fake.bodies("/v1/chat/completions")[0]["add_generation_prompt"] is False
    assert all(b["add_generation_prompt"] is False for b in fake.bodies("/tokenize"))


# --- the room a proposal leaves -----------------------------------------------------------


async def test_a_prompt_shaped_by_tools_is_always_measured() -> None:
    """Tools, documents or another template add text no byte bound covers: no shortcut."""
    fake = FakePromptVLLM()
    async with teacher_on(fake, extra_body={"tools": TOOLS}) as teacher:
        for step in range(3):
            await teacher.propose(CONVERSATION, f"step {step}", n=1, stop=[], max_tokens=16)
    assert len(fake.bodies("/tokenize")) == 3


async def test_special_tokens_alone_keep_the_shortcut() -> None:
    fake = FakePromptVLLM()
    async with teacher_on(fake, extra_body={"add_special_tokens": True}) as teacher:
        for step in range(3):
            await teacher.propose(CONVERSATION, f"step {step}", n=1, stop=[], max_tokens=16)
    assert len(fake.bodies("/tokenize")) == 1  # the first call learns max_model_len


# --- the score identity ---------------------------------------------------------------------


def test_teachers_with_other_template_kwargs_do_not_share_a_score_identity() -> None:
    off = identity(extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    on = identity(extra_body={"chat_template_kwargs": {"enable_thinking": True}})
    assert len({identity(), off, on}) == 3


def test_teachers_with_the_same_prompt_fields_share_a_score_identity() -> None:
    first = {"chat_template_kwargs": {"a": 1, "b": [2]}, "top_k": 20}
    second = {"top_k": 40, "chat_template_kwargs": {"b": [2], "a": 1}}
    assert identity(extra_body=first) == identity(name="other", temperature=0.1, extra_body=second)
    assert identity() == identity(extra_body={"top_k": 20, "repetition_penalty": 1.1})


@pytest.mark.parametrize("extra_body", SHAPES.values(), ids=SHAPES.keys())
def test_every_prompt_field_is_part_of_the_score_identity(extra_body: dict[str, Any]) -> None:
    assert identity(extra_body=extra_body) != identity()


def test_the_folded_reasoning_effort_is_part_of_the_score_identity() -> None:
    assert identity(extra_body={"reasoning_effort": "low"}) != identity(
        extra_body={"reasoning_effort": "high"}
    )


def test_a_template_prompts_identity_holds_its_special_tokens_only() -> None:
    """A proxy-rendered prompt reads no chat template: its kwargs shape nothing."""
    plain = identity(prompt=GEMMA_TEMPLATE)
    assert identity(prompt=GEMMA_TEMPLATE, extra_body={"add_special_tokens": False}) != plain
    kwargs = {"chat_template_kwargs": {"enable_thinking": False}}
    assert identity(prompt=GEMMA_TEMPLATE, extra_body=kwargs) == plain


# --- the shared /tokenize cache -------------------------------------------------------------


async def test_the_tokenize_cache_keeps_bodies_with_other_template_kwargs_apart() -> None:
    """The shared call's key is the whole body: other kwargs are another call and answer."""
    fake = FakePromptVLLM()
    async with fake.running() as base_url:
        teacher = OpenAICompatTeacher(config(base_url))
        reader = SpanReader("shaped", "fake-model", base_url, teacher._post_read)
        prompt = {"messages": [{"role": "user", "content": "hi"}], "continue_final_message": True}
        kwargs = [{"enable_thinking": False}, {"enable_thinking": True}, {"enable_thinking": False}]
        answers = [
            await reader.tokenize({**prompt, "chat_template_kwargs": k}, with_pieces=False)
            for k in kwargs
        ]
        await teacher.aclose()
    assert len(fake.bodies("/tokenize")) == 2  # the third is the first's, kept
    assert answers[0] != answers[1] and answers[0] == answers[2]


# --- a scorer that cannot read the proposer's prompt --------------------------------------


def test_a_scorer_whose_prompts_are_truncated_is_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="truncate_prompt_tokens"):
        build_teacher(config(extra_body={"truncate_prompt_tokens": 512}))


def test_a_proposer_may_truncate_its_prompts() -> None:
    shaped = config(roles=["propose"], extra_body={"truncate_prompt_tokens": 512})
    assert build_teacher(shaped).can_propose
