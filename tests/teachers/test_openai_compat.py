"""OpenAICompatTeacher against tiny in-process fake servers (aiohttp): bodies, parsing, errors.

The fakes answer what vLLM 0.32 answers (shapes taken from the local teacher), or answer
badly on purpose: invalid JSON, HTTP 500, never. The real server is exercised in
tests/integration/test_teacher_client.py.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from cord_proxy.config import GEMMA_TEMPLATE, TeacherConfig
from cord_proxy.errors import (
    TeacherError,
    TeacherHTTPError,
    TeacherProtocolError,
    TeacherTimeoutError,
    TeacherUnreachableError,
)
from cord_proxy.teachers.affinity import ROUTING_HEADER, use_routing_key
from cord_proxy.teachers.base import Message
from cord_proxy.teachers.openai_compat import OpenAICompatTeacher
from cord_proxy.teachers.prompting import render_template
from cord_proxy.testing import fake_vllm_wire as wire
from cord_proxy.testing.serving import serving_posts

CONVERSATION = [Message(role="user", content="What is the capital of France?")]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# vLLM 0.32 answers (abridged): propose by chat with a stop string hit, by completions.
CHAT_STOP_HIT = {
    "object": "chat.completion",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": " Paris.\n\n"},
            "logprobs": {
                "content": [
                    {"token": t, "logprob": -0.1} for t in (" Paris", ".", "\n\n", "###", " Step")
                ]
            },
            "finish_reason": "stop",
            "stop_reason": "### Step",
        }
    ],
    "usage": {"prompt_tokens": 70, "completion_tokens": 5, "total_tokens": 75},
}


def completion_choice(
    index: int, text: str, tokens: list[str], finish: str, stop_reason: Any
) -> dict[str, Any]:
    return {
        "index": index,
        "text": text,
        "logprobs": {
            "tokens": tokens,
            "token_logprobs": [-0.5] * len(tokens),
            "text_offset": [0] * len(tokens),
            "top_logprobs": None,
        },
        "finish_reason": finish,
        "stop_reason": stop_reason,
    }


class FakeOpenAIServer:
    """A FAKE OpenAI-compatible server: `handler` answers every POST; bodies are recorded.

    ``/tokenize`` is answered by a character-level tokenizer (cord_proxy.testing), as
    vLLM would, unless `serves_tokenize` is off.
    """

    def __init__(self, handler: Handler, serves_tokenize: bool = True):
        self.handler = handler
        self.serves_tokenize = serves_tokenize
        self.tokenize_requests: list[dict[str, Any]] = []
        self.requests: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.release = asyncio.Event()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            body = {}
        if request.path == "/tokenize" and self.serves_tokenize:
            self.tokenize_requests.append(body)
            return web.json_response(wire.tokenize(body))
        self.requests.append((request.path, body, dict(request.headers)))
        if request.path == "/tokenize":
            return web.json_response({"detail": "Not Found"}, status=404)
        return await self.handler(request)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        async with serving_posts(self._handle) as base_url:
            try:
                yield base_url
            finally:
                self.release.set()  # before the server's cleanup waits for held handlers


def answer_json(data: Any, status: int = 200) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(data, status=status)

    return handler


def teacher_config(base_url: str, **overrides: Any) -> TeacherConfig:
    settings: dict[str, Any] = {
        "name": "fake-teacher",
        "base_url": base_url,
        "model": "fake-model",
        "max_retries": 0,
        "timeout": 5.0,
        **overrides,
    }
    return TeacherConfig(**settings)


@asynccontextmanager
async def teacher_on(
    handler: Handler, **overrides: Any
) -> AsyncIterator[tuple[OpenAICompatTeacher, FakeOpenAIServer]]:
    fake = FakeOpenAIServer(handler)
    async with fake.running() as base_url:
        teacher = OpenAICompatTeacher(teacher_config(base_url, **overrides))
        try:
            yield teacher, fake
        finally:
            await teacher.aclose()


def assert_names_teacher(error: TeacherError, name: str = "fake-teacher") -> None:
    assert error.teacher == name
    assert f"'{name}'" in str(error)
    assert f"'{name}'" in error.to_openai()["error"]["message"]


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- propose ---------------------------------------------------------------------------


async def test_propose_chat_continues_the_final_assistant_message() -> None:
    async with teacher_on(answer_json(CHAT_STOP_HIT), temperature=0.7, seed=3) as (teacher, fake):
        proposals = await teacher.propose(
            CONVERSATION, "### Step 1.", n=1, stop=["### Step"], max_tokens=32
        )
    (path, body, _headers) = fake.requests[0]
    assert path == "/v1/chat/completions"
    assert body["messages"][-1] == {"role": "assistant", "content": "### Step 1."}
    assert body["continue_final_message"] is True
    assert body["add_generation_prompt"] is False
    assert body["stop"] == ["### Step"]
    assert (body["max_tokens"], body["temperature"], body["seed"], body["n"]) == (32, 0.7, 3, 1)
    (proposal,) = proposals
    assert proposal.text == " Paris.\n\n"
    assert (proposal.finish_reason, proposal.stop_string) == ("stop", "### Step")
    assert proposal.tokens == 5 == CHAT_STOP_HIT["usage"]["completion_tokens"]
    assert proposal.prompt_tokens == 70
    assert len(fake.requests) == 1


async def test_propose_template_posts_the_rendered_prompt() -> None:
    data = {
        "choices": [
            # out of order on purpose: proposals come back in index order
            completion_choice(1, " Lyon", [" Lyon"], "length", None),
            completion_choice(0, " Paris.", [" Paris", "."], "stop", None),
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
    }
    async with teacher_on(answer_json(data), prompt=GEMMA_TEMPLATE) as (teacher, fake):
        proposals = await teacher.propose(
            CONVERSATION, "It is", n=2, stop=["\n"], max_tokens=1, seed=11, temperature=0.0
        )
    (path, body, _headers) = fake.requests[0]
    assert path == "/v1/completions"
    assert body["prompt"] == render_template(GEMMA_TEMPLATE, CONVERSATION, "It is")
    assert (body["seed"], body["temperature"], body["n"], body["logprobs"]) == (11, 0.0, 2, 0)
    assert [p.text for p in proposals] == [" Paris.", " Lyon"]
    # stop_reason None with finish "stop" is the model's own end of sequence
    assert [p.finish_reason for p in proposals] == ["closed", "length"]
    assert [p.tokens for p in proposals] == [2, 1]
    assert [p.prompt_tokens for p in proposals] == [12, 0]


async def test_stop_reason_that_is_a_token_id_means_closed() -> None:
    data = {"choices": [completion_choice(0, "Paris", ["Paris"], "stop", 106)]}
    async with teacher_on(answer_json(data), prompt=GEMMA_TEMPLATE) as (teacher, _fake):
        (proposal,) = await teacher.propose(CONVERSATION, "", n=1, stop=["###"], max_tokens=4)
    assert (proposal.finish_reason, proposal.stop_string) == ("closed", None)


async def test_api_key_reference_becomes_a_bearer_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_TEACHER_KEY", "sk-test-123")
    async with teacher_on(answer_json(CHAT_STOP_HIT), api_key="env:FAKE_TEACHER_KEY") as (
        teacher,
        fake,
    ):
        await teacher.propose(CONVERSATION, "", n=1, stop=[], max_tokens=4)
    assert fake.requests[0][2]["Authorization"] == "Bearer sk-test-123"


# --- failures: every error names the teacher ---------------------------------------------


async def test_closed_port_is_unreachable_within_the_timeout() -> None:
    teacher = OpenAICompatTeacher(
        teacher_config(f"http://127.0.0.1:{closed_port()}/v1", timeout=3.0)
    )
    started = time.perf_counter()
    try:
        with pytest.raises(TeacherUnreachableError) as caught:
            await teacher.propose(CONVERSATION, "", n=1, stop=[], max_tokens=4)
    finally:
        await teacher.aclose()
    assert time.perf_counter() - started < 3.0
    assert_names_teacher(caught.value)
    assert "cannot connect" in caught.value.message
    assert "127.0.0.1" not in caught.value.message
    assert teacher.breaker.failures == 1


async def test_closed_port_with_retries_still_fails_inside_the_timeout() -> None:
    teacher = OpenAICompatTeacher(
        teacher_config(f"http://127.0.0.1:{closed_port()}/v1", timeout=3.0, max_retries=2)
    )
    started = time.perf_counter()
    try:
        with pytest.raises(TeacherUnreachableError) as caught:
            await teacher.score(CONVERSATION, "a", "b")
    finally:
        await teacher.aclose()
    assert time.perf_counter() - started < 3.0
    assert_names_teacher(caught.value)


async def test_invalid_json_is_a_protocol_error() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(text="{not json", content_type="application/json")

    async with teacher_on(handler) as (teacher, _fake):
        with pytest.raises(TeacherProtocolError) as caught:
            await teacher.propose(CONVERSATION, "", n=1, stop=[], max_tokens=4)
    assert_names_teacher(caught.value)
    assert "invalid JSON" in caught.value.message
    assert teacher.breaker.failures == 1  # a malformed answer counts against the endpoint


@pytest.mark.parametrize(
    "data",
    [[1, 2], {"choices": []}, {"object": "chat.completion"}, {"choices": [{"index": 0}]}],
    ids=["array", "no-choices", "no-choices-key", "no-message"],
)
async def test_malformed_answers_are_protocol_errors(data: Any) -> None:
    async with teacher_on(answer_json(data)) as (teacher, _fake):
        with pytest.raises(TeacherProtocolError) as caught:
            await teacher.propose(CONVERSATION, "a", n=1, stop=[], max_tokens=4)
    assert_names_teacher(caught.value)


async def test_http_500_is_an_http_error() -> None:
    error_body = {"error": {"message": "engine died", "type": "InternalServerError"}}
    async with teacher_on(answer_json(error_body, status=500)) as (teacher, fake):
        with pytest.raises(TeacherHTTPError) as caught:
            await teacher.propose(CONVERSATION, "", n=1, stop=[], max_tokens=4)
    assert caught.value.http_status == 500
    assert "HTTP 500" in caught.value.message and "engine died" in caught.value.message
    assert_names_teacher(caught.value)
    assert len(fake.requests) == 1  # max_retries=0


async def test_http_400_is_not_retried() -> None:
    error_body = {"error": {"message": "max_tokens must be at least 1", "type": "BadRequest"}}
    async with teacher_on(answer_json(error_body, status=400), max_retries=2) as (teacher, fake):
        with pytest.raises(TeacherHTTPError) as caught:
            await teacher.propose(CONVERSATION, "a", n=1, stop=[], max_tokens=0)
    assert caught.value.http_status == 400
    assert_names_teacher(caught.value)
    assert len(fake.requests) == 1


async def test_server_that_never_answers_times_out() -> None:
    fake: FakeOpenAIServer

    async def never(request: web.Request) -> web.StreamResponse:
        await fake.release.wait()
        return web.json_response({})

    fake = FakeOpenAIServer(never)
    async with fake.running() as base_url:
        teacher = OpenAICompatTeacher(teacher_config(base_url, timeout=0.5))
        started = time.perf_counter()
        try:
            with pytest.raises(TeacherTimeoutError) as caught:
                await teacher.propose(CONVERSATION, "", n=1, stop=[], max_tokens=4)
        finally:
            await teacher.aclose()
        elapsed = time.perf_counter() - started
    assert 0.5 <= elapsed < 0.5 + 0.5
    assert_names_teacher(caught.value)
    assert caught.value.status == 504
    assert teacher.breaker.failures == 1


# --- answers validated at the boundary; the teacher's context ---------------------------


@pytest.mark.parametrize(
    "choice",
    [
        {"index": 0, "message": "a string", "finish_reason": "stop"},
        {"index": 0, "message": {"role": "assistant", "content": 7}, "finish_reason": "stop"},
        {"index": "0", "message": {"role": "assistant", "content": "x"}},
        {"index": 0, "message": {"content": "x"}, "logprobs": {"content": 5}},
    ],
    ids=["message-string", "content-number", "index-string", "logprobs-number"],
)
async def test_malformed_proposal_answers_are_protocol_errors(choice: dict[str, Any]) -> None:
    data = {"choices": [choice]}
    async with teacher_on(answer_json(data)) as (teacher, _fake):
        with pytest.raises(TeacherProtocolError, match="malformed answer") as caught:
            await teacher.propose(CONVERSATION, "a", n=1, stop=[], max_tokens=4)
    assert_names_teacher(caught.value)


async def test_usage_counts_as_text_are_a_protocol_error() -> None:
    data = {**CHAT_STOP_HIT, "usage": {"prompt_tokens": "seventy", "completion_tokens": 5}}
    async with teacher_on(answer_json(data)) as (teacher, _fake):
        with pytest.raises(TeacherProtocolError, match="usage"):
            await teacher.propose(CONVERSATION, "a", n=1, stop=[], max_tokens=4)


async def test_max_tokens_is_clamped_to_the_room_the_context_leaves() -> None:
    prefix = "x" * 20
    async with teacher_on(answer_json(CHAT_STOP_HIT), context_length=100) as (teacher, fake):
        proposals = await teacher.propose(
            CONVERSATION, prefix, n=1, stop=["### Step"], max_tokens=500, reserve=8
        )
    prompt_tokens = len(wire.render_ids(fake.tokenize_requests[0]))
    assert fake.requests[0][1]["max_tokens"] == 100 - prompt_tokens - 8
    assert proposals[0].context_full is False  # it stopped at a stop string


async def test_the_reserve_is_at_most_a_quarter_of_the_context() -> None:
    async with teacher_on(answer_json(CHAT_STOP_HIT), context_length=100) as (teacher, fake):
        await teacher.propose(CONVERSATION, "", n=1, stop=[], max_tokens=500, reserve=4096)
    prompt_tokens = len(wire.render_ids(fake.tokenize_requests[0]))
    assert fake.requests[0][1]["max_tokens"] == 100 - prompt_tokens - 25


async def test_a_full_context_gives_one_empty_context_full_proposal() -> None:
    async with teacher_on(answer_json(CHAT_STOP_HIT), context_length=16) as (teacher, fake):
        proposals = await teacher.propose(CONVERSATION, "y" * 50, n=2, stop=[], max_tokens=9)
    assert [(p.text, p.context_full) for p in proposals] == [("", True)]
    assert fake.requests == []


async def test_a_server_without_tokenize_is_proposed_to_unclamped() -> None:
    fake = FakeOpenAIServer(answer_json(CHAT_STOP_HIT), serves_tokenize=False)
    async with fake.running() as base_url:
        teacher = OpenAICompatTeacher(teacher_config(base_url))
        await teacher.propose(CONVERSATION, "a", n=1, stop=[], max_tokens=9)
        await teacher.propose(CONVERSATION, "a", n=1, stop=[], max_tokens=9)
        await teacher.aclose()
    paths = [path for path, _body, _headers in fake.requests]
    assert paths == ["/tokenize", "/v1/chat/completions", "/v1/chat/completions"]
    assert teacher.breaker.failures == 0


async def test_once_the_context_is_known_a_prompt_that_surely_fits_is_not_tokenized() -> None:
    async with teacher_on(answer_json(CHAT_STOP_HIT)) as (teacher, fake):
        for _ in range(3):
            await teacher.propose(CONVERSATION, "short", n=1, stop=[], max_tokens=16)
        assert len(fake.tokenize_requests) == 1  # the first call learns max_model_len (2048)
        await teacher.propose(CONVERSATION, "z" * 3000, n=1, stop=[], max_tokens=16)
    assert len(fake.tokenize_requests) == 2  # one that might not fit is measured


async def test_a_failed_tokenize_leaves_no_sibling_call_retrying() -> None:
    """Scoring tokenizes the prefix and the full prompt at once. When one fails, the other
    is cancelled: it does not go on retrying (and reopening the client) behind the caller."""
    full_prompt_requests = 0

    async def tokenize(request: web.Request) -> web.StreamResponse:
        nonlocal full_prompt_requests
        if (await request.json()).get("return_token_strs") is False:
            return web.json_response({"detail": "bad prefix"}, status=400)
        full_prompt_requests += 1
        return web.json_response({"detail": "busy"}, status=503, headers={"Retry-After": "1"})

    app = web.Application()
    app.router.add_post("/tokenize", tokenize)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base_url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    teacher = OpenAICompatTeacher(teacher_config(base_url, max_retries=3, score_method="cached"))
    try:
        with pytest.raises(TeacherHTTPError) as caught:
            await teacher.score(CONVERSATION, "a", "b")
        assert caught.value.http_status == 400
        await asyncio.sleep(1.5)  # past the Retry-After a sibling left running would honour
    finally:
        await teacher.aclose()
        await runner.cleanup()
    assert full_prompt_requests == 1


async def test_a_call_sends_its_beam_s_routing_key_and_none_without_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CORD_TEST_ROUTING_KEY", "k")

    async def propose(key: str | None) -> None:
        use_routing_key(key)  # this test's own task: nothing else runs in its context
        await teacher.propose(CONVERSATION, "a", n=1, stop=[], max_tokens=9)

    async with teacher_on(answer_json(CHAT_STOP_HIT), api_key="env:CORD_TEST_ROUTING_KEY") as (
        teacher,
        fake,
    ):
        await propose("beam-7")
        await propose(None)
    sent = [headers for path, _body, headers in fake.requests if path == "/v1/chat/completions"]
    assert [h.get(ROUTING_HEADER) for h in sent] == ["beam-7", None]
    assert all(h["Authorization"] == "Bearer k" for h in sent)  # the key leaves the others be
