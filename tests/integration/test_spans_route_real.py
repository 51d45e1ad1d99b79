"""cord-proxy's spans route (``POST /cord/spans``) on the real local teacher's vLLM.

The route (cord_proxy/local/vllm_plugin/cord_spans.py) must give exactly the spans that
``/tokenize`` gives, one prompt a request, for the 20 exact-span pairs of
test_exact_spans.py, as template prompts and as chat messages; and refuse what is not a
spans request with an OpenAI-style error, a pair it cannot tokenize failing alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from cord_proxy.config import GEMMA_TEMPLATE, TeacherConfig
from cord_proxy.local import LOCAL_MODEL_NAME
from cord_proxy.local.vllm_plugin.cord_spans_wire import MAX_PAIRS, ROUTE
from cord_proxy.teachers.openai_compat import OpenAICompatTeacher
from cord_proxy.teachers.span_tokens import TokenSpan, server_root
from tests.integration.test_exact_spans import CONVERSATION, PAIRS

pytestmark = pytest.mark.integration

PROMPT_FORMS = {"template": {"prompt": GEMMA_TEMPLATE}, "chat": {}}


@pytest.fixture(params=list(PROMPT_FORMS))
async def teacher(local_teacher: str, request: Any) -> AsyncIterator[OpenAICompatTeacher]:
    config = TeacherConfig(
        name="local-gemma",
        base_url=local_teacher,
        model=LOCAL_MODEL_NAME,
        timeout=300.0,
        max_retries=0,
        **PROMPT_FORMS[request.param],
    )
    made = OpenAICompatTeacher(config)
    yield made
    await made.aclose()


def prompt_pairs(teacher: OpenAICompatTeacher) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    prompt = teacher._tokenize_prompt
    return [
        (prompt(CONVERSATION, prefix), prompt(CONVERSATION, prefix + target))
        for prefix, target in PAIRS.values()
    ]


async def test_the_route_gives_exactly_the_spans_of_tokenize(
    teacher: OpenAICompatTeacher,
) -> None:
    spans = teacher._reader.spans
    pairs = prompt_pairs(teacher)
    by_route = await spans.find(pairs)
    assert spans.route is True
    spans.route = False  # the path of a server without the route: /tokenize, a prompt a request
    by_tokenize = await spans.find(pairs)
    assert all(isinstance(span, TokenSpan) for span in by_tokenize)
    for name, route_span, tokenize_span in zip(PAIRS, by_route, by_tokenize, strict=True):
        assert route_span == tokenize_span, name
    double = by_route[list(PAIRS).index("double-space")]
    assert isinstance(double, TokenSpan) and double.pieces[0] == "▁▁"  # merged across the seam


def spans_url(local_teacher: str) -> str:
    return server_root(local_teacher) + ROUTE


def side(text: str) -> dict[str, Any]:
    return {"prompt": text}


async def test_a_pair_the_server_cannot_tokenize_fails_alone(local_teacher: str) -> None:
    pairs = [
        {"prefix": side("The answer is"), "full": side("The answer is 42")},
        {"prefix": {"messages": "not a list"}, "full": side("x")},
    ]
    async with httpx.AsyncClient(timeout=60.0) as http:
        answer = await http.post(
            spans_url(local_teacher), json={"model": LOCAL_MODEL_NAME, "pairs": pairs}
        )
    assert answer.status_code == 200
    good, refused = answer.json()["spans"]
    assert good["tokens"][good["start"] :] and good["max_model_len"] > 0
    assert "".join(good["token_strs"]).replace("▁", " ").strip() == "42"
    assert refused["error"]["code"] == 400 and refused["error"]["message"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 400),
        (b'{"model": "gemma3-270m"}', 400),
        (b'{"pairs": [{"prefix": {}}]}', 400),
        (None, 413),
    ],
)
async def test_what_is_not_a_spans_request_is_refused(
    local_teacher: str, body: bytes | None, status: int
) -> None:
    if body is None:
        pair = {"prefix": side("a"), "full": side("ab")}
        body = httpx.Request("POST", "/", json={"pairs": [pair] * (MAX_PAIRS + 1)}).content
    async with httpx.AsyncClient(timeout=60.0) as http:
        answer = await http.post(spans_url(local_teacher), content=body)
        other = await http.get(spans_url(local_teacher))
    assert answer.status_code == status
    assert answer.json()["error"]["code"] == status and answer.json()["error"]["message"]
    assert other.status_code == 405
