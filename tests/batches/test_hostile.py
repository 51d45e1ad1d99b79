"""Hostile uploads and batch inputs: 200 generated files and multipart bodies get no 5xx,
nothing is written outside the data directory, every malformed input fails its batch in
validation with an error that names the line, and keys mapped to owners see only their own."""

from __future__ import annotations

import json
import random
import re
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.batches.conftest import request_line
from tests.support.proxy_process import ProxyProcess

KEY_A, KEY_B = "sk-alice-batches", "sk-bob-batches"
MAX_LINE = 4096
MAX_UPLOAD = 65536
CONFIG = """
[server]
host = "127.0.0.1"
port = PORT
api_keys = ["env:CORD_TEST_KEY_A", "env:CORD_TEST_KEY_B"]
max_body_bytes = 4096

[[teachers]]
name = "t"
base_url = "TEACHER"
model = "gemma3-270m"

[[ensembles]]
name = "cord"
teachers = ["t"]

[batches]
data_dir = "DATA_DIR"
max_upload_bytes = 65536
max_active_batches = 1000
owners = { "env:CORD_TEST_KEY_A" = "alice", "env:CORD_TEST_KEY_B" = "bob" }
"""
NAMES = [
    "../../escape-{n}.jsonl",
    "../../../../../../tmp/cord-escape-{n}.jsonl",
    "/tmp/cord-escape-{n}.jsonl",
    "..\\..\\escape-{n}.jsonl",
    "a/../../escape-{n}.jsonl",
    "..",
    ".",
    "",
    "nul\x00byte-{n}.jsonl",
    "x" * 600,
    "dir/sub/../../../escape-{n}",
    "%2e%2e%2fescape-{n}",
    "\u202eevil-{n}lsnoj.exe",
    "ok-{n}.jsonl",
]
IGNORED_PARTS = {"nameless part", "no disposition", "encoded traversal", "base64 part"}
PART_TYPES = ["application/jsonl", "image/png", "text/html", "application/octet-stream", ""]


def _good(n: int) -> dict[str, Any]:
    return request_line(n)


def bad_inputs() -> list[tuple[str, bytes, int | None]]:
    """``(kind, content, the line the first error names)`` of malformed batch inputs."""
    good = json.dumps(_good(1)).encode() + b"\n"
    other = json.dumps(_good(2)).encode() + b"\n"
    wrong_url = json.dumps({**_good(3), "url": "/v1/embeddings"}).encode() + b"\n"
    wrong_method = json.dumps({**_good(3), "method": "GET"}).encode() + b"\n"
    no_messages = json.dumps({**_good(4), "body": {"model": "cord"}}).encode() + b"\n"
    tools = _good(5)
    tools["body"]["tools"] = [{"type": "function"}]
    streaming = _good(6)
    streaming["body"]["stream"] = True
    bad_option = _good(7)
    bad_option["body"]["cord"]["beam_width"] = 0
    no_id = _good(8)
    del no_id["custom_id"]
    return [
        ("bad json", good + b"{not json\n", 2),
        ("truncated json", good + other + b'{"custom_id": "x", "body": {', 3),
        ("huge line", good + b'{"custom_id": "h", "pad": "' + b"x" * (MAX_LINE * 2) + b'"}\n', 2),
        ("huge line at the end", good + b"y" * (MAX_LINE + 10), 2),
        ("not utf-8", good + b"\xff\xfe\xfa\n", 2),
        ("wrong url", good + wrong_url, 2),
        ("wrong method", wrong_method + good, 1),
        ("duplicate custom_id", good + good, 2),
        ("body fails validation", good + no_messages, 2),
        ("unsupported field", json.dumps(tools).encode() + b"\n", 1),
        ("stream", good + json.dumps(streaming).encode(), 2),
        ("bad cord option", good + json.dumps(bad_option).encode() + b"\n", 2),
        ("no custom_id", json.dumps(no_id).encode() + b"\n" + good, 1),
        ("a JSON array", b"[1, 2, 3]\n", 1),
        ("binary", bytes(range(256)) * 4, 1),
        ("deep nesting", good + b"[" * 3000 + b"\n", 2),
        ("empty", b"", None),
        ("blank lines only", b"\n\n   \n", None),
    ]


@pytest.fixture(scope="module")
def proxy(local_teacher: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    root = tmp_path_factory.mktemp("hostile")
    (root / "work").mkdir()
    config = CONFIG.replace("TEACHER", local_teacher).replace("DATA_DIR", str(root / "data"))
    env = {"CORD_TEST_KEY_A": KEY_A, "CORD_TEST_KEY_B": KEY_B}
    process = ProxyProcess(config, root / "work", env=env).start()
    process.root = root  # type: ignore[attr-defined]
    yield process
    process.stop()


def _http(key: str = KEY_A) -> httpx.Client:
    return httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=60)


def _multipart_cases(rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
    """Raw request bodies for POST /v1/files that no well-behaved client sends."""
    b = "b0undary"
    mp = f"multipart/form-data; boundary={b}"

    def part(name: str, value: bytes, extra: str = "") -> bytes:
        head = f'--{b}\r\nContent-Disposition: form-data; name="{name}"{extra}\r\n\r\n'
        return head.encode() + value + b"\r\n"

    good_file = part("file", b"{}\n", '; filename="a.jsonl"')
    purpose = part("purpose", b"batch")
    end = f"--{b}--\r\n".encode()
    cases = [
        ("text/plain", {"content": b"hello", "headers": {"Content-Type": "text/plain"}}),
        (
            "json",
            {"content": b'{"purpose": "batch"}', "headers": {"Content-Type": "application/json"}},
        ),
        ("png", {"content": b"\x89PNG\r\n", "headers": {"Content-Type": "image/png"}}),
        ("no content type", {"content": b"x"}),
        (
            "no boundary",
            {"content": good_file + end, "headers": {"Content-Type": "multipart/form-data"}},
        ),
        (
            "wrong boundary",
            {
                "content": good_file + end,
                "headers": {"Content-Type": "multipart/form-data; boundary=other"},
            },
        ),
        ("truncated", {"content": purpose + good_file[:30], "headers": {"Content-Type": mp}}),
        ("no closing boundary", {"content": purpose + good_file, "headers": {"Content-Type": mp}}),
        ("no file", {"content": purpose + end, "headers": {"Content-Type": mp}}),
        ("no purpose", {"content": good_file + end, "headers": {"Content-Type": mp}}),
        (
            "wrong purpose",
            {
                "content": part("purpose", b"fine-tune") + good_file + end,
                "headers": {"Content-Type": mp},
            },
        ),
        (
            "huge purpose",
            {
                "content": part("purpose", b"p" * 20000) + good_file + end,
                "headers": {"Content-Type": mp},
            },
        ),
        (
            "two files",
            {"content": purpose + good_file + good_file + end, "headers": {"Content-Type": mp}},
        ),
        (
            "nameless part",
            {
                "content": f"--{b}\r\nContent-Disposition: form-data\r\n\r\nx\r\n".encode()
                + purpose
                + good_file
                + end,
                "headers": {"Content-Type": mp},
            },
        ),
        (
            "no disposition",
            {
                "content": f"--{b}\r\n\r\nx\r\n".encode() + purpose + good_file + end,
                "headers": {"Content-Type": mp},
            },
        ),
        (
            "nested multipart",
            {
                "content": part(
                    "file",
                    b"--inner\r\n\r\nx\r\n--inner--",
                    "\r\nContent-Type: multipart/mixed; boundary=inner",
                )
                + purpose
                + end,
                "headers": {"Content-Type": mp},
            },
        ),
        (
            "encoded traversal",
            {
                "content": purpose
                + part("file", b"{}\n", "; filename*=UTF-8''..%2F..%2Fescape-star.jsonl")
                + end,
                "headers": {"Content-Type": mp},
            },
        ),
        (
            "base64 part",
            {
                "content": purpose
                + part(
                    "file",
                    b"!!!notbase64",
                    '; filename="b.jsonl"\r\nContent-Transfer-Encoding: base64',
                )
                + end,
                "headers": {"Content-Type": mp},
            },
        ),
        (
            "over the limit",
            {
                "content": purpose
                + part("file", b"z" * (MAX_UPLOAD + 10), '; filename="big.jsonl"')
                + end,
                "headers": {"Content-Type": mp},
            },
        ),
        (
            "over the limit, chunked",
            {
                "content": iter(
                    [purpose, part("file", b"z" * (MAX_UPLOAD * 2), '; filename="big.jsonl"'), end]
                ),
                "headers": {"Content-Type": mp},
            },
        ),
        ("garbage", {"content": rng.randbytes(3000), "headers": {"Content-Type": mp}}),
    ]
    return cases


def _socket_cases() -> list[bytes]:
    """Requests that break HTTP itself, sent over a bare socket."""
    b = "b0undary"
    body = (
        f'--{b}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n{{}}\r\n'
        f"--{b}--\r\n"
    ).encode()
    head = "POST /v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY_A
    head += f"\r\nContent-Type: multipart/form-data; boundary={b}\r\nConnection: close\r\n"
    return [
        (head + "Content-Length: 99999999\r\n\r\n").encode() + body,
        (head + "Content-Length: 20\r\n\r\n").encode() + body,
        (head + "Content-Length: -5\r\n\r\n").encode() + body,
        (head + "Transfer-Encoding: chunked\r\n\r\nzz\r\n").encode() + body,
    ]


def _send_socket(port: int, raw: bytes) -> int:
    """The status of a raw request; a connection closed without an answer counts as 400."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        try:
            sock.shutdown(socket.SHUT_WR)
            answer = sock.recv(64)
        except OSError:
            return 400
    match = re.match(rb"HTTP/1\.1 (\d{3})", answer)
    return int(match.group(1)) if match else 400


def _send_raw(client: httpx.Client, url: str, case: dict[str, Any]) -> int:
    try:
        return client.post(url, **case).status_code
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
        return 400  # the server closed a connection whose body broke the protocol


def _wait_final(client: httpx.Client, base: str, batch_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        batch: dict[str, Any] = client.get(f"{base}/batches/{batch_id}").json()
        if batch["status"] in ("failed", "completed", "cancelled"):
            return batch
        time.sleep(0.1)
    raise AssertionError(f"{batch_id} did not finish validating")


def test_200_hostile_requests(proxy: ProxyProcess) -> None:
    rng = random.Random(14)
    base, statuses = proxy.base_url, []
    cases = bad_inputs()
    batches: list[tuple[str, str, int | None]] = []
    tag = uuid.uuid4().hex[:8]
    with _http() as client:
        for n in range(120):
            kind, content, line = cases[n % len(cases)]
            name = NAMES[n % len(NAMES)].replace("{n}", f"{tag}-{n}")
            kind_of_part = PART_TYPES[n % len(PART_TYPES)] or None
            files = (
                {"file": (name, content, kind_of_part)}
                if kind_of_part
                else {"file": (name, content)}
            )
            answer = client.post(f"{base}/files", files=files, data={"purpose": "batch"})
            statuses.append(answer.status_code)
            assert answer.status_code == 200, (kind, name, answer.text)
            stored = answer.json()
            assert "/" not in stored["filename"] and "\\" not in stored["filename"]
            assert stored["filename"] not in ("", ".", "..") and len(stored["filename"]) <= 255
            if n < len(cases) * 3:
                created = client.post(
                    f"{base}/batches",
                    json={
                        "input_file_id": stored["id"],
                        "endpoint": "/v1/chat/completions",
                        "completion_window": "24h",
                    },
                )
                statuses.append(created.status_code)
                assert created.status_code == 200, created.text
                batches.append((kind, created.json()["id"], line))
        for name, case in _multipart_cases(rng) + _multipart_cases(rng):
            status = _send_raw(client, f"{base}/files", case)
            statuses.append(status)
            assert status in ((200, 400) if name in IGNORED_PARTS else (400, 413)), name
        for raw in _socket_cases():
            statuses.append(_send_socket(proxy.port, raw))
            assert statuses[-1] in (400, 413)
        for body in _hostile_batch_bodies():
            statuses.append(
                client.post(
                    f"{base}/batches", content=body, headers={"Content-Type": "application/json"}
                ).status_code
            )
            assert statuses[-1] in (400, 413), body[:80]
        for path in (
            "files/..%2F..%2Fetc%2Fpasswd/content",
            "files/../../etc/passwd",
            "batches/%00",
            "files/file-" + "0" * 24,
            "batches/batch_x/cancel",
        ):
            statuses.append(client.get(f"{base}/{path}").status_code)
            statuses.append(client.delete(f"{base}/{path}").status_code)
        for kind, batch_id, line in batches:
            batch = _wait_final(client, base, batch_id)
            assert batch["status"] == "failed", (kind, batch)
            errors = batch["errors"]["data"]
            assert errors and errors[0]["line"] == line, (kind, errors)
            if line is not None:
                assert f"line {line}" in errors[0]["message"], (kind, errors)
        assert client.get(f"http://127.0.0.1:{proxy.port}/health").status_code == 200
    assert len(statuses) >= 200
    assert [s for s in statuses if s >= 500] == []
    _nothing_outside(proxy.root / "data", proxy.root, tag)  # type: ignore[attr-defined]


def _hostile_batch_bodies() -> list[bytes]:
    base = {"endpoint": "/v1/chat/completions", "completion_window": "24h"}
    return [
        b"{not json",
        b"[]",
        b"\xff\xfe",
        json.dumps({**base, "input_file_id": "../../etc/passwd"}).encode(),
        json.dumps({**base, "input_file_id": "file-" + "0" * 24}).encode(),
        json.dumps({**base, "input_file_id": "x", "endpoint": "/v1/embeddings"}).encode(),
        json.dumps({**base, "input_file_id": "x", "completion_window": "1h"}).encode(),
        json.dumps({**base, "input_file_id": "x", "metadata": {"k": "v" * 5000}}).encode(),
        json.dumps({**base, "input_file_id": "x", "surprise": 1}).encode(),
        b"{" + b'"a":' * 50000 + b"1}",
        b'{"input_file_id": "' + b"x" * 100000 + b'"}',
    ]


def _nothing_outside(data: Path, root: Path, tag: str) -> None:
    """Everything under the test's root is in the data directory or the proxy's workdir, and
    every stored file is named by its id."""
    for path in root.rglob("*"):
        assert path.is_relative_to(data) or path.is_relative_to(root / "work") or path == data, path
    names = {p.name for p in (data / "files").iterdir()}
    assert all(re.fullmatch(r"file-[0-9a-f]{24}", n) for n in names), names
    assert not list(Path("/tmp").glob(f"cord-escape-{tag}*"))
    assert not list(root.parent.glob(f"escape-{tag}*")) and not list(root.glob("escape*"))


def test_keys_mapped_to_owners_see_only_their_own(proxy: ProxyProcess) -> None:
    base = proxy.base_url
    with _http(KEY_A) as alice, _http(KEY_B) as bob, httpx.Client() as nobody:
        own = alice.post(
            f"{base}/files", files={"file": ("a.jsonl", b"{}\n")}, data={"purpose": "batch"}
        ).json()
        assert alice.get(f"{base}/files/{own['id']}").status_code == 200
        assert bob.get(f"{base}/files/{own['id']}").status_code == 404
        assert bob.get(f"{base}/files/{own['id']}/content").status_code == 404
        assert bob.delete(f"{base}/files/{own['id']}").status_code == 404
        assert own["id"] not in [f["id"] for f in bob.get(f"{base}/files").json()["data"]]
        assert own["id"] in [f["id"] for f in alice.get(f"{base}/files").json()["data"]]
        body = {
            "input_file_id": own["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        }
        assert bob.post(f"{base}/batches", json=body).status_code == 400
        batch = alice.post(f"{base}/batches", json=body).json()
        assert bob.get(f"{base}/batches/{batch['id']}").status_code == 404
        assert bob.post(f"{base}/batches/{batch['id']}/cancel").status_code == 404
        assert batch["id"] not in [b["id"] for b in bob.get(f"{base}/batches").json()["data"]]
        assert nobody.get(f"{base}/files").status_code == 401
        assert nobody.post(f"{base}/batches", json=body).status_code == 401
