"""No secret leaves the proxy: a FAKE teacher echoes its Authorization header, its key and its
URL in every error body; with canary values for the client key and the teacher key, failing
requests (502, a degraded 200, failed and degraded streams) run through the real proxy
process, and neither canary, nor the teacher's address, appears in any response body, log
line, /metrics or dataset record."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.echo_teacher import EchoAuthFakeTeacher
from tests.support.fake_teacher_http import CountingFakeTeacher
from tests.support.proxy_process import ProxyProcess

CLIENT_CANARY = "cLiEnT-cAnArY-7Hq2"
TEACHER_CANARY = "tEaChEr-cAnArY-9Xw4"
CONFIG = """
[server]
host = "127.0.0.1"
port = PORT
api_keys = ["env:CANARY_CLIENT_KEY"]

[[teachers]]
name = "leaky"
base_url = "ECHO_URL"
model = "leaky"
api_key = "env:CANARY_TEACHER_KEY"
max_retries = 0

[[teachers]]
name = "fast"
base_url = "FAKE_URL"
model = "fast"

[[ensembles]]
name = "leaky"
teachers = ["leaky"]
scorers = ["fast"]

[[ensembles]]
name = "mixed"
teachers = ["leaky", "fast"]
scorers = ["fast"]
[ensembles.defaults]
beam_width = 1
max_steps = 2

[dataset]
path = "DATASET"
"""


@pytest.fixture(scope="module")
def echo_teacher() -> Iterator[EchoAuthFakeTeacher]:
    echo = EchoAuthFakeTeacher()
    echo.start_in_thread()
    yield echo
    echo.stop_thread()


@pytest.fixture(scope="module")
def leaky_proxy(
    fake_teacher: CountingFakeTeacher,
    echo_teacher: EchoAuthFakeTeacher,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ProxyProcess]:
    workdir: Path = tmp_path_factory.mktemp("leaky-proxy")
    config = (
        CONFIG.replace("ECHO_URL", f"http://127.0.0.1:{echo_teacher.port}/v1")
        .replace("FAKE_URL", f"http://127.0.0.1:{fake_teacher.port}/v1")
        .replace("DATASET", str(workdir / "traces.jsonl"))
    )
    env = {"CANARY_CLIENT_KEY": CLIENT_CANARY, "CANARY_TEACHER_KEY": TEACHER_CANARY}
    proxy = ProxyProcess(config, workdir, env=env).start()
    yield proxy
    proxy.stop()


def test_no_canary_leaves_the_proxy(
    leaky_proxy: ProxyProcess, echo_teacher: EchoAuthFakeTeacher, tmp_path: Path
) -> None:
    url = leaky_proxy.base_url + "/chat/completions"
    good = {"Authorization": f"Bearer {CLIENT_CANARY}"}
    bodies: list[str] = []
    statuses: list[int] = []
    with httpx.Client(timeout=60) as client:
        for model in ("leaky", "mixed"):
            for stream in (False, True):
                payload = {
                    "model": model,
                    "messages": [{"role": "user", "content": "2+3?"}],
                    "stream": stream,
                }
                response = client.post(url, json=payload, headers=good)
                statuses.append(response.status_code)
                bodies.append(response.text)
        for header in (f"bearer {CLIENT_CANARY}x", f"Basic {CLIENT_CANARY}", CLIENT_CANARY):
            response = client.get(
                leaky_proxy.base_url + "/models", headers={"Authorization": header}
            )
            statuses.append(response.status_code)
            bodies.append(response.text)
        metrics = client.get(leaky_proxy.base_url.removesuffix("/v1") + "/metrics", headers=good)
        bodies.append(metrics.text)

    assert echo_teacher.calls > 0
    dataset = (leaky_proxy.config_path.parent / "traces.jsonl").read_text(encoding="utf-8")
    places = {"responses": "\n".join(bodies), "log": leaky_proxy.log(), "dataset": dataset}
    address = f"127.0.0.1:{echo_teacher.port}"
    for where, text in places.items():
        for canary in (CLIENT_CANARY, TEACHER_CANARY, address):
            assert canary not in text, f"{canary} leaked into the {where}"
    assert statuses[:4] == [502, 200, 200, 200] and statuses[4:] == [401, 401, 401]
    assert '"error"' in bodies[1], "the failed stream sent no error event"
    assert "leaky" in bodies[0], "the client error names the teacher by its config name"
    assert '"teacher": "leaky"' in dataset, "the degraded decode recorded its teacher failures"
