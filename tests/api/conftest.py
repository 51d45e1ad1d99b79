from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fake_teacher_http import CountingFakeTeacher
from tests.support.proxy_process import ProxyProcess

API_KEY = "sk-test-cord-proxy"

FAKE_CONFIG = """
[server]
host = "127.0.0.1"
port = PORT
api_keys = ["env:CORD_TEST_KEY"]
max_concurrent_requests = 1
max_body_bytes = 65536
detach_grace_s = 0  # a client that leaves cancels its decode at once (tests count on it)

[[teachers]]
name = "fast"
base_url = "FAKE_URL"
model = "fast"
timeout = 60

[[teachers]]
name = "slow"
base_url = "FAKE_URL"
model = "slow"
timeout = 60

[[teachers]]
name = "broken"
base_url = "FAKE_URL"
model = "broken"
timeout = 60
max_retries = 0

[[ensembles]]
name = "broken"
teachers = ["broken"]

[[ensembles]]
name = "fast"
teachers = ["fast"]
[ensembles.defaults]
beam_width = 2
max_steps = 4

[[ensembles]]
name = "slow"
teachers = ["slow"]
"""


@pytest.fixture(scope="session")
def fake_teacher() -> Iterator[CountingFakeTeacher]:
    fake = CountingFakeTeacher()
    fake.start_in_thread()
    yield fake
    fake.stop_thread()


@pytest.fixture(scope="session")
def fake_proxy(
    fake_teacher: CountingFakeTeacher, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyProcess]:
    config = FAKE_CONFIG.replace("FAKE_URL", f"http://127.0.0.1:{fake_teacher.port}/v1")
    workdir: Path = tmp_path_factory.mktemp("fake-proxy")
    proxy = ProxyProcess(config, workdir, env={"CORD_TEST_KEY": API_KEY}).start()
    yield proxy
    proxy.stop()


def whole_and_streamed(
    proxy: ProxyProcess, body: dict[str, Any], headers: dict[str, str]
) -> tuple[httpx.Response, httpx.Response]:
    """`body` posted to the chat route twice: answered whole, then streamed (read to its end)."""
    url = proxy.base_url + "/chat/completions"
    whole = httpx.post(url, json=body, headers=headers, timeout=60)
    with httpx.stream(
        "POST", url, json={**body, "stream": True}, headers=headers, timeout=60
    ) as stream:
        stream.read()
    return whole, stream
