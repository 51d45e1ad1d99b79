"""A request's extra fields at the teacher clients (`CallExtras`, issue 22): the bodies sent,
the answers read back, the chat template arguments of a request, and what a hosted teacher
takes.

HTTP goes to FAKE servers in the test process, which record every body and answer scripted
shapes (vLLM 0.32's, taken from the local teacher, or broken on purpose). What the real vLLM
makes of these fields is tested in tests/integration/test_call_extras_real.py.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from cord_proxy.config import GEMMA_TEMPLATE, TeacherConfig
from cord_proxy.errors import TeacherCapabilityError, TeacherProtocolError
from cord_proxy.teachers.answers import read_proposals
from cord_proxy.teachers.base import CallExtras, Message, TokenLogprob
from cord_proxy.teachers.capabilities import litellm_capabilities
from cord_proxy.teachers.factory import build_teacher
from cord_proxy.teachers.hosted import HostedTeacher, stop_litellm_worker
from cord_proxy.teachers.openai_compat import OpenAICompatTeacher
from cord_proxy.testing import fake_vllm_wire as wire
from cord_proxy.testing.serving import serving_posts

CONVERSATION = [Message(role="user", content="What is 6 times 7?")]
ANSWER_PREFIX = "<think>\n6 x 7 = 42.\n</think>\n\n"
SAMPLING = {
    "frequency_penalty": 0.5,
    "presence_penalty": 0.25,
    "logit_bias": {"42": -100.0},
    "top_k": 5,
    "min_p": 0.1,
    "repetition_penalty": 1.1,
}
SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "integer"}},
    "required": ["answer"],
    "additionalProperties": False,
}
JSON_SCHEMA = {
    "type": "json_schema",
    "json_schema": {"name": "A", "schema": SCHEMA, "strict": True},
}
EXTRA_FIELDS = (*SAMPLING, "response_format", "top_logprobs", "structured_outputs")


def top(*pairs: tuple[str, float]) -> list[dict[str, Any]]:
    return [{"token": t, "logprob": v, "bytes": list(t.encode())} for t, v in pairs]


def chat_entry(token: str, logprob: float, *alternatives: tuple[str, float]) -> dict[str, Any]:
    return {
        "token": token,
        "logprob": logprob,
        "bytes": list(token.encode()),
        "top_logprobs": top(*alternatives),
    }


# vLLM 0.32's chat answer with logprobs and top_logprobs 2 (abridged): the stop string's
# token is listed after the text's.
CHAT_WITH_LOGPROBS = {
    "object": "chat.completion",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "42 é"},
            "logprobs": {
                "content": [
                    chat_entry("4", -0.5, ("1", -2.0), ("4", -0.5)),
                    chat_entry("2", -0.1, ("2", -0.1), ("3", -3.0)),
                    chat_entry(" é", -0.2, (" é", -0.2), (" e", -1.5)),
                    chat_entry("###", -0.3, ("###", -0.3), ("\n", -2.5)),
                ]
            },
            "finish_reason": "stop",
            "stop_reason": "###",
        }
    ],
    "usage": {"prompt_tokens": 20, "completion_tokens": 4},
}

# vLLM 0.32's completion answer with logprobs 2: the sampled token is listed beside its two
# best alternatives, and the end-of-sequence token after the text.
COMPLETION_WITH_LOGPROBS = {
    "object": "text_completion",
    "choices": [
        {
            "index": 0,
            "text": "42",
            "logprobs": {
                "tokens": ["4", "2", "<eos>"],
                "token_logprobs": [-2.5, -0.1, 0.0],
                "text_offset": [0, 1, 2],
                "top_logprobs": [
                    {"1": -0.5, "7": -1.0, "4": -2.5},
                    {"2": -0.1, "3": -3.0},
                    {"<eos>": 0.0},
                ],
            },
            "finish_reason": "stop",
            "stop_reason": None,
        }
    ],
    "usage": {"prompt_tokens": 20, "completion_tokens": 3},
}


class RecordingVLLM:
    """A FAKE vLLM: records every body by path; proposals get `answer`, scoring reads and
    ``/tokenize`` the character-level wire (cord_proxy.testing)."""

    def __init__(self, answer: dict[str, Any] | None = None):
        self.answer = answer or CHAT_WITH_LOGPROBS
        self.requests: list[tuple[str, dict[str, Any]]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body: dict[str, Any] = await request.json()
        self.requests.append((request.path, body))
        if request.path == "/tokenize":
            return web.json_response(wire.tokenize(body))
        if request.path == "/detokenize":
            return web.json_response(wire.detokenize(body))
        if wire.is_scoring(body):
            return web.json_response(wire.score_completion(body, lambda _t, _p: -0.25))
        return web.json_response(self.answer)

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [body for p, body in self.requests if p == path]

    def proposals(self) -> list[dict[str, Any]]:
        return [
            body
            for p, body in self.requests
            if p.endswith("completions") and not wire.is_scoring(body)
        ]

    def reads(self) -> list[dict[str, Any]]:
        """Every request that is not a proposal: tokenizing and scoring."""
        proposals = self.proposals()
        return [body for _, body in self.requests if not any(body is p for p in proposals)]


def vllm_config(base_url: str, **overrides: Any) -> TeacherConfig:
    settings: dict[str, Any] = {
        "name": "vllm",
        "base_url": base_url,
        "model": "fake-model",
        "max_retries": 0,
        "timeout": 5.0,
        "score_method": "cached",
        **overrides,
    }
    return TeacherConfig(**settings)


@asynccontextmanager
async def vllm_teacher(fake: RecordingVLLM, **overrides: Any) -> AsyncIterator[OpenAICompatTeacher]:
    async with serving_posts(fake.handle) as base_url:
        teacher = OpenAICompatTeacher(vllm_config(base_url, **overrides))
        try:
            yield teacher
        finally:
            await teacher.aclose()


async def propose(teacher: Any, extras: CallExtras | None = None, prefix: str = "") -> Any:
    return await teacher.propose(
        CONVERSATION, prefix, n=1, stop=["###"], max_tokens=8, extras=extras
    )


# --- sampling fields: in proposals, over the teacher's own, never in a read ------------------


@pytest.mark.parametrize("prompt", ["chat", "template"])
async def test_sampling_fields_go_into_proposals_and_never_into_reads(prompt: str) -> None:
    template = {"prompt": GEMMA_TEMPLATE} if prompt == "template" else {}
    answer = COMPLETION_WITH_LOGPROBS if template else CHAT_WITH_LOGPROBS
    fake = RecordingVLLM(answer)
    extra_body = {"top_k": 20, "min_p": 0.0, "add_special_tokens": True}
    async with vllm_teacher(fake, extra_body=extra_body, **template) as teacher:
        await propose(teacher, CallExtras(sampling=SAMPLING))
        await teacher.score(CONVERSATION, "The answer", " is 42.")
    (body,) = fake.proposals()
    assert {name: body[name] for name in SAMPLING} == SAMPLING  # the request's top_k wins
    assert fake.bodies("/tokenize") and any(wire.is_scoring(b) for b in fake.reads())
    for read in fake.reads():
        assert not set(read) & set(EXTRA_FIELDS), read


async def test_a_teacher_without_extras_sends_its_own_fields_only() -> None:
    fake = RecordingVLLM()
    async with vllm_teacher(fake, extra_body={"top_k": 20}) as teacher:
        (proposal,) = await propose(teacher)
    (body,) = fake.proposals()
    assert body["top_k"] == 20
    assert not {"response_format", "top_logprobs", "frequency_penalty"} & set(body)
    assert body["logprobs"] is True  # the chat route counts the tokens so
    assert proposal.logprobs is None


# --- response_format: with the proposal, as OpenAI's object, only when given ---------------


@pytest.mark.parametrize("prompt", ["chat", "template"])
async def test_response_format_goes_with_the_call_only_when_given(prompt: str) -> None:
    template = {"prompt": GEMMA_TEMPLATE} if prompt == "template" else {}
    fake = RecordingVLLM(COMPLETION_WITH_LOGPROBS if template else CHAT_WITH_LOGPROBS)
    async with vllm_teacher(fake, **template) as teacher:
        await propose(teacher, CallExtras(response_format=JSON_SCHEMA), ANSWER_PREFIX)
        await propose(teacher, CallExtras(response_format={"type": "json_object"}))
        await propose(teacher, CallExtras(sampling={"top_k": 3}))
    first, second, third = fake.proposals()
    assert first["response_format"] == JSON_SCHEMA
    assert second["response_format"] == {"type": "json_object"}
    assert "response_format" not in third and "structured_outputs" not in third


# --- logprobs: asked as each route takes them, read back strictly ----------------------------


async def test_chat_logprobs_ask_top_logprobs_and_read_the_texts_tokens() -> None:
    fake = RecordingVLLM(CHAT_WITH_LOGPROBS)
    async with vllm_teacher(fake) as teacher:
        (own,) = await propose(teacher, CallExtras(logprobs=0))
        (best,) = await propose(teacher, CallExtras(logprobs=2))
    first, second = fake.proposals()
    assert first["logprobs"] is True and "top_logprobs" not in first
    assert (second["logprobs"], second["top_logprobs"]) == (True, 2)
    # the stop string's token is not part of the text; the alternatives come best first
    assert own.logprobs == (
        TokenLogprob("4", -0.5),
        TokenLogprob("2", -0.1),
        TokenLogprob(" é", -0.2),
    )
    assert best.logprobs is not None
    assert [t.top for t in best.logprobs] == [
        (("4", -0.5), ("1", -2.0)),
        (("2", -0.1), ("3", -3.0)),
        ((" é", -0.2), (" e", -1.5)),
    ]
    assert "".join(t.token for t in best.logprobs) == best.text
    assert best.tokens == 4  # every generated token still counts


async def test_completion_logprobs_ask_k_and_keep_the_k_best() -> None:
    fake = RecordingVLLM(COMPLETION_WITH_LOGPROBS)
    async with vllm_teacher(fake, prompt=GEMMA_TEMPLATE) as teacher:
        (plain,) = await propose(teacher)
        (best,) = await propose(teacher, CallExtras(logprobs=2))
    first, second = fake.proposals()
    assert (first["logprobs"], second["logprobs"]) == (0, 2)
    assert plain.logprobs is None
    assert best.logprobs == (
        TokenLogprob("4", -2.5, (("1", -0.5), ("7", -1.0))),
        TokenLogprob("2", -0.1, (("2", -0.1), ("3", -3.0))),
    )  # the sampled "4" beside its two best is not one of them; <eos> wrote no text


def with_logprobs(choice_logprobs: Any, *, chat: bool = True) -> dict[str, Any]:
    base = CHAT_WITH_LOGPROBS if chat else COMPLETION_WITH_LOGPROBS
    choice = {**base["choices"][0], "logprobs": choice_logprobs}  # type: ignore[index]
    return {**base, "choices": [choice]}


CHAT_CONTENT = CHAT_WITH_LOGPROBS["choices"][0]["logprobs"]["content"]  # type: ignore[index]
COMPLETION_LOGPROBS = COMPLETION_WITH_LOGPROBS["choices"][0]["logprobs"]  # type: ignore[index]
MALFORMED: dict[str, tuple[dict[str, Any], bool]] = {
    "chat-none": (with_logprobs(None), True),
    "chat-no-content": (with_logprobs({"content": None}), True),
    "chat-text-value": (with_logprobs({"content": [{**CHAT_CONTENT[0], "logprob": "-0.5"}]}), True),
    "chat-no-token": (with_logprobs({"content": [{"logprob": -0.5}]}), True),
    "chat-bool-value": (with_logprobs({"content": [{**CHAT_CONTENT[0], "logprob": True}]}), True),
    "chat-top-shape": (
        with_logprobs({"content": [{**CHAT_CONTENT[0], "top_logprobs": {"4": -0.5}}]}),
        True,
    ),
    "completion-none": (with_logprobs(None, chat=False), False),
    "completion-unequal": (
        with_logprobs({**COMPLETION_LOGPROBS, "token_logprobs": [-0.5]}, chat=False),
        False,
    ),
    "completion-no-top": (
        with_logprobs({**COMPLETION_LOGPROBS, "top_logprobs": None}, chat=False),
        False,
    ),
    "completion-top-text": (
        with_logprobs({**COMPLETION_LOGPROBS, "top_logprobs": [{"4": "x"}] * 3}, chat=False),
        False,
    ),
}


@pytest.mark.parametrize("case", MALFORMED, ids=MALFORMED.keys())
def test_malformed_logprobs_are_a_protocol_error(case: str) -> None:
    data, chat = MALFORMED[case]
    with pytest.raises(TeacherProtocolError) as caught:
        read_proposals(data, ["###"], "vllm", chat=chat, logprobs=2)
    assert caught.value.teacher == "vllm"
    # the same answer is read as today when the call did not ask for the values
    if case not in ("chat-top-shape", "chat-bool-value", "chat-text-value", "chat-no-token"):
        read_proposals(data, ["###"], "vllm", chat=chat)


async def test_a_value_that_is_not_finite_is_a_protocol_error() -> None:
    raw = b'{"choices": [{"index": 0, "message": {"content": "4"}, "logprobs": {"content": [{"token": "4", "logprob": NaN, "top_logprobs": []}]}, "finish_reason": "length"}]}'  # noqa: E501

    async def nan_answer(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.Response(body=raw, content_type="application/json")

    async with serving_posts(nan_answer) as base_url:
        teacher = OpenAICompatTeacher(vllm_config(base_url, context_length=4096))
        try:
            (plain,) = await propose(teacher)  # read as today: the values are not asked
            with pytest.raises(TeacherProtocolError):
                await propose(teacher, CallExtras(logprobs=0))
        finally:
            await teacher.aclose()
    assert plain.text == "4" and plain.logprobs is None


# --- a request's chat template arguments: a view of the teacher ------------------------------


async def test_a_view_sends_merged_template_kwargs_to_proposals_and_tokenize_alike() -> None:
    fake = RecordingVLLM()
    own = {"chat_template_kwargs": {"enable_thinking": False, "mode": "brief"}, "top_k": 20}
    async with vllm_teacher(fake, extra_body=own) as teacher:
        view = teacher.with_prompt_fields({"chat_template_kwargs": {"enable_thinking": True}})
        await propose(view)
        await view.score(CONVERSATION, "The answer", " is 42.")
        await view.aclose()  # a view closes nothing it shares
        by_view = fake.bodies("/tokenize")
        await propose(teacher)
    merged = {"enable_thinking": True, "mode": "brief"}
    for_view, for_teacher = fake.proposals()
    assert for_view["chat_template_kwargs"] == merged and for_view["top_k"] == 20
    assert for_teacher["chat_template_kwargs"] == own["chat_template_kwargs"]
    assert len(by_view) == 3  # the proposal's room, the prefix and the full prompt
    assert all(b["chat_template_kwargs"] == merged for b in by_view)
    by_teacher = fake.bodies("/tokenize")[len(by_view) :]
    assert by_teacher and all(
        b["chat_template_kwargs"] == own["chat_template_kwargs"] for b in by_teacher
    )


async def test_a_view_shares_the_teachers_endpoint_and_has_its_own_identity() -> None:
    fake = RecordingVLLM()
    async with vllm_teacher(fake, extra_body={"top_k": 20}) as teacher:
        view = teacher.with_prompt_fields({"chat_template_kwargs": {"custom": 1}})
        await propose(view)
        assert view is not teacher and isinstance(view, OpenAICompatTeacher)
        assert view.breaker is teacher.breaker and view._session is teacher._session
        assert view.score_identity != teacher.score_identity
        assert view.name == teacher.name and view.gives_logprobs
        same = teacher.with_prompt_fields({"chat_template_kwargs": {"custom": 1}})
        assert same.score_identity == view.score_identity
        assert teacher.with_prompt_fields({}) is teacher
        assert teacher.with_prompt_fields({"chat_template_kwargs": None}) is teacher
        with pytest.raises(ValueError, match="top_k"):
            teacher.with_prompt_fields({"top_k": 3})


def test_a_template_teacher_has_no_chat_template_to_pass_them_to() -> None:
    teacher = OpenAICompatTeacher(vllm_config("http://h/v1", prompt=GEMMA_TEMPLATE))
    assert teacher.with_prompt_fields({"chat_template_kwargs": {"custom": 1}}) is teacher


# --- hosted teachers (litellm): sampling by the provider, response_format, no logprobs --------


class FakeProvider:
    """A FAKE OpenAI-compatible provider: records every body, answers one chat choice."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body: dict[str, Any] = await request.json()
        self.bodies.append(body)
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": '{"answer": 42}'},
            "finish_reason": "stop",
        }
        return web.json_response(
            {
                "id": "fake",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", "fake"),
                "choices": [choice],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            }
        )


@pytest.fixture
async def provider() -> AsyncIterator[tuple[FakeProvider, str]]:
    fake = FakeProvider()
    async with serving_posts(fake.handle) as base_url:
        yield fake, base_url
    await stop_litellm_worker()


def hosted(base_url: str, model: str, **overrides: Any) -> HostedTeacher:
    fields: dict[str, Any] = {
        "name": "hosted",
        "kind": "litellm",
        "model": model,
        "base_url": base_url,
        "api_key": "env:FAKE_PROVIDER_KEY",
        "max_retries": 0,
        "timeout": 20.0,
        **overrides,
    }
    teacher = build_teacher(TeacherConfig.model_validate(fields))
    assert isinstance(teacher, HostedTeacher)
    return teacher


@pytest.fixture(autouse=True)
def _provider_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-fake")


async def test_a_vllm_through_litellm_takes_every_sampling_field(
    provider: tuple[FakeProvider, str],
) -> None:
    fake, base_url = provider
    teacher = hosted(base_url, "hosted_vllm/fake-model", extra_body={"top_k": 20})
    extras = CallExtras(sampling=SAMPLING, response_format=JSON_SCHEMA)
    await propose(teacher, extras, ANSWER_PREFIX)
    (body,) = fake.bodies
    assert {name: body[name] for name in SAMPLING} == SAMPLING
    assert body["response_format"]["json_schema"]["schema"] == SCHEMA
    assert body["continue_final_message"] is True


async def test_an_openai_provider_gets_openais_sampling_fields_and_drops_the_rest(
    provider: tuple[FakeProvider, str], caplog: pytest.LogCaptureFixture
) -> None:
    fake, base_url = provider
    teacher = hosted(base_url, "openai/gpt-4o-mini")
    with caplog.at_level(logging.DEBUG, logger="cord_proxy.teachers.hosted"):
        (answer,) = await propose(teacher, CallExtras(sampling=SAMPLING), ANSWER_PREFIX)
    (body,) = fake.bodies
    openai_fields = ("frequency_penalty", "presence_penalty", "logit_bias")
    assert {name: body[name] for name in openai_fields} == {n: SAMPLING[n] for n in openai_fields}
    assert not {"top_k", "min_p", "repetition_penalty"} & set(body)
    assert "response_format" not in body
    (line,) = [r for r in caplog.records if "sampling fields not sent" in r.getMessage()]
    assert line.levelno == logging.DEBUG
    assert line.fields == ["top_k", "min_p", "repetition_penalty"]  # type: ignore[attr-defined]
    assert answer.text == '{"answer": 42}'


async def test_a_hosted_teacher_refuses_logprobs_without_a_call(
    provider: tuple[FakeProvider, str],
) -> None:
    fake, base_url = provider
    teacher = hosted(base_url, "hosted_vllm/fake-model")
    assert teacher.gives_logprobs is False
    with pytest.raises(TeacherCapabilityError, match="log-probabilities"):
        await propose(teacher, CallExtras(logprobs=0), ANSWER_PREFIX)
    assert fake.bodies == []


def test_which_sampling_fields_a_provider_takes_comes_from_litellm() -> None:
    def takes(model: str) -> list[str]:
        return litellm_capabilities(model).describe()["sampling"]  # type: ignore[no-any-return]

    openai_fields = ["frequency_penalty", "presence_penalty", "logit_bias"]
    assert takes("hosted_vllm/m") == [*openai_fields, "top_k", "min_p", "repetition_penalty"]
    assert takes("openai/gpt-4o-mini") == openai_fields
    assert takes("anthropic/claude-sonnet-4-5") == ["top_k"]
