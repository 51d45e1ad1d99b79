"""A teacher that is a fleet: two real vLLM replicas of the local teacher behind a real
`vllm-router` (deploy/router/serve-router.sh), and CoRD decodes whose teachers' base_url is
the router. Routing is read from the replicas' own /metrics.

The replicas (about 5.5 GB each) are started here only, with the smallest budgets.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.router import (
    MODEL,
    Counts,
    free_port,
    replica_counts,
    run_decodes,
    start_replicas,
    start_router,
    stop,
)
from cord_proxy import DecodeOptions

ONE_BEAM = DecodeOptions(
    beam_width=1, max_steps=2, max_step_tokens=12, thinking_budget=24, answer_budget=6, seed=3
)
TWO_BEAMS = ONE_BEAM.model_copy(update={"beam_width": 2})
# vLLM CPU caches prefixes in blocks of 128 tokens: a question of a few hundred tokens
# gives a beam's later calls whole blocks to hit.
FACTS = " ".join(f"Fact {i}: {i} plus {i} is {2 * i}." for i in range(1, 41))


def _question(a: int, b: int) -> str:
    return f"{FACTS}\nUsing the facts if they help, what is {a} + {b}?"


def _router_binary() -> str:
    found = shutil.which("vllm-router", path=str(Path(sys.executable).parent))
    assert found, "vllm-router is not installed: bash scripts/setup.sh installs it"
    return found


@pytest.fixture(scope="module")
def replicas() -> Iterator[list[str]]:
    """Two replicas started here, or CORD_TEST_REPLICA_URLS (two running server roots)."""
    _router_binary()
    given = os.environ.get("CORD_TEST_REPLICA_URLS")
    if given:
        urls = given.split()
        assert len(urls) == 2 and all(replica_counts(u) for u in urls)
        yield urls
        return
    servers = start_replicas(2)
    try:
        yield [s.base_url.removesuffix("/v1") for s in servers]
    finally:
        for server in servers:
            server.stop()


def _decode_on(
    base_url: str, replicas: list[str], question: str, options: DecodeOptions
) -> list[Counts]:
    """One decode through the router; the requests each replica served for it."""
    before = [replica_counts(r) for r in replicas]
    _, results = asyncio.run(run_decodes(base_url, [(question, "7")], options))
    assert results[0].traces, "the decode finished with a trace"
    return [replica_counts(r) - b for r, b in zip(replicas, before, strict=True)]


def _check_routes(root: str) -> None:
    """Every route the teacher client uses, through the router."""
    with httpx.Client(base_url=root, timeout=300.0) as http:
        models = http.get("/v1/models").json()
        assert MODEL in [m["id"] for m in models["data"]]
        completion = http.post(
            "/v1/completions", json={"model": MODEL, "prompt": "2 + 2 =", "max_tokens": 2}
        ).json()
        assert completion["choices"][0]["text"] is not None
        chat = http.post(
            "/v1/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2},
        ).json()
        assert chat["choices"][0]["message"]["role"] == "assistant"
        tokens = http.post("/tokenize", json={"model": MODEL, "prompt": "Hello world"}).json()
        assert tokens["count"] == len(tokens["tokens"]) > 1
        text = http.post("/detokenize", json={"model": MODEL, "tokens": tokens["tokens"]}).json()
        assert "Hello world" in text["prompt"]


def test_consistent_hash_keeps_each_beam_on_one_replica(
    replicas: list[str], tmp_path: Path
) -> None:
    port = free_port()
    router = start_router("consistent_hash", replicas, port, tmp_path / "router.log")
    root = f"http://127.0.0.1:{port}"
    try:
        _check_routes(root)
        one = _decode_on(root + "/v1", replicas, _question(3, 4), ONE_BEAM)
        two = _decode_on(root + "/v1", replicas, _question(2, 5), TWO_BEAMS)
    finally:
        stop(router)
    print(f"\nconsistent_hash, B=1: requests {[c.requests for c in one]}, "
          f"hit rates {[round(c.hit_rate, 3) for c in one]}")  # fmt: skip
    print(f"consistent_hash, B=2: requests {[c.requests for c in two]}, "
          f"hit rates {[round(c.hit_rate, 3) for c in two]}")  # fmt: skip
    served = [c for c in one if c.requests > 0]
    assert len(served) == 1, f"one beam, one key: every call on one replica ({one})"
    assert served[0].requests >= 5 and served[0].hit_rate > 0.0
    assert sum(c.requests for c in two) > sum(c.requests for c in one)


def test_round_robin_spreads_one_beam_over_both_replicas(
    replicas: list[str], tmp_path: Path
) -> None:
    port = free_port()
    router = start_router("round_robin", replicas, port, tmp_path / "router.log")
    try:
        one = _decode_on(f"http://127.0.0.1:{port}/v1", replicas, _question(1, 6), ONE_BEAM)
    finally:
        stop(router)
    print(f"\nround_robin, B=1: requests {[c.requests for c in one]}, "
          f"hit rates {[round(c.hit_rate, 3) for c in one]}")  # fmt: skip
    assert all(c.requests > 0 for c in one), f"round_robin alternates replicas ({one})"
