from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.responses import Response

from tests.batches.teacher_tap import TeacherTap
from tests.support.proxy_process import ProxyProcess

KEY_A, KEY_B = "sk-responses-a", "sk-responses-b"
ENV = {"CORD_TEST_RESPONSES_KEY_A": KEY_A, "CORD_TEST_RESPONSES_KEY_B": KEY_B}
# a tiny decode; two proposals a step keep a 270M model from proposing nothing
TINY: dict[str, Any] = {"max_steps": 1, "beam_width": 1, "max_step_tokens": 16, "answer_budget": 8}
# a longer one, to find it running: several steps
LONGER: dict[str, Any] = {**TINY, "max_steps": 6, "max_step_tokens": 24}

CONFIG = """
[server]
host = "127.0.0.1"
port = PORT
api_keys = ["env:CORD_TEST_RESPONSES_KEY_A", "env:CORD_TEST_RESPONSES_KEY_B"]

[[teachers]]
name = "t"
base_url = "TEACHER"
model = "gemma3-270m"
temperature = 0.6
timeout = 300

[[ensembles]]
name = "cord"
teachers = ["t"]
[ensembles.defaults]
beam_width = 1
proposals_per_teacher = 4  # the 270M model sometimes proposes an empty step
max_steps = 1
max_step_tokens = 16
answer_budget = 8

[batches]
data_dir = "DATA_DIR"
concurrency = 2
owners = { "env:CORD_TEST_RESPONSES_KEY_A" = "alice", "env:CORD_TEST_RESPONSES_KEY_B" = "bob" }
"""


def responses_config(teacher: str, data_dir: Path) -> str:
    return CONFIG.replace("TEACHER", teacher).replace("DATA_DIR", str(data_dir))


def start_proxy(teacher: str, workdir: Path, data_dir: Path) -> ProxyProcess:
    return ProxyProcess(responses_config(teacher, data_dir), workdir, env=ENV).start()


def sdk(proxy: ProxyProcess, key: str = KEY_A) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.base_url, api_key=key, max_retries=0, timeout=300)


def wait_until(
    client: openai.OpenAI, response_id: str, done: tuple[str, ...], timeout: float = 300
) -> Response:
    deadline = time.monotonic() + timeout
    while True:
        response = client.responses.retrieve(response_id)
        if response.status in done:
            return response
        assert time.monotonic() < deadline, f"{response_id} is still {response.status}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def proxy(tap: TeacherTap, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    """The proxy, its teacher calls through the recording pass-through (`tap`)."""
    workdir = tmp_path_factory.mktemp("responses")
    started = start_proxy(tap.base_url, workdir, workdir / "data")
    yield started
    started.stop()
