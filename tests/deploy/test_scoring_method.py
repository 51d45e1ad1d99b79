"""deploy/vllm/cord.toml's scorers get the prefix-cached method where the server serves it.

Every scorer is built from the shipped config, with only its base_url pointed at a FAKE
vLLM (cord_proxy.testing.fake_vllm_wire). A server that answers `logprob_token_ids` as vLLM
0.32.0 does gets the cached method, with or without cord-proxy's logits processor (forced
reads); one that ignores the field (an older vLLM) or reports processed log-probabilities
falls back to prompt_logprobs.
"""

from __future__ import annotations

from typing import Any, Literal

import pytest
from aiohttp import web

from cord_proxy.config import TeacherConfig, ensemble_scorers, load_config
from cord_proxy.teachers.openai_compat import OpenAICompatTeacher
from cord_proxy.testing import fake_vllm_wire as wire
from cord_proxy.testing.serving import serving_posts
from tests.deploy.deploy_fakes import VLLM_DIR

Server = Literal[
    "vllm-0.32", "vllm-0.32-forcing", "ignores-logprob-token-ids", "processed-logprobs"
]
FORCING: tuple[Server, ...] = ("vllm-0.32-forcing", "processed-logprobs")


def scripted(token: int, position: int) -> float:
    return -((token % 5) + (position % 4) + 1) / 8


def answer(server: Server, body: dict[str, Any]) -> dict[str, Any]:
    if body.get("logprob_token_ids") and server == "ignores-logprob-token-ids":
        prompts = body["prompt"] if isinstance(body["prompt"][0], list) else [body["prompt"]]
        sampled = {"tokens": ["token_id:0"], "top_logprobs": [{"token_id:0": -0.7}]}
        return {
            "choices": [{"index": i, "text": "?", "logprobs": sampled} for i in range(len(prompts))]
        }
    result: dict[str, Any] = wire.score_completion(
        body, scripted, forced_zero=server == "processed-logprobs", forces=server in FORCING
    )
    return result


def scorer_configs() -> list[TeacherConfig]:
    config = load_config(VLLM_DIR / "cord.toml")
    names = {n for e in config.ensembles for n in ensemble_scorers(config, e)}
    return [config.teacher(n) for n in sorted(names)]


def test_every_scorer_of_the_paper_config_is_auto() -> None:
    scorers = scorer_configs()
    assert scorers
    assert all(t.score_method == "auto" for t in scorers)
    assert all(t.prompt.kind == "template" for t in scorers)


@pytest.mark.parametrize(
    ("server", "method"),
    [
        ("vllm-0.32", "cached"),
        ("vllm-0.32-forcing", "cached"),
        ("ignores-logprob-token-ids", "prompt_logprobs"),
        ("processed-logprobs", "prompt_logprobs"),
    ],
)
async def test_the_scorers_resolve_by_what_the_server_serves(server: Server, method: str) -> None:
    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        if request.path == "/tokenize":
            return web.json_response(wire.tokenize(body, max_model_len=24576))
        if request.path == "/detokenize":
            return web.json_response(wire.detokenize(body))
        return web.json_response(answer(server, body))

    async with serving_posts(handle) as base_url:
        for shipped in scorer_configs():
            config = shipped.model_copy(update={"base_url": base_url, "max_retries": 0})
            teacher = OpenAICompatTeacher(config)
            try:
                choice = await teacher.scoring_choice()
            finally:
                await teacher.aclose()
            assert choice.method == method, f"{shipped.name}: {choice.describe()}"
            if method == "cached":
                reads = "forced reads" if server in FORCING else "one-token reads"
                assert choice.reason.endswith(reads), choice.describe()
