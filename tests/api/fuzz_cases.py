"""A seeded generator of hostile HTTP requests for the proxy, as raw bytes.

Kinds, by weight: JSON bodies with wrong types and odd values in every field at any depth
(``body``), valid requests but for one odd string where text goes (``text``), JSON
byte-level damage (``bytes``), hostile headers (``headers``), malformed
HTTP (``http``), and valid requests (``valid``), which the proxy must still answer 200.
Values that a decode would honour are kept small, so a valid request stays cheap.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

CHAT = "/v1/chat/completions"
ROUTES = ("/v1/models", "/health", "/health/ready", "/metrics", "/nope", "/v1/", "/v1/models/x")
TOP_FIELDS = (
    "model",
    "messages",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "seed",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "n",
    "user",
    "metadata",
    "cord",
    "tools",
    "logprobs",
    "response_format",
    "unknown_field",
    "\ud800",
)
CORD_FIELDS = (
    "reference_answer",
    "beam_width",
    "proposals_per_teacher",
    "teachers",
    "scorers",
    "segmentation",
    "markers",
    "thinking_budget",
    "answer_budget",
    "max_step_tokens",
    "max_steps",
    "include_candidates",
    "reasoning_format",
    "nope",
)
MESSAGE_FIELDS = ("role", "content", "name", "tool_calls", "\udfff")
ODD_STRINGS = (
    "",
    " ",
    "\u0000",
    "\ud800",
    "\udfff",
    "a\ud83d",
    "\ud83d\ude00",
    "\U0010ffff",
    "\ufeff",
    "\u202e\u2066",
    "e\u0301" * 50,
    "\u2028\u2029",
    "💥" * 200,
    "x" * 20_000,
    "fast",
    "user",
    "markers",
    "newline",
    "inline",
    "text",
    "%00",
    "\\u0000",
    "<script>",
    "null",
    "1e999",
)
ODD_NUMBERS: tuple[Any, ...] = (
    0,
    -1,
    1,
    2,
    3,
    2**31,
    2**53 + 1,
    2**63,
    2**64,
    10**30,
    -(10**30),
    10**400,
    0.5,
    -0.0,
    1e308,
    -1e308,
    5e-324,
    float("nan"),
    float("inf"),
    float("-inf"),
)


@dataclass(frozen=True)
class Case:
    kind: str
    data: bytes
    expect_ok: bool = False


def valid_body(rng: random.Random) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "fast",
        "messages": [{"role": "user", "content": rng.choice(["2+3?", "What is 12 + 30?"])}],
    }
    if rng.random() < 0.3:
        body["stream"] = True
    if rng.random() < 0.3:
        body["cord"] = {"beam_width": rng.choice([1, 2]), "max_steps": rng.choice([1, 2])}
    return body


def odd_value(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.random()
    if pick < 0.30:
        return rng.choice(ODD_STRINGS)
    if pick < 0.55:
        return rng.choice(ODD_NUMBERS)
    if pick < 0.62:
        return rng.choice([None, True, False])
    if pick < 0.80 and depth < 4:
        return [odd_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if pick < 0.93 and depth < 4:
        keys = [rng.choice(ODD_STRINGS[:12] + CORD_FIELDS + MESSAGE_FIELDS) for _ in range(3)]
        return {k: odd_value(rng, depth + 1) for k in keys}
    return nested(rng.randint(10, 3000), rng.choice(["[", "{"]))


def nested(depth: int, opener: str) -> Any:
    value: Any = "deep\ud800" if depth % 2 else 1
    for _ in range(min(depth, 900)):  # json.dumps recurses; keep within its limit
        value = [value] if opener == "[" else {"a": value}
    return value


def mutate(rng: random.Random, body: dict[str, Any]) -> None:
    where = rng.random()
    if where < 0.45:
        body[rng.choice(TOP_FIELDS)] = odd_value(rng)
    elif where < 0.75:
        cord = body.setdefault("cord", {})
        if isinstance(cord, dict):
            cord[rng.choice(CORD_FIELDS)] = odd_value(rng)
    else:
        messages = body.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[0], dict):
            target = rng.choice(messages)
            if isinstance(target, dict):
                target[rng.choice(MESSAGE_FIELDS)] = odd_value(rng)
        else:
            body["messages"] = odd_value(rng)


def http_request(
    path: str,
    body: bytes = b"",
    *,
    method: str = "POST",
    headers: list[tuple[bytes, bytes]] | None = None,
    content_length: int | None = None,
    key: bytes = b"",
) -> bytes:
    lines = [method.encode() + b" " + path.encode() + b" HTTP/1.1", b"Host: 127.0.0.1"]
    lines += [b"Connection: close"]
    if key:
        lines.append(b"Authorization: Bearer " + key)
    lines += [name + b": " + value for name, value in headers or []]
    if method == "POST":
        length = len(body) if content_length is None else content_length
        lines += [b"Content-Type: application/json", b"Content-Length: " + str(length).encode()]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def body_case(rng: random.Random, key: bytes) -> Case:
    body = valid_body(rng)
    for _ in range(rng.randint(1, 4)):
        mutate(rng, body)
    raw = json.dumps(body).encode()  # ensure_ascii: lone surrogates travel as \ud800
    return Case("body", http_request(CHAT, raw, key=key))


TEXT_PLACES = ("content", "stop", "markers", "reference_answer", "user", "metadata", "name")


def text_case(rng: random.Random, key: bytes) -> Case:
    """A valid request but for one odd string in a place that takes text."""
    body = valid_body(rng)
    text = rng.choice(ODD_STRINGS[1:]) + rng.choice(["", "?", " 2+3"])
    place = rng.choice(TEXT_PLACES)
    cord = body.setdefault("cord", {})
    if place in ("content", "name"):
        body["messages"][0][place] = text
    elif place == "stop":
        body["stop"] = rng.choice([text, [text, "x"]])
    elif place == "markers":
        cord.update(segmentation="markers", markers=["Wait", text])
    elif place == "reference_answer":
        cord["reference_answer"] = text
    elif place == "metadata":
        body["metadata"] = rng.choice([{"k": text}, {text: "v"}])
    else:
        body["user"] = text
    return Case("text", http_request(CHAT, json.dumps(body).encode(), key=key))


def bytes_case(rng: random.Random, key: bytes) -> Case:
    raw = json.dumps(valid_body(rng)).encode()
    damage: list[Callable[[bytes], bytes]] = [
        lambda b: b[: rng.randint(0, len(b))],
        lambda b: b.replace(b"2+3", b"\xff\xfe\xed\xa0\x80"),
        lambda b: b"\xef\xbb\xbf" + b,
        lambda b: b.replace(b'"fast"', b'"fast", "n": ' + b"9" * 5000),
        lambda b: b.replace(b'"fast"', b'"fast", "temperature": 1e99999'),
        lambda b: b"[" * 100_000 + b"]" * 100_000,
        lambda b: b.replace(b'"model"', b'"model": 1, "model"'),
        lambda b: bytes(rng.randrange(256) for _ in range(rng.randint(1, 300))),
        lambda b: b.replace(b"}", b"}" * 3),
        lambda b: b"x" * 70_000,
    ]
    return Case("bytes", http_request(CHAT, rng.choice(damage)(raw), key=key))


def headers_case(rng: random.Random, key: bytes) -> Case:
    raw = json.dumps(valid_body(rng)).encode()
    auths = [
        b"Bearer \xff\xfe" + key,
        b"bearer " + key,
        b"BEARER  " + key,
        key,
        b"Bearer",
        b"Basic " + key,
        b"Bearer " + key + b"\xc3\x28",
        b"Bearer " + b"k" * 9000,
        b"",
        b"Bearer \xe2\x80\xae" + key,
        b"Bearer " + key + b" extra",
    ]
    odd = [
        (b"Authorization", rng.choice(auths)),
        (
            b"Content-Type",
            rng.choice(
                [
                    b"text/plain",
                    b"application/json; charset=latin-1",
                    b"\xff/\xfe",
                    b"multipart/form-data; boundary=x",
                ]
            ),
        ),
        (b"X-" + bytes(rng.randrange(65, 91) for _ in range(5)), b"\x80\x81\xfe\xff"),
        (b"Accept", b"text/html"),
        (b"Transfer-Encoding", b"gzip"),
        (b"Content-Encoding", b"gzip"),
        (b"Expect", b"100-continue"),
    ]
    headers = [rng.choice(odd) for _ in range(rng.randint(1, 3))]
    has_auth = any(name == b"Authorization" for name, _ in headers)
    length = rng.choice([None, None, None, 0, len(raw) - 5, len(raw) + 3])
    data = http_request(
        CHAT, raw, headers=headers, content_length=length, key=b"" if has_auth else key
    )
    return Case("headers", data)


def http_case(rng: random.Random, key: bytes) -> Case:
    choices = [
        b"GARBAGE\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n: novalue\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
        b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST " + CHAT.encode() + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 5\r\n\r\nzz\r\n",
        b"POST " + CHAT.encode() + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"fffffffffffffffffff\r\n",
        b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"
        + bytes(rng.randrange(256) for _ in range(60)),
        b"GET http://evil/ HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /v1/%00%ff/../models HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"G\xffT /health HTTP/1.1\r\nHost: x\r\n\r\n",
        bytes(rng.randrange(256) for _ in range(rng.randint(1, 200))) + b"\r\n\r\n",
    ]
    method = rng.choice(["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "POST"])
    routed = http_request(rng.choice((*ROUTES, CHAT)), b"{}", method=method, key=key)
    return Case("http", rng.choice([*choices, routed, routed]))


def valid_case(rng: random.Random, key: bytes) -> Case:
    raw = json.dumps(valid_body(rng)).encode()
    return Case("valid", http_request(CHAT, raw, key=key), expect_ok=True)


KINDS: tuple[tuple[float, Callable[[random.Random, bytes], Case]], ...] = (
    (0.45, body_case),
    (0.10, text_case),
    (0.12, bytes_case),
    (0.15, headers_case),
    (0.12, http_case),
    (0.06, valid_case),
)


def cases(count: int, key: bytes, seed: int = 11) -> Iterator[Case]:
    rng = random.Random(seed)
    weights = [weight for weight, _ in KINDS]
    makers = [maker for _, maker in KINDS]
    for _ in range(count):
        yield rng.choices(makers, weights)[0](rng, key)
