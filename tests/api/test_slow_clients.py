"""Half-sent requests are closed: raw sockets stall mid-headers and mid-body against the real
proxy process, whose [server] header_timeout and body_timeout are set to 1 s here."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import API_KEY
from tests.api.rawhttp import read_all
from tests.support.fake_teacher_http import CountingFakeTeacher
from tests.support.proxy_process import ProxyProcess

CONFIG = """
[server]
host = "127.0.0.1"
port = PORT
api_keys = ["env:CORD_TEST_KEY"]
header_timeout = 1.0
body_timeout = 1.0

[[teachers]]
name = "fast"
base_url = "FAKE_URL"
model = "fast"

[[ensembles]]
name = "fast"
teachers = ["fast"]
[ensembles.defaults]
beam_width = 1
max_steps = 2
"""
HEAD = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Authorization: Bearer " + API_KEY.encode() + b"\r\nContent-Type: application/json\r\n"
)


@pytest.fixture(scope="module")
def strict_proxy(
    fake_teacher: CountingFakeTeacher, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyProcess]:
    config = CONFIG.replace("FAKE_URL", f"http://127.0.0.1:{fake_teacher.port}/v1")
    workdir: Path = tmp_path_factory.mktemp("strict-proxy")
    proxy = ProxyProcess(config, workdir, env={"CORD_TEST_KEY": API_KEY}).start()
    yield proxy
    proxy.stop()


def stalled(proxy: ProxyProcess, sent: bytes) -> tuple[float, socket.socket]:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    sock.sendall(sent)
    return time.monotonic(), sock


@pytest.mark.parametrize(
    "sent",
    [b"", b"POST /v1/chat/comp", HEAD, HEAD + b"X-Slow: 1\r\n"],
    ids=["nothing", "mid-request-line", "mid-headers", "one-more-header"],
)
def test_a_request_stalled_before_its_headers_end_is_closed(
    strict_proxy: ProxyProcess, sent: bytes
) -> None:
    started, sock = stalled(strict_proxy, sent)
    with sock:
        response = read_all(sock, timeout=10)
    waited = time.monotonic() - started
    assert response.closed, "the proxy kept a half-sent request open"
    assert waited < 5, waited
    assert response.status == 408
    assert response.json()["error"]["code"] == "header_timeout"
    assert response.headers["x-request-id"].startswith("req_")


def test_a_request_stalled_mid_body_gets_a_408_and_is_closed(strict_proxy: ProxyProcess) -> None:
    body = b'{"model": "fast", "messages": [{"role": "user", "content": "x"}]}'
    head = HEAD + f"Content-Length: {len(body)}\r\n\r\n".encode()
    started, sock = stalled(strict_proxy, head + body[:20])
    with sock:
        response = read_all(sock, timeout=15)
    waited = time.monotonic() - started
    assert response.status == 408, response
    assert response.json()["error"]["code"] == "body_timeout"
    assert response.headers["x-request-id"].startswith("req_")
    assert response.closed and waited < 8, waited


def test_a_trickled_header_is_closed_at_its_deadline(strict_proxy: ProxyProcess) -> None:
    started, sock = stalled(strict_proxy, b"GET /health HTTP/1.1\r\n")
    with sock:
        closed = False
        for index in range(40):
            try:
                sock.sendall(f"X-Drip-{index}: 1\r\n".encode())
            except OSError:
                closed = True
                break
            time.sleep(0.1)
            if read_all(sock, timeout=0.01).closed:
                closed = True
                break
    assert closed and time.monotonic() - started < 4


def test_a_normal_request_still_works_and_keep_alive_survives_the_header_deadline(
    strict_proxy: ProxyProcess,
) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(timeout=30) as client:
        assert client.get(f"{strict_proxy.base_url}/models", headers=headers).status_code == 200
        time.sleep(1.5)  # idle on a kept-alive connection longer than header_timeout
        answer = client.post(
            f"{strict_proxy.base_url}/chat/completions",
            json={"model": "fast", "messages": [{"role": "user", "content": "2+3?"}]},
            headers=headers,
        )
    assert answer.status_code == 200, answer.text
