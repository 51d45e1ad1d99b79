"""One key variable (issue 26): every client in clients/ reads the proxy's key from
``CORD_API_KEY``, falling back to ``OPENAI_API_KEY`` (what stock OpenAI tools read) only when
it is unset. A proxy with ``api_keys`` answers a client that has only ``CORD_API_KEY`` set.

The proxy is the real one (a subprocess); its teacher is the FAKE one of tests/api, since
what is under test is the key each client sends, not a trace."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clients.conftest import ROOT, rows
from tests.support.fake_teacher_http import CountingFakeTeacher
from tests.support.proxy_process import ProxyProcess

KEY = "sk-client-key-test"
KEY_VARIABLES = ("CORD_API_KEY", "OPENAI_API_KEY", "CORD_PROXY_API_KEY", "CORD_PROXY_KEY")

CONFIG = """
[server]
host = "127.0.0.1"
port = PORT
api_keys = ["env:CLIENT_TEST_SERVER_KEY"]

[[teachers]]
name = "fast"
base_url = "FAKE_URL"
model = "fast"
timeout = 60

[[ensembles]]
name = "cord"
teachers = ["fast"]
[ensembles.defaults]
beam_width = 1
max_steps = 2

[batches]
data_dir = "DATA_DIR"
"""

# The scripts that run on the project's venv (the openai SDK, curl); Curator and distilabel
# run on their own venv (scripts/tools_venv.sh).
PROJECT_CLIENTS = (
    "openai_chat.py",
    "openai_stream.py",
    "curl.sh",
    "openai_batch.py",
    "openai_batches_api.py",
)
TOOL_CLIENTS = ("curator_script.py", "distilabel_pipeline.py")
# curator_structured.py wants a JSON answer the fake teacher does not write: its key is
# checked by the last test alone (it reads the key as curator_script.py does)
# no proxy, no key: the engine in-process; training on an export
KEYLESS_CLIENTS = ("ray_data.py", "train_student.py")


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    teacher = CountingFakeTeacher()
    teacher.start_in_thread()
    workdir = tmp_path_factory.mktemp("client-keys")
    config = CONFIG.replace("FAKE_URL", teacher.base_url).replace("DATA_DIR", str(workdir / "data"))
    process = ProxyProcess(config, workdir, env={"CLIENT_TEST_SERVER_KEY": KEY}).start()
    yield process
    process.stop()
    teacher.stop_thread()


def client_env(tmp: Path, **keys: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in KEY_VARIABLES}
    env.update(
        CURATOR_CACHE_DIR=str(tmp / "curator-cache"),
        DISTILABEL_CACHE_DIR=str(tmp / "distilabel-cache"),
        **keys,
    )
    return env


def run_client(
    script: str, proxy: ProxyProcess, tmp: Path, python: str = sys.executable, **keys: str
) -> subprocess.CompletedProcess[str]:
    path = ROOT / "clients" / script
    if script.endswith(".sh"):
        command = ["bash", str(path), proxy.base_url]
    else:
        command = [python, str(path), "--base-url", proxy.base_url]
    if script not in ("openai_chat.py", "openai_stream.py", "curl.sh"):
        problems = tmp / "problems.jsonl"
        problems.write_text('{"id": "p1", "question": "What is 2 + 3?", "answer": "5"}\n')
        command += ["--input", str(problems), "--output", str(tmp / "out.jsonl")]
        command += ["--poll-interval", "0.3"] if script == "openai_batches_api.py" else []
    return subprocess.run(
        command, capture_output=True, text=True, timeout=300, env=client_env(tmp, **keys), cwd=tmp
    )


def assert_answered(script: str, done: subprocess.CompletedProcess[str], tmp: Path) -> None:
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    if script in ("openai_batch.py", "openai_batches_api.py"):
        assert [line["response"]["status_code"] for line in rows(tmp / "out.jsonl")] == [200]
    elif script in TOOL_CLIENTS:
        assert [row["id"] for row in rows(tmp / "out.jsonl")] == ["p1"]


@pytest.mark.parametrize("script", PROJECT_CLIENTS)
def test_a_client_with_only_cord_api_key_is_answered(
    proxy: ProxyProcess, tmp_path: Path, script: str
) -> None:
    assert_answered(script, run_client(script, proxy, tmp_path, CORD_API_KEY=KEY), tmp_path)


@pytest.mark.parametrize("script", TOOL_CLIENTS)
def test_a_data_tool_client_with_only_cord_api_key_is_answered(
    proxy: ProxyProcess, tools_python: str, tmp_path: Path, script: str
) -> None:
    done = run_client(script, proxy, tmp_path, tools_python, CORD_API_KEY=KEY)
    assert_answered(script, done, tmp_path)


@pytest.mark.parametrize("script", ["openai_chat.py", "curl.sh", "openai_batch.py"])
def test_openai_api_key_is_the_fallback_and_cord_api_key_wins(
    proxy: ProxyProcess, tmp_path: Path, script: str
) -> None:
    fallback = run_client(script, proxy, tmp_path / "fallback", OPENAI_API_KEY=KEY)
    assert_answered(script, fallback, tmp_path / "fallback")
    both = run_client(script, proxy, tmp_path / "both", CORD_API_KEY="wrong", OPENAI_API_KEY=KEY)
    if script == "openai_batch.py":  # a refused line goes to the errors file, not the output
        output = tmp_path / "both" / "out.jsonl"
        assert not output.exists() or not rows(output)
        assert "401" in (tmp_path / "both" / "out.errors.jsonl").read_text()
    else:
        assert both.returncode != 0 and "401" in both.stdout + both.stderr


@pytest.fixture(autouse=True)
def _workdirs(tmp_path: Path) -> None:
    for name in ("fallback", "both"):
        (tmp_path / name).mkdir()


def test_every_client_reads_cord_api_key_first() -> None:
    """Each script that talks to a proxy names CORD_API_KEY before any other key variable,
    and none reads a third name."""
    scripts = sorted(p for p in (ROOT / "clients").iterdir() if p.suffix in (".py", ".sh"))
    assert {p.name for p in scripts} >= {*PROJECT_CLIENTS, *TOOL_CLIENTS, *KEYLESS_CLIENTS}
    for script in scripts:
        text = script.read_text(encoding="utf-8")
        named = re.findall(r"\b[A-Z_]*(?:API_KEY|PROXY_KEY)\b", text)
        if script.name in KEYLESS_CLIENTS:
            assert named == [], script.name
            continue
        assert named and named[0] == "CORD_API_KEY", (script.name, named)
        assert set(named) <= {"CORD_API_KEY", "OPENAI_API_KEY"}, (script.name, named)
