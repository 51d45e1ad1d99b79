"""Structured answers and answer log-probabilities on the wire, whole and streamed, in-process.

The request's fields reach the decode as `DecodeJob.extras` (the runtime's part); here a test
route of the proxy's own app sets those extras on the job the runtime made and answers it with
the chat route's own handlers (api/chat.py), so the error mapping, the stream writer and the
chunks are the proxy's. The openai SDK's types parse every body and chunk.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from cord_proxy.api.app import create_app
from cord_proxy.api.chat import stream_completion, whole_completion
from cord_proxy.api.parsing import parse_chat_request
from cord_proxy.api.state import RUNTIME
from cord_proxy.teachers.base import CallExtras, Proposal, TokenLogprob
from tests.api.scripted import QUESTION, runtime, teacher
from tests.support.fakes import ScriptedFakeTeacher

ROUTE = "/test/chat"
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}
PERSON = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}
ANSWER_TOKENS = ['{"', "name", '":', ' "', "Ada", ' Lovelace"', ",", ' "', "age", '":', " 36", "}"]
ANSWER = "".join(ANSWER_TOKENS)


async def with_extras(request: web.Request) -> web.StreamResponse:
    """The chat route, with ``extras`` (response_format, logprobs) taken from the body."""
    body = await request.json()
    extras = CallExtras(**body.pop("extras"))
    job = request.app[RUNTIME].job_for_request(parse_chat_request(body))
    job = dataclasses.replace(job, decode=dataclasses.replace(job.decode, extras=extras))
    handle = stream_completion if job.stream else whole_completion
    return await handle(request, job)


def answering(answer: str | Proposal) -> ScriptedFakeTeacher:
    """Teacher ``t``: two steps of thinking, then `answer`."""

    def script(prefix: str) -> str | Proposal:
        if prefix.endswith("</think>\n\n"):
            return answer
        return "add the numbers " if "Step 2" not in prefix else "done </think>"

    return teacher(proposals=script)


def with_logprobs(tokens: list[str]) -> Proposal:
    values = tuple(TokenLogprob(t, -0.5, ((t, -0.5), ("x", -3.0))) for t in tokens)
    return Proposal("".join(tokens), "stop", len(tokens), logprobs=values)


async def post(fake: ScriptedFakeTeacher, extras: dict[str, Any], **body: Any) -> Any:
    app = create_app(runtime(fake))
    app.router.add_post(ROUTE, with_extras)
    request = {"model": "e", "messages": QUESTION, "extras": extras, **body}
    async with TestClient(TestServer(app)) as client:
        response = await client.post(ROUTE, json=request)
        return response.status, await response.text()


def data(text: str) -> list[Any]:
    return [
        json.loads(line.removeprefix("data: "))
        for line in text.split("\n\n")
        if line.startswith("data: {")
    ]


def content_chunks(chunks: list[Any]) -> list[Any]:
    return [c for c in chunks if c["choices"] and "content" in c["choices"][0]["delta"]][1:]


async def test_a_structured_answer_with_logprobs_whole() -> None:
    extras = {"response_format": PERSON, "logprobs": 1}
    fenced = with_logprobs(["```json\n", *ANSWER_TOKENS, "\n```"])
    status, text = await post(answering(fenced), extras)
    assert status == 200, text
    completion = ChatCompletion.model_validate_json(text)
    choice = completion.choices[0]
    assert choice.message.content == ANSWER
    assert json.loads(ANSWER) == {"name": "Ada Lovelace", "age": 36}
    assert choice.logprobs is not None and choice.logprobs.content is not None
    assert "".join(t.token for t in choice.logprobs.content) == ANSWER
    assert choice.logprobs.content[0].top_logprobs[1].token == "x"


async def test_a_structured_answer_streams_as_text_with_its_tokens() -> None:
    extras = {"response_format": PERSON, "logprobs": 1}
    status, text = await post(answering(with_logprobs(ANSWER_TOKENS)), extras, stream=True)
    assert status == 200 and text.endswith("data: [DONE]\n\n")
    chunks = data(text)
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    answer = content_chunks(chunks)
    assert len(answer) > 1  # cut along the tokens, about ANSWER_CHUNK_CHARS at a time
    texts = [c["choices"][0]["delta"]["content"] for c in answer]
    spelled = ["".join(t["token"] for t in c["choices"][0]["logprobs"]["content"]) for c in answer]
    assert "".join(texts) == ANSWER and spelled == texts
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_a_stream_without_logprobs_sends_none() -> None:
    status, text = await post(
        answering('{"name": "Ada", "age": 36}'), {"response_format": PERSON}, stream=True
    )
    assert status == 200
    chunks = data(text)
    answer = content_chunks(chunks)
    assert (
        "".join(c["choices"][0]["delta"]["content"] for c in answer) == '{"name": "Ada", "age": 36}'
    )
    assert all(c["choices"][0]["logprobs"] is None for c in chunks if c["choices"])


async def test_no_answer_on_the_schema_is_a_502_naming_the_schema_error() -> None:
    status, text = await post(answering('{"name": "Ada", "age": "x"}'), {"response_format": PERSON})
    assert status == 502
    error = json.loads(text)["error"]
    assert error["code"] == "response_format_mismatch" and error["type"] == "decode_error"
    assert error["message"] == (
        "no teacher wrote an answer that matches the response_format: "
        "$.age: 'x' is not of type 'integer'"
    )


async def test_no_answer_on_the_schema_ends_a_stream_with_that_error() -> None:
    fake = answering('{"name": "Ada"}')
    status, text = await post(fake, {"response_format": PERSON}, stream=True)
    assert status == 200 and text.endswith("data: [DONE]\n\n")
    error = data(text)[-1]["error"]
    assert error["code"] == "response_format_mismatch"
    assert error["message"].endswith("$: 'age' is a required property")
