"""Hostile input to the Responses routes: 1,000 fuzzed create bodies and a few hundred fuzzed
ids and queries, none answered with a 5xx, each refusal an OpenAI error object."""

from __future__ import annotations

import random
from typing import Any

import httpx

from tests.responses.conftest import KEY_A
from tests.support.proxy_process import ProxyProcess

VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    2**70,
    1.5,
    "",
    "x" * 300,
    "\u0000",
    [],
    {},
    [1, 2],
    {"a": 1},
    [{"role": "user"}],
    [{"role": "user", "content": [{"type": "input_text"}]}],
    [{"type": "reasoning", "content": []}],
    {"effort": "max"},
    {"format": {"type": "json_schema", "name": "a b"}},
    {"format": {"type": "json_schema", "name": "s", "schema": {"type": 3}}},
    "resp_" + "0" * 32,
]
FIELDS = [
    "model",
    "input",
    "instructions",
    "previous_response_id",
    "stream",
    "background",
    "store",
    "max_output_tokens",
    "reasoning",
    "text",
    "temperature",
    "top_p",
    "metadata",
    "include",
    "tools",
    "tool_choice",
    "truncation",
    "cord",
    "conversation",
    "unknown_field",
]


def test_fuzzed_bodies_and_ids_get_no_5xx(proxy: ProxyProcess) -> None:
    rng = random.Random(23)
    headers = {"Authorization": f"Bearer {KEY_A}"}
    statuses: dict[int, int] = {}
    with httpx.Client(base_url=proxy.base_url, headers=headers, timeout=60) as client:
        for _ in range(1000):
            # a model no ensemble has: the body is parsed and converted, never decoded
            body: dict[str, Any] = {"model": "no-such-ensemble", "input": "What is 1 + 1?"}
            for name in rng.sample(FIELDS, rng.randint(1, 4)):
                body[name] = rng.choice(VALUES)
            got = client.post("/responses", json=body)
            statuses[got.status_code] = statuses.get(got.status_code, 0) + 1
            assert got.status_code < 500, (body, got.text)
            assert got.json()["error"]["message"]
        for _ in range(300):
            ident = rng.choice(["resp_x", "", "%00", "../x", "resp_" + "f" * 32, "a" * 500])
            path = rng.choice(["", "/cancel", "/input_items"])
            query = rng.choice(
                ["", "?stream=true", "?stream=maybe", "?starting_after=-5", "?limit=1000&order=up"]
            )
            method = "POST" if path == "/cancel" else rng.choice(["GET", "DELETE"])
            if path == "/input_items":
                method = "GET"
            got = client.request(method, f"/responses/{ident}{path}{query}")
            assert got.status_code < 500, (method, ident, path, query, got.text)
    assert statuses and max(statuses) < 500
