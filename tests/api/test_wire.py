"""Regressions of issue 11 on the wire, through the real proxy process and its FAKE teacher:
text that is not Unicode, headers that are not UTF-8, the Bearer scheme, aiohttp's own
errors, Retry-After, 499 and failed streams in the metrics, the readiness cache, /metrics."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator

import httpx
import pytest

from cord_proxy.runtime import READY_CACHE_S
from tests.api.conftest import API_KEY, whole_and_streamed
from tests.api.rawhttp import exchange, request_bytes
from tests.support.fake_teacher_http import CountingFakeTeacher
from tests.support.proxy_process import ProxyProcess

AUTH = {"Authorization": f"Bearer {API_KEY}"}
CHAT = "/v1/chat/completions"
QUESTION = '[{"role": "user", "content": "What is 2 + 3?"}]'
ERROR_KEYS = {"message", "type", "param", "code"}
REQUEST_ID = re.compile(r"req_[0-9a-f]{32}")


def raw_post(proxy: ProxyProcess, body: str) -> httpx.Response:
    """POST a body written by hand, so JSON escapes such as \\ud800 reach the proxy as sent."""
    return httpx.post(
        proxy.base_url + "/chat/completions",
        content=body.encode("ascii"),
        headers={**AUTH, "Content-Type": "application/json"},
        timeout=60,
    )


def metric(proxy: ProxyProcess, pattern: str) -> float:
    root = proxy.base_url.removesuffix("/v1")
    text = httpx.get(f"{root}/metrics", headers=AUTH).text
    found = re.search(re.escape(pattern) + r" (\S+)", text)
    return float(found.group(1)) if found else 0.0


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            '{"model": "fast", "messages": [{"role": "user", "content": "2+3 \\ud800?"}]}',
            "messages.0.content",
        ),
        ('{"model": "fast", "messages": ' + QUESTION + ', "stop": ["\\udfff"]}', "stop.0"),
        ('{"model": "fast", "messages": ' + QUESTION + ', "stop": "a\\ud800"}', "stop"),
        (
            '{"model": "fast", "messages": '
            + QUESTION
            + ', "cord": {"segmentation": "markers", "markers": ["Wait", "\\ud83d"]}}',
            "cord.markers.1",
        ),
        (
            '{"model": "fast", "messages": '
            + QUESTION
            + ', "cord": {"reference_answer": "\\ud800"}}',
            "cord.reference_answer",
        ),
        (
            '{"model": "fast", "messages": [{"role": "user", "content": '
            '[{"type": "text", "text": "\\udc00"}]}]}',
            "messages.0.content.0.text",
        ),
        (
            '{"model": "fast", "messages": ' + QUESTION + ', "metadata": {"k\\ud800": "v"}}',
            "metadata",
        ),
        ('{"model": "\\ud800", "messages": ' + QUESTION + "}", "model"),
        ('{"model": "fast", "messages": ' + QUESTION + ', "user": "\\ud800"}', "user"),
    ],
)
def test_a_lone_surrogate_anywhere_is_a_400_naming_it_before_any_teacher_call(
    fake_proxy: ProxyProcess, fake_teacher: CountingFakeTeacher, body: str, param: str
) -> None:
    started = fake_teacher.started
    response = raw_post(fake_proxy, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == ERROR_KEYS
    assert error["param"] == param
    assert "surrogate" in error["message"]
    assert fake_teacher.started == started


def test_a_header_that_is_not_utf8_is_a_401_with_no_traceback_or_header_in_the_log(
    fake_proxy: ProxyProcess,
) -> None:
    secret_bytes = b"Bearer \xff\xfe-marker-Zq7"
    data = request_bytes(CHAT, b"{}", headers={"Authorization": secret_bytes})
    response = exchange(fake_proxy.port, data)
    assert response.status == 401, response
    assert set(response.json()["error"]) == ERROR_KEYS
    other = request_bytes(
        CHAT,
        b"{}",
        headers={**{"Authorization": AUTH["Authorization"].encode()}, "X-Odd": b"\xc3\x28\xff"},
    )
    assert exchange(fake_proxy.port, other).status == 400
    log = fake_proxy.log()
    assert "Traceback" not in log
    assert "marker-Zq7" not in log


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer", "bEaReR"])
def test_the_bearer_scheme_is_case_insensitive(fake_proxy: ProxyProcess, scheme: str) -> None:
    response = httpx.get(
        fake_proxy.base_url + "/models", headers={"Authorization": f"{scheme} {API_KEY}"}
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("header", [API_KEY, f"Basic {API_KEY}", f"Token {API_KEY}", "Bearer"])
def test_a_key_without_the_bearer_scheme_is_refused(fake_proxy: ProxyProcess, header: str) -> None:
    response = httpx.get(fake_proxy.base_url + "/models", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    "data",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Name: v\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 20000 + b"\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
        b"\r\n\r\nzz\r\n",
        b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,
    ],
)
def test_aiohttp_own_http_errors_are_openai_errors(fake_proxy: ProxyProcess, data: bytes) -> None:
    response = exchange(fake_proxy.port, data)
    assert response.status is not None and 400 <= response.status < 500, response
    assert response.headers["content-type"].startswith("application/json")
    assert set(response.json()["error"]) == ERROR_KEYS
    assert REQUEST_ID.fullmatch(response.headers["x-request-id"]), response.headers


def test_a_wrong_method_is_an_openai_error_with_allow(fake_proxy: ProxyProcess) -> None:
    response = httpx.get(fake_proxy.base_url + "/chat/completions", headers=AUTH)
    assert response.status_code == 405
    assert set(response.json()["error"]) == ERROR_KEYS
    assert "POST" in response.headers["allow"]


async def test_a_429_says_when_to_retry(
    fake_proxy: ProxyProcess, fake_teacher: CountingFakeTeacher
) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        slow = asyncio.ensure_future(
            client.post(
                fake_proxy.base_url + "/chat/completions",
                json={"model": "slow", "messages": [{"role": "user", "content": "x"}]},
                headers=AUTH,
            )
        )
        await _until(lambda: fake_teacher.in_flight > 0)
        response = await client.post(
            fake_proxy.base_url + "/chat/completions",
            json={"model": "fast", "messages": [{"role": "user", "content": "x"}]},
            headers=AUTH,
        )
        assert response.status_code == 429
        assert int(response.headers["retry-after"]) >= 1
        slow.cancel()
        await asyncio.gather(slow, return_exceptions=True)
    await _until(lambda: fake_teacher.in_flight == 0)


async def test_a_client_disconnect_is_counted_as_499(
    fake_proxy: ProxyProcess, fake_teacher: CountingFakeTeacher
) -> None:
    label = f'cord_requests_total{{route="{CHAT}",status="499"}}'
    before = metric(fake_proxy, label)
    async with httpx.AsyncClient(timeout=60) as client:
        request = asyncio.ensure_future(
            client.post(
                fake_proxy.base_url + "/chat/completions",
                json={"model": "slow", "messages": [{"role": "user", "content": "x"}]},
                headers=AUTH,
            )
        )
        await _until(lambda: fake_teacher.in_flight > 0)
        request.cancel()
        await asyncio.gather(request, return_exceptions=True)
    await _until(lambda: fake_teacher.in_flight == 0)
    await _until(lambda: metric(fake_proxy, label) == before + 1)
    assert metric(fake_proxy, f'cord_requests_total{{route="{CHAT}",status="500"}}') == 0


def test_a_failed_stream_is_counted_as_the_200_it_sent_and_as_a_stream_error(
    fake_proxy: ProxyProcess,
) -> None:
    """/metrics counts the status the client received (a stream's 200); the error event that
    ended the stream is counted apart, by its status."""
    failed = f'cord_requests_total{{route="{CHAT}",status="502"}}'
    ok = f'cord_requests_total{{route="{CHAT}",status="200"}}'
    stream_error = f'cord_stream_errors_total{{route="{CHAT}",status="502"}}'
    before = {k: metric(fake_proxy, k) for k in (failed, ok, stream_error)}
    body = {"model": "broken", "messages": [{"role": "user", "content": "x"}], "stream": True}
    with httpx.stream(
        "POST", fake_proxy.base_url + "/chat/completions", json=body, headers=AUTH, timeout=60
    ) as response:
        assert response.status_code == 200
        text = response.read().decode()
    assert '"error"' in text and "data: [DONE]" in text
    assert metric(fake_proxy, ok) == before[ok] + 1
    assert metric(fake_proxy, stream_error) == before[stream_error] + 1
    assert metric(fake_proxy, failed) == before[failed]


def test_an_oversized_chunked_body_is_counted_as_the_413_its_client_got(
    fake_proxy: ProxyProcess,
) -> None:
    """A body with no Content-Length that grows past ``max_body_bytes`` is refused while it is
    read; the refusal is a 413 for the client and in /metrics, not a 500 (issue 20)."""
    too_large = f'cord_requests_total{{route="{CHAT}",status="413"}}'
    server_error = f'cord_requests_total{{route="{CHAT}",status="500"}}'
    before = metric(fake_proxy, too_large)

    def chunks() -> Iterator[bytes]:
        yield b'{"model": "fast", "messages": [{"role": "user", "content": "'
        for _ in range(20):
            yield b"x" * 8192
        yield b'"}]}'

    response = httpx.post(
        fake_proxy.base_url + "/chat/completions", content=chunks(), headers=AUTH, timeout=60
    )
    assert response.status_code == 413
    assert metric(fake_proxy, too_large) == before + 1
    assert metric(fake_proxy, server_error) == 0


def test_the_log_lines_of_a_request_name_the_id_its_client_got(fake_proxy: ProxyProcess) -> None:
    """The proxy's own log (JSON lines on stderr): the ``request`` line and ``decode finished``
    carry the ``x-request-id`` that the client received, whole or streamed."""
    body = {"model": "fast", "messages": [{"role": "user", "content": "x"}]}
    whole, stream = whole_and_streamed(fake_proxy, body, AUTH)
    assert whole.status_code == stream.status_code == 200
    for response in (whole, stream):
        request_id = response.headers["x-request-id"]
        assert REQUEST_ID.fullmatch(request_id)
        lines = [json.loads(line) for line in fake_proxy.log().splitlines() if request_id in line]
        events = [line["event"] for line in lines]
        assert "request" in events and "decode finished" in events, lines
        assert all(line["request_id"] == request_id for line in lines)
    finished = [
        json.loads(line) for line in fake_proxy.log().splitlines() if "decode finished" in line
    ]
    assert whole.json()["id"] in {line["completion_id"] for line in finished}


def test_metrics_need_the_key(fake_proxy: ProxyProcess) -> None:
    root = fake_proxy.base_url.removesuffix("/v1")
    assert httpx.get(f"{root}/metrics").status_code == 401
    assert httpx.get(f"{root}/metrics", headers={"Authorization": "Bearer no"}).status_code == 401
    assert httpx.get(f"{root}/metrics", headers=AUTH).status_code == 200
    assert httpx.get(f"{root}/health").status_code == 200


def _cache_window() -> int:
    return int(time.monotonic() // READY_CACHE_S)


def test_readiness_is_cached_for_a_few_seconds(
    fake_proxy: ProxyProcess, fake_teacher: CountingFakeTeacher
) -> None:
    root = fake_proxy.base_url.removesuffix("/v1")
    # The server keys its cache by time.monotonic() // READY_CACHE_S, the same clock as here:
    # begin just after a window opens, whatever checked readiness before.
    opened = _cache_window()
    while _cache_window() == opened:
        time.sleep(0.02)
    stale = fake_teacher.models_calls
    first = httpx.get(f"{root}/health/ready")  # a fresh check, then kept for the window
    calls = fake_teacher.models_calls
    assert calls > stale, "readiness was not checked in a new window"
    window_ends = (opened + 2) * READY_CACHE_S - 0.5  # a loaded machine may reach its end
    answered = 0
    while answered < 20 and time.monotonic() < window_ends:
        again = httpx.get(f"{root}/health/ready")
        assert again.json() == first.json()
        answered += 1
    assert answered >= 3, f"only {answered} requests inside the cache window"
    assert fake_teacher.models_calls == calls


async def _until(condition: object, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)
