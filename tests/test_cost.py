"""The cost of a decode (issue 22): `cost_per_million_tokens`, each teacher's `cost_usd`, and
`usage.cost` / `usage.teacher_tokens` in the completion, the stream and the dataset record.

The pricing rule: a teacher with a price costs price x (prompt + completion + scoring tokens)
/ 1e6, computed once at the end of the decode, in place of its calls' own cost; a hosted
teacher without one keeps litellm's per-call cost; a local one without one costs 0.
Teachers here are in-process `ScriptedFakeTeacher`s and a FAKE OpenAI-compatible provider
(aiohttp, in the test's loop) behind a real litellm teacher; the real teacher is in
tests/integration/test_cost_real.py.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from cord_proxy.completion import (
    ChunkWriter,
    completion_body,
    decode_cost,
    teacher_tokens,
    usage_counts,
)
from cord_proxy.config import TeacherConfig, parse_config
from cord_proxy.data.records import trace_record
from cord_proxy.decoding import DecodeJob, DecodeOptions, decode
from cord_proxy.decoding.job import configured_prices
from cord_proxy.decoding.trace import DecodeResult, FinishedTrace, StepRecord, TeacherUsage
from cord_proxy.errors import ConfigError, InvalidRequestError
from cord_proxy.runtime import Runtime
from cord_proxy.teachers import hosted as hosted_module
from cord_proxy.teachers.base import Proposal
from cord_proxy.teachers.factory import build_teacher
from cord_proxy.teachers.hosted import HostedTeacher, stop_litellm_worker
from tests.support.fakes import ScriptedFakeTeacher, is_answer_prefix

OPTIONS = DecodeOptions(max_steps=2, beam_width=1, max_step_tokens=16, answer_budget=8, seed=3)


def config_of(**teacher: Any) -> dict[str, Any]:
    fields = {"name": "t", "base_url": "http://127.0.0.1:9/v1", "model": "m", **teacher}
    return {"teachers": [fields], "ensembles": [{"name": "e", "teachers": [fields["name"]]}]}


# --- the setting ------------------------------------------------------------------------------


def test_the_price_defaults_to_none_and_takes_zero_and_positive_numbers() -> None:
    assert parse_config(config_of()).teachers[0].cost_per_million_tokens is None
    free = parse_config(config_of(cost_per_million_tokens=0)).teachers[0]
    assert free.cost_per_million_tokens == 0
    priced = TeacherConfig(
        name="gpt", kind="litellm", model="openai/x", cost_per_million_tokens=2.5
    )
    assert priced.cost_per_million_tokens == 2.5


@pytest.mark.parametrize("price", [-0.01, math.inf, -math.inf, math.nan])
def test_a_negative_or_non_finite_price_is_a_config_error_naming_the_teacher(
    price: float,
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config_of(name="gpt-priced", cost_per_million_tokens=price))
    assert "gpt-priced" in str(caught.value) and "cost_per_million_tokens" in str(caught.value)


def test_a_toml_inf_price_is_refused_too(tmp_path: Any) -> None:
    from cord_proxy.config import load_config

    path = tmp_path / "cord.toml"
    path.write_text(
        '[[teachers]]\nname = "local"\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "m"\n'
        "cost_per_million_tokens = inf\n\n"
        '[[ensembles]]\nname = "e"\nteachers = ["local"]\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="teacher 'local': cost_per_million_tokens"):
        load_config(path)


def test_the_runtime_gives_every_job_the_configured_prices() -> None:
    config = parse_config(
        {
            "teachers": [
                {"name": "a", "base_url": "http://127.0.0.1:9/v1", "model": "m"},
                {
                    "name": "b",
                    "base_url": "http://127.0.0.1:9/v1",
                    "model": "m",
                    "cost_per_million_tokens": 0.4,
                },
            ],
            "ensembles": [{"name": "e", "teachers": ["a", "b"]}],
        }
    )
    fakes = {n: ScriptedFakeTeacher(n, proposals=["x"], logprobs=[-1.0]) for n in "ab"}
    runtime = Runtime(config, fakes)
    job = runtime.job("e", [])
    assert dict(job.decode.prices) == {"b": 0.4}


def test_a_job_refuses_a_bad_price_and_create_reads_the_teachers_configs() -> None:
    teacher = ScriptedFakeTeacher("a", proposals=["x"], logprobs=[-1.0])
    with pytest.raises(InvalidRequestError, match="prices"):
        DecodeJob.create("q", [teacher], prices={"a": -1.0})
    built = build_teacher(TeacherConfig(name="b", base_url="http://127.0.0.1:9/v1", model="m"))
    priced = build_teacher(
        TeacherConfig(
            name="c", base_url="http://127.0.0.1:9/v1", model="m", cost_per_million_tokens=3.0
        )
    )
    assert configured_prices([teacher, built, priced]) == {"c": 3.0}
    assert dict(DecodeJob.create("q", [teacher, built, priced]).prices) == {"c": 3.0}
    assert dict(DecodeJob.create("q", [priced], prices={}).prices) == {}  # given: as given


# --- the engine: priced once at the end, from the token counts ---------------------------------


def writer(name: str, cost: float = 0.0) -> ScriptedFakeTeacher:
    """Proposes steps and answers with fixed token counts and a per-call cost; scores too."""

    def script(prefix: str) -> Proposal:
        if is_answer_prefix(prefix):
            return Proposal("42", "stop", 2, prompt_tokens=30, cost_usd=cost)
        return Proposal(
            f" {name} adds.", "stop", 5, stop_string="\n\n", prompt_tokens=20, cost_usd=cost
        )

    return ScriptedFakeTeacher(name, proposals=script, logprobs=[-0.5, -0.25])


async def test_a_priced_teacher_costs_its_price_times_every_token_it_processed() -> None:
    local, hosted_like, free = writer("local"), writer("hosted", cost=0.001), writer("free")
    result = await decode(
        DecodeJob.create(
            "What is 40 + 2?",
            [local, hosted_like, free],
            OPTIONS,
            reference_answer="42",
            prices={"local": 1.5},
        )
    )
    usage = {u.name: u for u in result.teachers}
    spent = usage["local"]
    assert spent.prompt_tokens > 0 and spent.completion_tokens > 0 and spent.score_tokens > 0
    tokens = spent.prompt_tokens + spent.completion_tokens + spent.score_tokens
    assert spent.processed_tokens == tokens
    assert spent.cost_usd == pytest.approx(1.5 * tokens / 1e6, rel=1e-12)
    # without a price: the calls' own cost (litellm's, for a hosted teacher), or 0
    calls = len(hosted_like.proposals_calls()) + len(hosted_like.answer_calls())
    assert usage["hosted"].cost_usd == pytest.approx(0.001 * calls)
    assert usage["free"].cost_usd == 0.0
    # a price replaces the calls' own cost, it does not add to it
    again = await decode(
        DecodeJob.create(
            "What is 40 + 2?",
            [writer("local"), writer("hosted", cost=0.001), writer("free")],
            OPTIONS,
            reference_answer="42",
            prices={"hosted": 2.0},
        )
    )
    priced = next(u for u in again.teachers if u.name == "hosted")
    assert priced.cost_usd == pytest.approx(2.0 * priced.processed_tokens / 1e6, rel=1e-12)


# --- the completion, the stream and the record ---------------------------------------------------


def decode_result() -> DecodeResult:
    trace = FinishedTrace(
        reasoning="### Step 1. Add.",
        answer="5",
        steps=[
            StepRecord(
                index=1,
                text="### Step 1. Add.",
                proposers=["a"],
                score=0.5,
                log_score=-0.69,
                scorers=[],
                tokens=20,
            )
        ],
        score=0.4,
        log_score=-1.0,
        closed_by="think",
        answer_teacher="a",
        answer_finish_reason="stop",
        reasoning_tokens=20,
        answer_tokens=3,
    )
    return DecodeResult(
        traces=[trace],
        score_mode="reference",
        reference_used=True,
        prompt_tokens=12,
        teachers=[
            TeacherUsage(
                name="a", prompt_tokens=100, completion_tokens=40, score_tokens=300, cost_usd=0.1
            ),
            TeacherUsage(name="b", prompt_tokens=7, completion_tokens=3, cost_usd=0.2),
        ],
        failures=[],
        rounds=[],
        wall_s=1.0,
        answer_wait_s=0.1,
    )


def test_usage_carries_the_decode_cost_and_teacher_tokens_and_the_sdk_parses_it() -> None:
    result = decode_result()
    body = completion_body(
        result, ensemble="cord", n=1, reasoning_format="field", request_id="chatcmpl-1"
    )
    usage = body["usage"]
    assert usage["cost"] == sum(t["cost_usd"] for t in body["cord"]["teachers"])
    assert usage["cost"] == body["cord"]["cost_usd"] == pytest.approx(0.3)
    assert usage["teacher_tokens"] == {"prompt": 107, "completion": 43, "scoring": 300}
    completion = ChatCompletion.model_validate(json.loads(json.dumps(body)))
    assert completion.usage is not None
    assert (completion.usage.model_extra or {})["cost"] == pytest.approx(0.3)
    assert completion.usage.prompt_tokens == 12  # the standard counts are unchanged
    assert decode_cost(result.teachers) == usage["cost"]
    assert teacher_tokens(result.teachers) == usage["teacher_tokens"]


def test_the_stream_usage_chunk_carries_them_too() -> None:
    result = decode_result()
    usage = usage_counts(
        12, 20, 3, cost=decode_cost(result.teachers), teacher_tokens=teacher_tokens(result.teachers)
    )
    chunk = ChunkWriter("chatcmpl-1", "cord").usage(usage)
    parsed = ChatCompletionChunk.model_validate(json.loads(json.dumps(chunk)))
    assert parsed.usage is not None and parsed.usage.completion_tokens == 23
    assert (parsed.usage.model_extra or {})["cost"] == pytest.approx(0.3)
    assert (parsed.usage.model_extra or {})["teacher_tokens"]["scoring"] == 300
    # without a cost (an export of an old record): the standard fields alone, as before
    assert set(usage_counts(1, 2, 3)) == {
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "completion_tokens_details",
    }


async def test_the_stream_events_usage_equals_the_completion_usage() -> None:
    from cord_proxy.api.chat_events import Usage
    from cord_proxy.api.chat_stream import _payloads

    result = decode_result()
    event = Usage(12, 20, 3, decode_cost(result.teachers), teacher_tokens(result.teachers))
    (chunk,) = _payloads(event, ChunkWriter("chatcmpl-1", "cord"), inline=False)
    body = completion_body(
        result, ensemble="cord", n=1, reasoning_format="field", request_id="chatcmpl-1"
    )
    assert chunk["usage"] == body["usage"]


def test_the_dataset_record_carries_the_same_cost() -> None:
    result = decode_result()
    job = DecodeJob.create("q", [ScriptedFakeTeacher("a", proposals=["x"], logprobs=[-1.0])])
    record = trace_record("chatcmpl-1", "cord", job, result)
    assert record["cost_usd"] == decode_cost(result.teachers)
    assert [t["cost_usd"] for t in record["teachers"]] == [0.1, 0.2]


# --- a hosted teacher with a price never asks litellm's cost map ---------------------------------


@pytest.fixture
async def provider() -> AsyncIterator[str]:
    """A FAKE OpenAI-compatible provider: every chat completion is one step, with usage."""

    async def reply(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response(
            {
                "id": "fake",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", "fake"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": " Add 40 and 2."},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 40, "completion_tokens": 6, "total_tokens": 46},
            }
        )

    app = web.Application()
    app.router.add_post("/{tail:.*}", reply)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    await runner.cleanup()
    await stop_litellm_worker()


def hosted(base_url: str, **overrides: Any) -> HostedTeacher:
    fields: dict[str, Any] = {
        "name": "gpt",
        "kind": "litellm",
        "model": "openai/gpt-4o-mini",  # in litellm's cost map
        "base_url": base_url,
        "api_key": "env:FAKE_KEY_FOR_COST_TEST",
        "max_retries": 0,
        "timeout": 20.0,
        **overrides,
    }
    teacher = build_teacher(TeacherConfig.model_validate(fields))
    assert isinstance(teacher, HostedTeacher)
    return teacher


async def test_a_priced_hosted_teacher_overrides_litellms_map_and_skips_it(
    provider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_KEY_FOR_COST_TEST", "sk-fake")
    mapped = hosted(provider)
    priced = hosted(provider, name="gpt-priced", cost_per_million_tokens=10.0)
    try:
        (by_map,) = await mapped.propose([], "<think>\n", n=1, stop=["\n\n"], max_tokens=8)
        assert by_map.cost_usd > 0  # litellm's price of gpt-4o-mini, per call

        def forbidden(_response: Any) -> float:
            raise AssertionError("a priced teacher must not ask litellm's cost map")

        monkeypatch.setattr(hosted_module, "response_cost", forbidden)
        (by_config,) = await priced.propose([], "<think>\n", n=1, stop=["\n\n"], max_tokens=8)
        assert by_config.cost_usd == 0.0 and by_config.prompt_tokens == 40

        local = writer("local")
        result = await decode(
            DecodeJob.create(
                "What is 40 + 2?", [priced, local], OPTIONS, reference_answer="42"
            )  # prices from the teachers' configs
        )
    finally:
        await mapped.aclose()
        await priced.aclose()
    usage = {u.name: u for u in result.teachers}["gpt-priced"]
    assert usage.prompt_tokens > 0 and usage.score_tokens == 0
    assert usage.cost_usd == pytest.approx(10.0 * usage.processed_tokens / 1e6, rel=1e-12)
    assert usage.cost_usd > 0
