"""`usage.cost` against the REAL local vLLM teacher (issue 22): an ensemble of priced teachers
through the real proxy, and through the engine.

Three teachers, all answered by the same real vLLM server:

- ``local``: the vLLM teacher itself (kind ``openai``), priced by ``cost_per_million_tokens``;
- ``hosted``: a litellm teacher on it (``hosted_vllm/gemma3-270m``), priced by its config,
  which overrides litellm's cost map;
- ``mapped``: a litellm teacher named ``openai/gpt-4o-mini``, a model in litellm's own
  (bundled, offline) cost map, priced by that map. Its calls go through `RenamingRelay`, a
  loopback relay in this process that renames the model to the one vLLM serves and passes
  everything else through: the text, tokens and usage are the real server's.

Budgets are tiny (one round, beam 1), so each decode takes seconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from cord_proxy import DecodeJob, DecodeOptions, decode
from cord_proxy.config import parse_config
from cord_proxy.local import LOCAL_MODEL_NAME
from cord_proxy.teachers.capabilities import load_litellm
from cord_proxy.teachers.factory import build_teacher
from cord_proxy.teachers.hosted import stop_litellm_worker
from tests.support.proxy_process import ProxyProcess
from tests.support.threaded_server import ThreadedServer

QUESTION = "What is 12 + 30?"
LOCAL_PRICE = 0.5  # USD per million tokens
HOSTED_PRICE = 2.0
MAPPED_MODEL = "gpt-4o-mini"
KEY_ENV = "CORD_TEST_COST_RELAY_KEY"
TINY = {"max_steps": 1, "beam_width": 1, "max_step_tokens": 16, "answer_budget": 8}

CONFIG = f"""
[server]
host = "127.0.0.1"
port = PORT

[[teachers]]
name = "local"
base_url = "@TEACHER@"
model = "{LOCAL_MODEL_NAME}"
roles = ["propose", "score"]
temperature = 0.5
timeout = 300
cost_per_million_tokens = {LOCAL_PRICE}

[[teachers]]
name = "hosted"
kind = "litellm"
model = "hosted_vllm/{LOCAL_MODEL_NAME}"
base_url = "@TEACHER@"
temperature = 0.7
timeout = 300
cost_per_million_tokens = {HOSTED_PRICE}

[[teachers]]
name = "mapped"
kind = "litellm"
model = "openai/{MAPPED_MODEL}"
base_url = "@RELAY@"
api_key = "env:{KEY_ENV}"
temperature = 0.7
timeout = 300

[[ensembles]]
name = "priced"
teachers = ["local", "hosted", "mapped"]
scorers = ["local"]
[ensembles.defaults]
max_steps = 1
beam_width = 1
max_step_tokens = 16
answer_budget = 8
thinking_budget = 256

[dataset]
path = "@SINK@"
"""


class RenamingRelay(ThreadedServer):
    """Passes every request on to the real teacher, its ``model`` renamed to the served one."""

    thread_name = "renaming-relay"

    def __init__(self, upstream: str):
        super().__init__()
        self.upstream = upstream.removesuffix("/v1")
        self.calls = 0

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._relay)
        return app

    async def _relay(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        if isinstance(body, dict) and "model" in body:
            body["model"] = LOCAL_MODEL_NAME
        self.calls += 1
        async with (
            aiohttp.ClientSession() as session,
            session.request(request.method, self.upstream + request.path, json=body) as answer,
        ):
            return web.Response(
                body=await answer.read(), status=answer.status, content_type="application/json"
            )


def mapped_price(prompt_tokens: int, completion_tokens: int) -> float:
    """litellm's own price of gpt-4o-mini for these tokens (its bundled map, no network)."""
    load_litellm()  # its settings first: the bundled cost map, never a fetched one
    import litellm

    prompt, completion = litellm.cost_per_token(
        model=MAPPED_MODEL, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
    )
    return float(prompt) + float(completion)


def check_costs(teachers: list[dict[str, Any]]) -> float:
    """Each teacher's cost by the rule; returns their sum."""
    by_name = {t["name"]: t for t in teachers}
    for name, price in (("local", LOCAL_PRICE), ("hosted", HOSTED_PRICE)):
        spent = by_name[name]
        tokens = spent["prompt_tokens"] + spent["completion_tokens"] + spent["score_tokens"]
        assert tokens > 0, spent
        assert spent["cost_usd"] == pytest.approx(price * tokens / 1e6, rel=1e-9), spent
    assert by_name["local"]["score_tokens"] > 0 and by_name["hosted"]["score_tokens"] == 0
    mapped = by_name["mapped"]
    assert mapped["proposals"] > 0 and mapped["prompt_tokens"] > 0, mapped
    assert mapped["cost_usd"] > 0
    assert mapped["cost_usd"] == pytest.approx(
        mapped_price(mapped["prompt_tokens"], mapped["completion_tokens"]), rel=1e-6
    )
    return float(sum(t["cost_usd"] for t in teachers))


@pytest.fixture(scope="module")
def relay(local_teacher: str) -> Iterator[RenamingRelay]:
    server = RenamingRelay(local_teacher)
    server.start_in_thread()
    yield server
    server.stop_thread()


@pytest.fixture(scope="module")
def priced_proxy(
    local_teacher: str, relay: RenamingRelay, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ProxyProcess, Path]]:
    workdir = tmp_path_factory.mktemp("cost-proxy")
    sink = workdir / "traces.jsonl"
    config = (
        CONFIG.replace("@TEACHER@", local_teacher)
        .replace("@RELAY@", relay.base_url)
        .replace("@SINK@", str(sink))
    )
    proxy = ProxyProcess(config, workdir, env={KEY_ENV: "sk-relay"}).start()
    yield proxy, sink
    proxy.stop()


def sunk_record(sink: Path, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if sink.exists():
            for line in sink.read_text(encoding="utf-8").splitlines():
                record = json.loads(line)
                if record.get("request_id") == request_id:
                    return dict(record)
        time.sleep(0.1)
    raise AssertionError(f"no record of {request_id} in {sink}")


def test_usage_cost_is_the_sum_of_the_priced_teachers_costs(
    priced_proxy: tuple[ProxyProcess, Path],
) -> None:
    proxy, sink = priced_proxy
    response = httpx.post(
        f"{proxy.base_url}/chat/completions",
        json={
            "model": "priced",
            "messages": [{"role": "user", "content": QUESTION}],
            "seed": 7,
            "cord": {"reference_answer": "42"},
        },
        timeout=600,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    cord, usage = body["cord"], body["usage"]
    # a failed call (an empty step, say) costs what its tokens cost: no failure is asserted away

    total = check_costs(cord["teachers"])
    assert usage["cost"] == pytest.approx(total, rel=1e-12) and usage["cost"] > 0
    assert usage["cost"] == pytest.approx(cord["cost_usd"], rel=1e-12)
    assert usage["teacher_tokens"] == {
        "prompt": sum(t["prompt_tokens"] for t in cord["teachers"]),
        "completion": sum(t["completion_tokens"] for t in cord["teachers"]),
        "scoring": sum(t["score_tokens"] for t in cord["teachers"]),
    }
    completion = ChatCompletion.model_validate(body)  # the SDK still parses the body
    assert completion.usage is not None
    assert (completion.usage.model_extra or {})["cost"] == usage["cost"]

    record = sunk_record(sink, body["id"])
    assert record["cost_usd"] == pytest.approx(usage["cost"], rel=1e-12)
    assert [t["cost_usd"] for t in record["teachers"]] == [t["cost_usd"] for t in cord["teachers"]]
    print(
        f"\nusage.cost ${usage['cost']:.8f}; "
        + "; ".join(f"{t['name']}: ${t['cost_usd']:.8f}" for t in cord["teachers"])
    )


def test_the_streams_usage_chunk_carries_the_same_cost(
    priced_proxy: tuple[ProxyProcess, Path],
) -> None:
    proxy, _ = priced_proxy
    chunks: list[dict[str, Any]] = []
    with httpx.stream(
        "POST",
        f"{proxy.base_url}/chat/completions",
        json={
            "model": "priced",
            "messages": [{"role": "user", "content": QUESTION}],
            "seed": 8,
            "stream": True,
            "stream_options": {"include_usage": True},
            "cord": {"reference_answer": "42"},
        },
        timeout=600,
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(json.loads(line.removeprefix("data: ")))
    for chunk in chunks:
        assert "error" not in chunk, chunk
        ChatCompletionChunk.model_validate(chunk)
    (cord,) = [c["cord"] for c in chunks if "cord" in c]
    (usage,) = [c["usage"] for c in chunks if c.get("usage")]
    total = check_costs(cord["teachers"])
    assert usage["cost"] == pytest.approx(total, rel=1e-12) and usage["cost"] > 0
    assert usage["teacher_tokens"]["scoring"] == sum(t["score_tokens"] for t in cord["teachers"])


async def test_the_engine_prices_teachers_from_their_configs(local_teacher: str) -> None:
    config = parse_config(
        {
            "teachers": [
                {
                    "name": "local",
                    "base_url": local_teacher,
                    "model": LOCAL_MODEL_NAME,
                    "timeout": 300,
                    "cost_per_million_tokens": LOCAL_PRICE,
                },
                {
                    "name": "hosted",
                    "kind": "litellm",
                    "model": f"hosted_vllm/{LOCAL_MODEL_NAME}",
                    "base_url": local_teacher,
                    "timeout": 300,
                    "cost_per_million_tokens": HOSTED_PRICE,
                },
            ],
            "ensembles": [{"name": "e", "teachers": ["local", "hosted"]}],
        }
    )
    teachers = [build_teacher(t) for t in config.teachers]
    try:
        result = await decode(
            DecodeJob.create(
                QUESTION, teachers, DecodeOptions(**TINY, seed=3), reference_answer="42"
            )
        )
    finally:
        for teacher in teachers:
            await teacher.aclose()
        await stop_litellm_worker()
    usage = {u.name: u for u in result.teachers}
    assert usage["local"].cost_usd == pytest.approx(
        LOCAL_PRICE * usage["local"].processed_tokens / 1e6, rel=1e-12
    )
    assert usage["hosted"].cost_usd == pytest.approx(
        HOSTED_PRICE * usage["hosted"].processed_tokens / 1e6, rel=1e-12
    )
    assert usage["local"].cost_usd > 0 and usage["hosted"].cost_usd > 0
