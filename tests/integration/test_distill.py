"""`cord-proxy distill` against the real local teacher: kill -9, resume, the proxy's sink.

Budgets are tiny (one proposer, one step, short steps and answers) so that 20 problems take
well under a minute at concurrency 4 on two CPU cores.
"""

from __future__ import annotations

import json
import os
import pty
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.support.proxy_process import ProxyProcess
from tests.support.search_tree import check_record

PROBLEMS = 20
KILL_AFTER = 5
CORD = {
    "max_steps": 1,
    "beam_width": 1,
    "teachers": ["gemma-t0.5"],
    "max_step_tokens": 24,
    "answer_budget": 12,
}
PROXY_CONFIG = """
[server]
host = "127.0.0.1"
port = PORT

[[teachers]]
name = "gemma-t0.5"
base_url = "TEACHER_URL"
model = "gemma3-270m"
temperature = 0.5
timeout = 300

[[teachers]]
name = "gemma-t0.7"
base_url = "TEACHER_URL"
model = "gemma3-270m"
temperature = 0.7
timeout = 300

[[ensembles]]
name = "cord"
teachers = ["gemma-t0.5", "gemma-t0.7"]

[dataset]
path = "SINK_PATH"
"""


def _problems(path: Path) -> dict[str, dict[str, Any]]:
    rng = random.Random(6)
    problems = {}
    for i in range(PROBLEMS):
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        problems[f"arith-{i:02d}"] = {
            "id": f"arith-{i:02d}",
            "question": f"What is {a} + {b}?",
            "answer": str(a + b),
        }
    path.write_text("".join(json.dumps(p) + "\n" for p in problems.values()), encoding="utf-8")
    return problems


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _whole_records(path: Path) -> list[dict[str, Any]]:
    """Every line of the file, each of which must be a whole JSON record."""
    data = path.read_bytes()
    assert data.endswith(b"\n"), "the file ends in a partial line"
    return [json.loads(line) for line in data.split(b"\n")[:-1]]


def _distill(source: Path, output: Path, *engine: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cord_proxy",
        "distill",
        "--input",
        str(source),
        "--output",
        str(output),
        "--concurrency",
        "4",
        "--cord",
        json.dumps(CORD),
        *engine,
    ]


def _kill_partway(command: list[str], output: Path, *, terminal: bool) -> tuple[int, str]:
    """Start, SIGKILL once some records exist; returns (records then, what a terminal saw)."""
    seen: list[bytes] = []
    reader = None
    if terminal:
        master, slave = pty.openpty()
        proc = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave)
        os.close(slave)

        def read() -> None:
            while True:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    return
                if not chunk:
                    return
                seen.append(chunk)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
    else:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while _lines(output) < KILL_AFTER:
        assert proc.poll() is None, b"".join(seen).decode(errors="replace")
        assert time.monotonic() < deadline, "no records within 180 s"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    if reader is not None:
        reader.join(timeout=5)
        os.close(master)
    return _lines(output), b"".join(seen).decode(errors="replace")


def _finish(command: list[str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resuming:" in done.stderr
    return done


def _check_output(output: Path, problems: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    records = _whole_records(output)
    assert len(records) == PROBLEMS
    assert sorted(r["id"] for r in records) == sorted(problems)
    for record in records:
        problem = problems[record["id"]]
        assert record["messages"] == [{"role": "user", "content": problem["question"]}]
        assert record["reference_answer"] == problem["answer"]
        assert isinstance(record["reasoning"], str) and isinstance(record["answer"], str)
        assert record["steps"] and record["teachers"] and record["settings_hash"]
        check_record(record)  # the search tree holds the trace, step for step
    return records


def test_distill_in_process_survives_kill_9(local_teacher: str, tmp_path: Path) -> None:
    problems = _problems(tmp_path / "problems.jsonl")
    output = tmp_path / "traces.jsonl"
    command = _distill(tmp_path / "problems.jsonl", output, "--teacher-url", local_teacher)
    before, terminal = _kill_partway(command, output, terminal=True)
    assert KILL_AFTER <= before < PROBLEMS
    # the progress bar, as a terminal shows it: redrawn in place with \r
    assert "\r" in terminal and "distill [" in terminal
    assert "done " in terminal and "/min" in terminal and "ETA" in terminal
    assert "mean score" in terminal and "$0.0000" in terminal
    done = _finish(command)
    assert f"{PROBLEMS} records" in done.stdout
    records = _check_output(output, problems)
    assert {r["source"] for r in records} == {"engine"}


def test_distill_through_the_proxy_matches_its_sink(local_teacher: str, tmp_path: Path) -> None:
    problems = _problems(tmp_path / "problems.jsonl")
    sink = tmp_path / "sink" / "traces.jsonl"
    config = PROXY_CONFIG.replace("TEACHER_URL", local_teacher).replace("SINK_PATH", str(sink))
    proxy = ProxyProcess(config, tmp_path).start()
    try:
        output = tmp_path / "traces.jsonl"
        command = _distill(tmp_path / "problems.jsonl", output, "--url", proxy.base_url)
        before, _ = _kill_partway(command, output, terminal=False)
        assert KILL_AFTER <= before < PROBLEMS
        _finish(command)
    finally:
        proxy.stop()
    records = _check_output(output, problems)
    assert {r["source"] for r in records} == {"proxy"}
    sunk = {r["request_id"]: r for r in _whole_records(sink)}
    # every trace the client kept is in the sink, the same; the sink may hold more only for
    # requests that finished while the killed client was gone
    for record in records:
        twin = sunk[record["request_id"]]
        assert (twin["reasoning"], twin["answer"]) == (record["reasoning"], record["answer"])
        assert twin["messages"] == record["messages"]
        assert twin["reference_answer"] == record["reference_answer"]
        assert (twin["search"], twin["path"]) == (record["search"], record["path"])
    questions = {r["messages"][0]["content"] for r in sunk.values()}
    assert questions == {p["question"] for p in problems.values()}
    assert len(sunk) - PROBLEMS <= 4  # at most the killed run's in-flight requests
