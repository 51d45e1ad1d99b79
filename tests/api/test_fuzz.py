"""5,000 generated hostile requests against the real proxy process give no 5xx, no hang and no
error outside the OpenAI shape, and the proxy answers a normal request afterwards; its
/metrics count, status by status, what the clients received.

The proxy points at a FAKE teacher (fast, scripted) so valid requests decode in milliseconds;
the cases come from `fuzz_cases`, seeded, sent as raw bytes over sockets.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import API_KEY
from tests.api.fuzz_cases import Case, cases
from tests.api.rawhttp import RawResponse, parse
from tests.support.fake_teacher_http import CountingFakeTeacher
from tests.support.proxy_process import ProxyProcess

COUNT = 5000
CONCURRENCY = 16
CONFIG = """
[server]
host = "127.0.0.1"
port = PORT
api_keys = ["env:CORD_TEST_KEY"]
max_body_bytes = 65536
header_timeout = 2.0
body_timeout = 2.0
request_timeout = 60

[[teachers]]
name = "fast"
base_url = "FAKE_URL"
model = "fast"

[[teachers]]
name = "fast-b"
base_url = "FAKE_URL"
model = "fast"
temperature = 0.9

[[ensembles]]
name = "fast"
teachers = ["fast", "fast-b"]
[ensembles.defaults]
beam_width = 1
max_steps = 2
"""


@pytest.fixture(scope="module")
def fuzz_proxy(
    fake_teacher: CountingFakeTeacher, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyProcess]:
    config = CONFIG.replace("FAKE_URL", f"http://127.0.0.1:{fake_teacher.port}/v1")
    workdir: Path = tmp_path_factory.mktemp("fuzz-proxy")
    proxy = ProxyProcess(config, workdir, env={"CORD_TEST_KEY": API_KEY}).start()
    yield proxy
    proxy.stop()


async def send(port: int, case: Case, timeout: float = 30.0) -> RawResponse | None:
    """The proxy's answer to one case; None when it did not close within `timeout`."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return RawResponse(None, {}, b"connect failed", closed=True)
    try:
        async with asyncio.timeout(timeout):
            try:
                writer.write(case.data)
                await writer.drain()
            except ConnectionError:
                pass  # the proxy may refuse and close before reading everything
            raw = await read_response(reader)
        return parse(raw, closed=True)
    except ConnectionError:
        return RawResponse(None, {}, b"", closed=True)
    except TimeoutError:
        return None
    finally:
        writer.close()


async def read_response(reader: asyncio.StreamReader) -> bytes:
    """One whole response: to its Content-Length if it gives one (a kept-alive connection
    stays open after it), else to the close."""
    raw = b""
    while True:
        head, found, rest = raw.partition(b"\r\n\r\n")
        if found and not head.startswith(b"HTTP/1.1 100 "):
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if length is not None:
                try:
                    return raw + await reader.readexactly(int(length.group(1)) - len(rest))
                except asyncio.IncompleteReadError as cut:
                    return raw + cut.partial
            return raw + await reader.read()
        if found:
            raw = rest
            continue
        chunk = await reader.read(65536)
        if not chunk:
            return raw
        raw += chunk


def problem(case: Case, response: RawResponse | None) -> str | None:
    """What is wrong with the answer to `case`, or None."""
    if response is None:
        return "no answer and no close (a hang)"
    if response.status is None:
        return None if not response.body else f"not HTTP: {response.body[:80]!r}"
    if response.status >= 500:
        return f"status {response.status}: {response.body[:300]!r}"
    if case.expect_ok and response.status != 200:
        return f"a valid request got {response.status}: {response.body[:300]!r}"
    if b'"server_error"' in response.body:
        return f"a server_error inside a {response.status}: {response.body[-300:]!r}"
    if response.status >= 400:
        return _not_openai_error(response)
    return None


def _not_openai_error(response: RawResponse) -> str | None:
    if not response.headers.get("content-type", "").startswith("application/json"):
        return f"{response.status} as {response.headers.get('content-type')}"
    if response.headers.get("transfer-encoding") == "chunked":
        return None  # a HEAD or streamed answer; its body is not one JSON document
    try:
        error = json.loads(response.body)["error"]
    except (ValueError, KeyError, TypeError):
        return f"{response.status} body is not an OpenAI error: {response.body[:200]!r}"
    if set(error) != {"message", "type", "param", "code"}:
        return f"{response.status} error has keys {sorted(error)}"
    return None


async def run_all(port: int) -> tuple[Counter[str], list[str]]:
    statuses: Counter[str] = Counter()
    seconds: Counter[str] = Counter()
    problems: list[str] = []
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one(case: Case) -> None:
        async with slots:
            started = time.monotonic()
            response = await send(port, case)
            seconds[case.kind] += time.monotonic() - started
        status = "hang" if response is None else str(response.status)
        statuses[f"{case.kind}:{status}"] += 1
        wrong = problem(case, response)
        if wrong is not None:
            problems.append(f"[{case.kind}] {wrong} <- {case.data[:160]!r}")

    await asyncio.gather(*(one(case) for case in cases(COUNT, API_KEY.encode())))
    print("\nfuzz seconds by kind:", {k: round(v, 1) for k, v in seconds.items()})
    return statuses, problems


@dataclass
class FuzzRun:
    statuses: Counter[str]  # "kind:status" as the clients received them
    problems: list[str]
    elapsed: float
    served: Counter[str]  # status -> requests, as the proxy's /metrics counted them


SERVED = re.compile(r'^cord_requests_total\{route="[^"]*",status="(\d+)"\} (\d+)$', re.MULTILINE)


async def served_counts(proxy: ProxyProcess) -> Counter[str]:
    """The proxy's ``cord_requests_total`` summed over routes, by status."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(timeout=30) as client:
        text = (
            await client.get(proxy.base_url.removesuffix("/v1") + "/metrics", headers=headers)
        ).text
    counts: Counter[str] = Counter()
    for status, count in SERVED.findall(text):
        counts[status] += int(count)
    return counts


@pytest.fixture(scope="module")
async def fuzz_run(fuzz_proxy: ProxyProcess) -> FuzzRun:
    """The fuzz, once for the module, with /metrics read just before and just after it."""
    before = await served_counts(fuzz_proxy)
    started = time.monotonic()
    statuses, problems = await run_all(fuzz_proxy.port)
    elapsed = time.monotonic() - started
    after = await served_counts(fuzz_proxy)
    after["200"] -= 1  # the scrape before the fuzz (a scrape does not count itself)
    after.subtract(before)
    return FuzzRun(statuses, problems, elapsed, +after)


async def test_5000_hostile_requests_give_no_5xx_and_the_proxy_still_answers(
    fuzz_proxy: ProxyProcess, fuzz_run: FuzzRun
) -> None:
    statuses, problems = fuzz_run.statuses, fuzz_run.problems
    print(f"\nfuzz: {COUNT} cases in {fuzz_run.elapsed:.1f} s: {dict(sorted(statuses.items()))}")
    assert sum(statuses.values()) == COUNT
    assert not problems, f"{len(problems)} problems, first: " + "\n".join(problems[:10])
    assert sum(n for k, n in statuses.items() if k.startswith("valid:200")) > 100
    assert sum(n for k, n in statuses.items() if k.endswith(":400")) > 2000

    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.post(
            f"{fuzz_proxy.base_url}/chat/completions",
            json={"model": "fast", "messages": [{"role": "user", "content": "2+3?"}]},
            headers=headers,
        )
        metrics = await client.get(
            fuzz_proxy.base_url.removesuffix("/v1") + "/metrics", headers=headers
        )
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"]
    assert re.search(r"^cord_unhandled_errors_total 0$", metrics.text, re.MULTILINE)
    assert 'status="5' not in metrics.text
    assert "Traceback" not in fuzz_proxy.log()


def test_metrics_count_the_status_each_fuzz_client_received(fuzz_run: FuzzRun) -> None:
    """Client side and server side agree, status by status: an oversized chunked body or a
    gzip bomb is a 413 in /metrics as it is for its client, never a 500."""
    received: Counter[str] = Counter()
    for key, count in fuzz_run.statuses.items():
        received[key.rsplit(":", 1)[1]] += count
    print(f"\nreceived {dict(sorted(received.items()))}")
    print(f"served   {dict(sorted(fuzz_run.served.items()))}")
    assert received.get("hang", 0) == 0 and received.get("None", 0) == 0
    assert fuzz_run.served == received
    assert received["413"] > 0 and received["400"] > 2000
