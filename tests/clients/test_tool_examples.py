"""The data-tool examples in clients/ run against the real proxy and the real local teacher,
each writing its rows: the openai SDK ones from the project's venv, Curator and distilabel
from their own cached venv (scripts/tools_venv.sh: their pins are not the project's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.batches.conftest import batch_config
from tests.support.proxy_process import ProxyProcess

ROOT = Path(__file__).resolve().parents[2]
FAST = ("--requests-per-minute", "600")
PROBLEMS = [
    {"id": "p1", "question": "What is 2 + 3?", "answer": "5"},
    {"id": "p2", "question": "What is 7 + 6?", "answer": "13"},
    {"id": "p3", "question": "What is 9 + 9?", "answer": "18"},
]


@pytest.fixture(scope="module")
def proxy(local_teacher: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    workdir = tmp_path_factory.mktemp("tools")
    process = ProxyProcess(batch_config(local_teacher, workdir / "data", 3), workdir).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def tools_python() -> str:
    built = subprocess.run(
        ["bash", str(ROOT / "scripts" / "tools_venv.sh")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    return built.stdout.strip().splitlines()[-1]


@pytest.fixture()
def problems(tmp_path: Path) -> Path:
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS), encoding="utf-8")
    return path


def run(python: str, script: str, proxy: ProxyProcess, tmp: Path, *extra: str) -> Path:
    output = tmp / f"{Path(script).stem}.jsonl"
    env = {
        **os.environ,
        "CURATOR_CACHE_DIR": str(tmp / "curator-cache"),
        "DISTILABEL_CACHE_DIR": str(tmp / "distilabel-cache"),
        "OPENAI_API_KEY": "none",
    }
    env.pop("TIKTOKEN_CACHE_DIR", None)  # each example must find its encodings itself
    command = [python, str(ROOT / "clients" / script), "--base-url", proxy.base_url]
    command += ["--input", str(tmp / "problems.jsonl"), "--output", str(output), *extra]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-5000:])
    return output


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def assert_batch_output(path: Path) -> None:
    lines = rows(path)
    assert sorted(line["custom_id"] for line in lines) == ["p1", "p2", "p3"]
    for line in lines:
        message = line["response"]["body"]["choices"][0]["message"]
        assert line["response"]["status_code"] == 200 and message["reasoning_content"]


def test_openai_batch_example(proxy: ProxyProcess, problems: Path, tmp_path: Path) -> None:
    output = run(sys.executable, "openai_batch.py", proxy, tmp_path, "--concurrency", "3")
    assert_batch_output(output)


def test_openai_batches_api_example(proxy: ProxyProcess, problems: Path, tmp_path: Path) -> None:
    output = run(sys.executable, "openai_batches_api.py", proxy, tmp_path, "--poll-interval", "0.5")
    assert_batch_output(output)


def test_distilabel_example(
    proxy: ProxyProcess, tools_python: str, problems: Path, tmp_path: Path
) -> None:
    written = rows(run(tools_python, "distilabel_pipeline.py", proxy, tmp_path))
    assert sorted(r["id"] for r in written) == ["p1", "p2", "p3"]
    assert all(r["reasoning"].startswith("### Step 1.") for r in written), written


def test_curator_example(
    proxy: ProxyProcess, tools_python: str, problems: Path, tmp_path: Path
) -> None:
    written = rows(run(tools_python, "curator_script.py", proxy, tmp_path, *FAST))
    assert sorted(r["id"] for r in written) == ["p1", "p2", "p3"]
    assert all(r["reasoning"].startswith("### Step 1.") for r in written), written
    assert all(isinstance(r["score"], float) for r in written)


def test_curator_batch_mode_runs_on_the_batches_api(
    proxy: ProxyProcess, tools_python: str, problems: Path, tmp_path: Path
) -> None:
    before = _batch_ids(proxy)
    extra = ("--batch", "--batch-check-interval", "1")
    written = rows(run(tools_python, "curator_script.py", proxy, tmp_path, *extra))
    assert sorted(r["id"] for r in written) == ["p1", "p2", "p3"]
    assert all(r["reasoning"].startswith("### Step 1.") for r in written), written
    new = [b for b in _batches(proxy) if b["id"] not in before]
    assert len(new) == 1 and new[0]["status"] == "completed"
    assert new[0]["request_counts"] == {"total": 3, "completed": 3, "failed": 0}


def _batches(proxy: ProxyProcess) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = httpx.get(f"{proxy.base_url}/batches?limit=100").json()["data"]
    return data


def _batch_ids(proxy: ProxyProcess) -> set[str]:
    return {b["id"] for b in _batches(proxy)}
