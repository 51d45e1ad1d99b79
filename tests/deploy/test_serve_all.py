"""serve-all-4xh200.sh against FAKE servers: it fetches the weights before starting any
server, gives each server its own GPU, waits on /health, and stops the whole set as soon
as one server exits, while loading or after."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from tests.deploy.deploy_fakes import VLLM_DIR, Fakes

SCRIPT = VLLM_DIR / "serve-all-4xh200.sh"
PORTS = (8001, 8002, 8003, 8004)
FAST = {"READY_POLL": "0.1", "READY_TIMEOUT": "60", "FAKE_SERVE": "1"}


@contextmanager
def launched(fakes: Fakes, **settings: str) -> Iterator[subprocess.Popen[str]]:
    """The script in its own session, so that whatever is left of it can be stopped."""
    proc = subprocess.Popen(
        ["bash", str(SCRIPT)],
        env=fakes.env(**{"LOG_DIR": str(fakes.dir / "logs"), **FAST, **settings}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        with suppress(ProcessLookupError):  # the script's session: it and its fake servers
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def wait_for_line(proc: subprocess.Popen[str], text: str, timeout: float = 60.0) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"no line with {text!r}: {''.join(lines)}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pids: list[int], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


def test_the_set_starts_after_the_weights_and_stops_when_one_server_exits(
    fakes: Fakes,
) -> None:
    with launched(fakes) as proc:
        wait_for_line(proc, "all teachers ready")

        assert fakes.read("hf.log").splitlines() == [
            "download deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
            "download Qwen/QwQ-32B",
            "download microsoft/Phi-4-reasoning-plus",
        ]  # all before the first server started
        assert [fakes.read(f"gpus-{p}").strip() for p in PORTS] == ["0", "1", "2", "3"]
        assert all(fakes.read(f"offline-{p}").strip() == "1" for p in PORTS)
        assert all(url.endswith("/health") for url in fakes.read("curl.log").split())
        assert fakes.argv(8004)[1] == "Qwen/QwQ-32B"

        pids = [int(fakes.read(f"pid-{p}")) for p in PORTS]
        os.kill(pids[2], signal.SIGTERM)  # Phi-4 goes down
        _, stderr = proc.communicate(timeout=30)
        stopped = wait_gone(pids)  # before the fixture stops what is left

    assert proc.returncode != 0
    assert "phi-4-reasoning-plus (port 8003) exited; stopping the others" in stderr
    assert stopped, "the other servers were left running"


def test_a_server_that_dies_while_loading_stops_the_set_at_once(fakes: Fakes) -> None:
    (fakes.dir / "crash-8002").touch()
    started = time.monotonic()
    with launched(fakes, PREFETCH="0") as proc:
        _, stderr = proc.communicate(timeout=30)
        pids = [int(fakes.read(f"pid-{p}")) for p in PORTS if fakes.read(f"pid-{p}")]
        stopped = wait_gone(pids)

    assert proc.returncode == 1
    assert time.monotonic() - started < 20  # not after READY_TIMEOUT
    assert "qwq-32b (port 8002) exited before the set was ready" in stderr
    assert "CUDA out of memory" in stderr  # the end of its log
    assert fakes.read("hf.log") == ""  # PREFETCH=0 fetches nothing
    assert stopped, "the other servers were left running"


def test_a_fetch_that_fails_starts_no_server(fakes: Fakes) -> None:
    (fakes.bin / "hf").write_text("#!/usr/bin/env bash\necho 'no such repo' >&2\nexit 1\n")
    with launched(fakes) as proc:
        _, stderr = proc.communicate(timeout=30)

    assert proc.returncode == 1
    assert "could not fetch deepseek-ai/DeepSeek-R1-Distill-Qwen-32B" in stderr
    assert not list(fakes.dir.glob("argv-*"))


def test_local_folders_are_not_fetched(fakes: Fakes) -> None:
    folder = fakes.dir / "weights"
    folder.mkdir()
    with launched(fakes, R1_MODEL=str(folder)) as proc:
        wait_for_line(proc, "all teachers ready")
        assert "DeepSeek" not in fakes.read("hf.log")
        assert fakes.argv(8001)[1] == str(folder)


def test_a_term_to_the_script_stops_every_server(fakes: Fakes) -> None:
    with launched(fakes, PREFETCH="0", READY_POLL="2") as proc:
        wait_for_line(proc, "all teachers ready")
        pids = [int(fakes.read(f"pid-{p}")) for p in PORTS]
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        stopped = wait_gone(pids)

    assert proc.returncode == 143
    assert stopped, "the servers were left running"
