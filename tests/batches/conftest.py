from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import openai
from openai.types import Batch

from tests.support.proxy_process import ProxyProcess

# Gemma 3 270M sometimes proposes nothing for a step: two proposals a step and a few retries
# keep a tiny decode from failing for that.
TINY = {"max_steps": 1, "beam_width": 1, "max_step_tokens": 16, "answer_budget": 8}

CONFIG = """
[server]
host = "127.0.0.1"
port = PORT

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
proposals_per_teacher = 2
max_steps = 1
max_step_tokens = 16
answer_budget = 8

[batches]
data_dir = "DATA_DIR"
concurrency = CONCURRENCY
retries = 3
"""


def batch_config(
    teacher: str, data_dir: Path, concurrency: int = 4, window_s: int | None = None
) -> str:
    text = (
        CONFIG.replace("TEACHER", teacher)
        .replace("DATA_DIR", str(data_dir))
        .replace("CONCURRENCY", str(concurrency))
    )
    return text if window_s is None else f"{text}completion_window_s = {window_s}\n"


def question(index: int) -> str:
    return f"What is {index + 11} + {index + 23}?"


def request_line(index: int, cord: dict[str, Any] | None = None, **body: Any) -> dict[str, Any]:
    options = {**TINY, "reference_answer": str(2 * index + 34), **(cord or {})}
    return {
        "custom_id": f"q-{index}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "cord",
            "messages": [{"role": "user", "content": question(index)}],
            "cord": options,
            **body,
        },
    }


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def sdk(proxy: ProxyProcess, key: str = "none") -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.base_url, api_key=key, max_retries=0, timeout=120)


def submit(client: openai.OpenAI, name: str, lines: list[dict[str, Any]]) -> Batch:
    """Upload `lines` as the batch input file `name` and create a batch of it."""
    uploaded = client.files.create(file=(name, jsonl(lines)), purpose="batch")
    return client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )


def wait_for(
    client: openai.OpenAI, batch_id: str, done: tuple[str, ...], timeout: float = 300
) -> Batch:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = client.batches.retrieve(batch_id)
        if batch.status in done:
            return batch
        time.sleep(0.3)
    raise AssertionError(f"batch {batch_id} is still {batch.status} after {timeout} s")


def events(log: str, name: str) -> list[dict[str, Any]]:
    """The structured log lines of one event."""
    found = []
    for line in log.splitlines():
        if line.startswith("{") and f'"event": "{name}"' in line:
            found.append(json.loads(line))
    return found
