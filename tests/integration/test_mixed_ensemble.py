"""A mixed ensemble against the REAL local vLLM teacher: a ``litellm`` teacher and a direct
``openai`` teacher propose, the ``openai`` one scores.

The litellm teacher reaches the same local server through litellm's hosted-vLLM provider
(``hosted_vllm/gemma3-270m`` with ``api_base``); nothing leaves the machine. Once through
the decoding engine, once through the real proxy over HTTP (the `cord` provenance).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cord_proxy import DecodeJob, DecodeOptions, decode
from cord_proxy.config import parse_config
from cord_proxy.teachers.factory import build_teacher
from cord_proxy.teachers.hosted import HostedTeacher
from cord_proxy.teachers.openai_compat import OpenAICompatTeacher
from tests.support.proxy_process import ProxyProcess

QUESTION = "What is 12 + 30?"
SMALL = {
    "beam_width": 2,
    "max_steps": 3,
    "max_step_tokens": 24,
    "answer_budget": 16,
    "thinking_budget": 512,
}

CONFIG = """
[server]
host = "127.0.0.1"
port = PORT

[[teachers]]
name = "hosted"
kind = "litellm"
model = "hosted_vllm/gemma3-270m"
base_url = "TEACHER"
roles = ["propose"]
temperature = 0.7
timeout = 300

[[teachers]]
name = "local"
base_url = "TEACHER"
model = "gemma3-270m"
roles = ["propose", "score"]
temperature = 0.5
timeout = 300

[[ensembles]]
name = "mixed"
teachers = ["hosted", "local"]
scorers = ["local"]
[ensembles.defaults]
beam_width = 2
max_steps = 3
max_step_tokens = 24
answer_budget = 16
thinking_budget = 512
"""


def candidate_proposers(steps: list[Any]) -> set[str]:
    return {
        name
        for step in steps
        for candidate in (step.candidates or [])
        for name in candidate.proposers
    }


async def test_mixed_ensemble_decode_on_the_real_teacher(local_teacher: str) -> None:
    config = parse_config(
        {
            "teachers": [
                {
                    "name": "hosted",
                    "kind": "litellm",
                    "model": "hosted_vllm/gemma3-270m",
                    "base_url": local_teacher,
                    "temperature": 0.7,
                    "timeout": 300,
                },
                {
                    "name": "local",
                    "base_url": local_teacher,
                    "model": "gemma3-270m",
                    "temperature": 0.5,
                    "timeout": 300,
                },
            ],
            "ensembles": [{"name": "mixed", "teachers": ["hosted", "local"]}],
        }
    )
    hosted, local = (build_teacher(t) for t in config.teachers)
    assert isinstance(hosted, HostedTeacher) and isinstance(local, OpenAICompatTeacher)
    assert not hosted.can_score and local.can_score
    try:
        result = await decode(
            DecodeJob.create(
                QUESTION,
                [hosted, local],
                DecodeOptions(**SMALL, include_candidates=True, seed=1),
                reference_answer="42",
            )
        )
    finally:
        await hosted.aclose()
        await local.aclose()

    assert result.traces and result.reference_used
    assert result.failures == [] and result.dropped == []
    assert candidate_proposers(result.best.steps) == {"hosted", "local"}
    for trace in result.traces:
        for step in trace.steps:
            assert {p.scorer for p in step.scorers} == {"local"}
    usage = {u.name: u for u in result.teachers}
    assert usage["hosted"].proposals > 0 and usage["local"].proposals > 0
    assert usage["hosted"].completion_tokens > 0 and usage["local"].completion_tokens > 0
    assert usage["hosted"].prompt_tokens > 0  # litellm's usage, on the proposals
    assert usage["hosted"].cost_usd == 0.0  # a local model has no price in litellm's map
    assert usage["hosted"].score_calls == 0 and usage["local"].score_calls > 0
    print(
        f"\nmixed decode {result.wall_s:.1f} s; "
        + "; ".join(
            f"{u.name}: {u.proposals} proposals, {u.selected} selected, "
            f"{u.prompt_tokens}+{u.completion_tokens} tokens, ${u.cost_usd:.4f}"
            for u in result.teachers
        )
    )


@pytest.fixture(scope="module")
def mixed_proxy(
    local_teacher: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyProcess]:
    proxy = ProxyProcess(
        CONFIG.replace("TEACHER", local_teacher), tmp_path_factory.mktemp("mixed-proxy")
    ).start()
    yield proxy
    proxy.stop()


def test_mixed_ensemble_provenance_over_http(mixed_proxy: ProxyProcess) -> None:
    response = httpx.post(
        f"{mixed_proxy.base_url}/chat/completions",
        json={
            "model": "mixed",
            "messages": [{"role": "user", "content": QUESTION}],
            "seed": 5,
            "cord": {"reference_answer": "42", "include_candidates": True},
        },
        timeout=600,
    )

    assert response.status_code == 200, response.text
    body = response.json()
    cord = body["cord"]
    proposers = {
        name
        for step in cord["steps"]
        for candidate in step["candidates"] or []
        for name in candidate["proposers"]
    }
    assert proposers == {"hosted", "local"}
    teachers = {t["name"]: t for t in cord["teachers"]}
    for name in ("hosted", "local"):
        assert teachers[name]["completion_tokens"] > 0
        assert "cost_usd" in teachers[name]
    assert teachers["hosted"]["prompt_tokens"] > 0
    assert teachers["hosted"]["score_calls"] == 0
    assert "cost_usd" in cord
    assert body["choices"][0]["message"]["reasoning_content"]
