"""The bench's simulated teacher answers the token routes like vLLM, with one value per token.

Every way of asking for a token's log-probability (prompt logprobs, echo, a forced
one-token read on a token-id prompt) must read the same number, or a cached scorer and a
prompt_logprobs scorer would rank the bench's candidates differently.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bench.simmodel import SimConfig
from bench.simteacher import make_app

CONFIG = SimConfig.from_dict({"seed": 3, "models": {"sim": {"jitter_sigma": 0.0}}})
PROMPT = "<|user|>\nWhat is 2 + 2?\n<|assistant|>\n<think>\n[sim:0123456789] so the sum is 4"


@pytest.fixture
async def sim() -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    server = TestServer(make_app(CONFIG))
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        yield session, str(server.make_url("")).rstrip("/")
    await server.close()


async def post(sim: tuple[aiohttp.ClientSession, str], path: str, body: dict[str, Any]) -> Any:
    session, root = sim
    async with session.post(root + path, json={"model": "sim", **body}) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_tokenize_and_detokenize_round_trip(sim: Any) -> None:
    ids = (await post(sim, "/tokenize", {"prompt": PROMPT}))["tokens"]
    assert len(ids) == -(-len(PROMPT) // 4)
    assert (await post(sim, "/detokenize", {"tokens": ids}))["prompt"] == PROMPT
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "The"}]
    chat = await post(
        sim,
        "/tokenize",
        {"messages": messages, "add_generation_prompt": False, "continue_final_message": True},
    )
    text = (await post(sim, "/detokenize", {"tokens": chat["tokens"]}))["prompt"]
    assert text == "<|user|>\nhi\n<|assistant|>\nThe"


async def test_the_spans_route_answers_what_tokenize_does(sim: Any) -> None:
    prefix, full = {"prompt": PROMPT[:-3]}, {"prompt": PROMPT}
    (span,) = (await post(sim, "/cord/spans", {"pairs": [{"prefix": prefix, "full": full}]}))[
        "spans"
    ]
    prefix_ids = (await post(sim, "/tokenize", prefix))["tokens"]
    whole = await post(sim, "/tokenize", {**full, "return_token_strs": True})
    pairs = zip(prefix_ids, whole["tokens"], strict=False)
    start = next(k for k, (a, b) in enumerate(pairs) if a != b)
    assert (span["tokens"], span["start"]) == (whole["tokens"], start)
    assert span["token_strs"] == whole["token_strs"][start:]
    refused = await post(sim, "/cord/spans", {"pairs": [{"prefix": {}, "full": full}]})
    assert refused["spans"][0]["error"]["code"] == 400


async def test_every_route_reads_the_same_logprob(sim: Any) -> None:
    ids = (await post(sim, "/tokenize", {"prompt": PROMPT}))["tokens"][:-1]  # whole pieces only
    scored = await post(sim, "/v1/completions", {"prompt": ids, "prompt_logprobs": 0})
    entries = scored["choices"][0]["prompt_logprobs"]
    echo = await post(
        sim, "/v1/completions", {"prompt": ids, "echo": True, "logprobs": 0, "max_tokens": 0}
    )
    echoed = echo["choices"][0]["logprobs"]["token_logprobs"]
    for position in (1, len(ids) // 2, len(ids) - 1):
        token = ids[position]
        read = await post(
            sim,
            "/v1/completions",
            {
                "prompt": ids[:position],
                "max_tokens": 1,
                "logprobs": 0,
                "allowed_token_ids": [token],
                "return_tokens_as_token_ids": True,
            },
        )
        logprobs = read["choices"][0]["logprobs"]
        assert logprobs["tokens"] == [f"token_id:{token}"]
        value = logprobs["token_logprobs"][0]
        assert value == entries[position][str(token)]["logprob"] == echoed[position]
        assert -4.0 <= value < 0.0
    positions = [2, 5, len(ids) - 1]
    batch = await post(
        sim,
        "/v1/completions",
        {
            "prompt": [ids[:p] for p in positions],
            "max_tokens": 1,
            "logprobs": 0,
            "logprob_token_ids": sorted({ids[p] for p in positions}),
            "return_tokens_as_token_ids": True,
        },
    )
    assert [c["index"] for c in batch["choices"]] == [0, 1, 2]
    for choice, position in zip(batch["choices"], positions, strict=True):
        asked = choice["logprobs"]["top_logprobs"][0][f"token_id:{ids[position]}"]
        assert asked == entries[position][str(ids[position])]["logprob"]


async def test_an_unknown_token_id_is_a_400(sim: Any) -> None:
    session, root = sim
    body = {"model": "sim", "prompt": [7, 8, 9], "max_tokens": 1}
    async with session.post(root + "/v1/completions", json=body) as response:
        assert response.status == 400
        assert "out of vocabulary" in (await response.json())["error"]["message"]
