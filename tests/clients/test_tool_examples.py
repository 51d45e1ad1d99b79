"""The data-tool examples in clients/ run against the real proxy and the real local teacher,
each writing its rows: the openai SDK ones from the project's venv, Curator and distilabel
from their own cached venv (scripts/tools_venv.sh: their pins are not the project's)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.batches.conftest import batch_config
from tests.clients.conftest import ROOT, rows
from tests.support.proxy_process import ProxyProcess

FAST = ("--requests-per-minute", "600")


@pytest.fixture(scope="module")
def proxy(local_teacher: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    workdir = tmp_path_factory.mktemp("tools")
    process = ProxyProcess(batch_config(local_teacher, workdir / "data", 3), workdir).start()
    yield process
    process.stop()


def run(python: str, script: str, proxy: ProxyProcess, tmp: Path, *extra: str) -> Path:
    output = tmp / f"{Path(script).stem}.jsonl"
    env = {
        **os.environ,
        "CURATOR_CACHE_DIR": str(tmp / "curator-cache"),
        "DISTILABEL_CACHE_DIR": str(tmp / "distilabel-cache"),
        "CORD_API_KEY": "none",  # the one key variable the README names
    }
    env.pop("TIKTOKEN_CACHE_DIR", None)  # each example must find its encodings itself
    command = [python, str(ROOT / "clients" / script), "--base-url", proxy.base_url]
    command += ["--input", str(tmp / "problems.jsonl"), "--output", str(output), *extra]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-5000:])
    return output


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
    """The stock `OpenAILLM` in a `TextGeneration` task, `cord` options in its extra_body."""
    written = rows(run(tools_python, "distilabel_pipeline.py", proxy, tmp_path))
    assert sorted(r["id"] for r in written) == ["p1", "p2", "p3"]
    assert all(r["reasoning"].startswith("### Step 1.") for r in written), written
    # the content's answer, split from the inline trace (gemma 270m's may be empty in 8 tokens)
    assert all("</think>" not in r["final_answer"] for r in written), written


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
