"""distilabel's stock `OpenAILLM`, with its timeout and its retries, finishes a decode longer
than that timeout (issue 23): its first try times out and drops; the decode runs on for
``[server] detach_grace_s``; the openai SDK's retries (``x-stainless-retry-count`` >= 1, same
key and body) attach to it, and one of them gets the completion. Without that, every try
would start the decode over and be cut at the same timeout: the row would never be written.

distilabel's defaults are a 120 s timeout and 6 retries; here the timeout is a few seconds,
and the decode, measured first on a patient client, is some 2.5 times as long.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.clients.conftest import PROBLEMS, ROOT, rows
from tests.support.proxy_process import ProxyProcess

DRIVER = ROOT / "tests" / "clients" / "distilabel_retries.py"
# The decode's length over the client's timeout T. The client waits 7 T (6 retries) and some
# 17-23 s of backoff in all: with a decode of ~10 s, it is still followed to its end if it
# turns out some 4.5 times as slow as measured (the teacher is shared, the machine loaded),
# and it still outlasts the first try if it turns out up to 2.5 times as fast.
RATIO = 2.5

# One teacher, a beam of one, a few short steps: a decode of some seconds on the local
# teacher, the same trace each time (seeded), so one measured decode tells the next's length.
CONFIG = """
[server]
host = "127.0.0.1"
port = PORT
detach_grace_s = 60

[[teachers]]
name = "t1"
base_url = "TEACHER"
model = "gemma3-270m"
temperature = 0.6
timeout = 300

[[ensembles]]
name = "cord"
teachers = ["t1"]
[ensembles.defaults]
beam_width = 1
proposals_per_teacher = 1
max_steps = 8
max_step_tokens = 8
thinking_budget = 64
answer_budget = 32
seed = 7
"""


@pytest.fixture()
def proxy(local_teacher: str, tmp_path: Path) -> Iterator[ProxyProcess]:
    process = ProxyProcess(CONFIG.replace("TEACHER", local_teacher), tmp_path).start()
    yield process
    process.stop()


def log_events(proxy: ProxyProcess, start: int = 0) -> list[dict[str, Any]]:
    """The proxy's JSON log lines from byte `start` on."""
    with proxy.log_path.open("rb") as log:
        log.seek(start)
        text = log.read().decode("utf-8", errors="replace")
    events = []
    for line in text.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def timeline(event: dict[str, Any]) -> str:
    """One log line, short: what happened, and when."""
    fields = ("status", "duration_s", "wall_s", "grace_s", "frames_replayed", "completion_id")
    said = " ".join(f"{k}={event[k]}" for k in fields if k in event)
    return f"{event.get('ts', 0):.1f} {event.get('event')} {said}"


def measured_decode_s(proxy: ProxyProcess, question: str) -> float:
    """The wall time of one decode of `question`, as distilabel sends it, on a patient client."""
    body = {
        "model": "cord",
        "messages": [{"role": "user", "content": question}],
        "max_tokens": 128,
        "temperature": 1.0,
        "top_p": 1.0,
        "n": 1,
        "logprobs": False,
        "top_logprobs": None,
        "stop": None,
        "frequency_penalty": 0.0,
        "presence_penalty": 0.0,
    }
    url = f"{proxy.base_url}/chat/completions"
    patient = {"Authorization": "Bearer patient"}  # another key: never attached to
    # a first decode is slower (connections, the teacher's scoring probe): one step first
    warm = {**body, "max_tokens": 1, "cord": {"max_steps": 1, "max_step_tokens": 1}}
    response = httpx.post(url, json=warm, headers=patient, timeout=300)
    assert response.status_code == 200, response.text
    started = time.monotonic()
    response = httpx.post(url, json=body, headers=patient, timeout=300)
    assert response.status_code == 200, response.text
    return time.monotonic() - started


def test_stock_distilabel_retries_finish_a_decode_longer_than_its_timeout(
    proxy: ProxyProcess, tools_python: str, tmp_path: Path
) -> None:
    problem = PROBLEMS[0]
    decode_s = measured_decode_s(proxy, problem["question"])
    timeout = max(1, math.floor(decode_s / RATIO))  # at most 1/RATIO of the decode
    start = proxy.log_path.stat().st_size
    inputs = tmp_path / "problem.jsonl"
    inputs.write_text(json.dumps(problem) + "\n", encoding="utf-8")
    output = tmp_path / "rows.jsonl"
    env = {
        **os.environ,
        "DISTILABEL_CACHE_DIR": str(tmp_path / "distilabel-cache"),
        "OPENAI_API_KEY": "none",
        "COLUMNS": "240",
    }
    env.pop("TIKTOKEN_CACHE_DIR", None)
    began = time.monotonic()
    done = subprocess.run(
        [tools_python, str(DRIVER), proxy.base_url, str(timeout), str(inputs), str(output)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    took = time.monotonic() - began
    report = f"decode {decode_s:.1f} s, timeout {timeout} s, distilabel {took:.1f} s"
    print(report)
    assert done.returncode == 0, (report, done.stdout[-3000:], done.stderr[-5000:])

    written = rows(output)
    assert [r["id"] for r in written] == [problem["id"]], written
    # distilabel turns a failed call into a row with no generation
    assert written[0]["generation"], (report, written[0]["distilabel_metadata"])

    events = log_events(proxy, start)
    finished = [e for e in events if e.get("event") == "decode finished"]
    attached = [e for e in events if e.get("event") == "decode attached"]
    dropped = [e for e in events if e.get("status") == 499]  # the tries that timed out
    context = (report, proxy.log()[-4000:])
    print(*(timeline(e) for e in events), sep="\n")
    assert len(finished) == 1, context  # one decode for the row, never started over
    assert attached, context
    completion = finished[0]["completion_id"]
    assert all(e["completion_id"] == completion for e in attached), context
    assert len(dropped) >= 1, context
    assert not any(e.get("event") == "decode cancelled after grace" for e in events), context
