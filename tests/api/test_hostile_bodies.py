"""200 malformed or hostile bodies through the real proxy: not one 5xx."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

import httpx

from tests.api.conftest import API_KEY
from tests.support.proxy_process import ProxyProcess

VALID = {"model": "fast", "messages": [{"role": "user", "content": "What is 2 + 3?"}]}
ODD_VALUES: list[object] = [
    None,
    True,
    -1,
    0,
    10**400,
    -(10**400),
    1e308,
    3.5,
    "",
    "x" * 5000,
    [],
    {},
    [None],
    {"a": {"b": {}}},
    "\u0000",
    "\ud7ff",
    "💥" * 100,
]
FIELDS = [
    "model",
    "messages",
    "n",
    "stream",
    "temperature",
    "top_p",
    "seed",
    "max_tokens",
    "stop",
    "user",
    "metadata",
    "cord",
    "stream_options",
    "max_completion_tokens",
]
CORD_FIELDS = [
    "beam_width",
    "teachers",
    "scorers",
    "segmentation",
    "markers",
    "thinking_budget",
    "reference_answer",
    "max_steps",
    "reasoning_format",
]


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def hostile_bodies(count: int, seed: int = 7) -> Iterator[bytes]:
    rng = random.Random(seed)
    fixed: list[bytes] = [
        b"",
        b"null",
        b"[]",
        b"42",
        b'"text"',
        b"{",
        b"\xff\xfe\xfd",
        b'{"model": "\xc3\x28"}',
        deep(100_000).encode(),
        ('{"messages": ' + deep(5000) + "}").encode(),
        json.dumps({**VALID, "messages": []}).encode(),
        json.dumps({**VALID, "messages": [{"role": "user", "content": ""}]}).encode(),
        json.dumps({**VALID, "messages": [{"role": "tool", "content": "x"}]}).encode(),
        json.dumps({**VALID, "messages": [{"role": "user"}]}).encode(),
        b'{"model": "fast", "messages": [{"role": "user", "content": "hi"}], "n": 1e999}',
        b'{"model": "fast", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
    ]
    yield from fixed
    for _ in range(count - len(fixed)):
        body: dict[str, object] = json.loads(json.dumps(VALID))
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.3:
                cord = body.setdefault("cord", {})
                if isinstance(cord, dict):
                    cord[rng.choice(CORD_FIELDS)] = rng.choice(ODD_VALUES)
            else:
                body[rng.choice(FIELDS)] = rng.choice(ODD_VALUES)
        yield json.dumps(body).encode()


def test_hostile_bodies_never_get_a_5xx(fake_proxy: ProxyProcess) -> None:
    statuses: dict[int, int] = {}
    with httpx.Client(timeout=60) as client:
        for body in hostile_bodies(200):
            response = client.post(
                f"{fake_proxy.base_url}/chat/completions",
                content=body,
                headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
            )
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert response.status_code < 500, (body[:200], response.text[:500])
            if response.status_code >= 400:
                assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert sum(statuses.values()) == 200
    assert statuses.get(400, 0) > 100
