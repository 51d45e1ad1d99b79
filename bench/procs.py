"""Child processes of the benchmark: simulated teachers and the proxy server."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STOP_GRACE_S = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_cpu_s(pid: int) -> float:
    """User plus system CPU seconds of a live process (Linux ``/proc``), or 0.0."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass
class Child:
    """A started child process with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    url: str

    def cpu_s(self) -> float:
        return process_cpu_s(self.popen.pid)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM, grace_s: float = STOP_GRACE_S) -> None:
        if not self.alive():
            return
        self.popen.send_signal(sig)
        try:
            self.popen.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(STOP_GRACE_S)


def start_child(name: str, argv: Sequence[str], url: str, log_dir: Path) -> Child:
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            list(argv),
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return Child(name, popen, log_path, url)


def wait_ready(child: Child, probe: str, timeout_s: float) -> str | None:
    """Poll `probe` until it answers 200; the reason it never did, or None."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if not child.alive():
            return f"{child.name} exited with code {child.popen.returncode}: {child.log_tail(5)}"
        try:
            response = httpx.get(probe, timeout=2.0)
            if response.status_code == 200:
                return None
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as error:
            last = type(error).__name__
        time.sleep(0.1)
    return f"{child.name} not ready at {probe} after {timeout_s:g} s ({last})"


@dataclass
class SimTeachers:
    """Simulated teachers, one process per model."""

    children: list[Child] = field(default_factory=list)
    models: list[str] = field(default_factory=list)

    def base_url(self, index: int) -> str:
        return self.children[index].url + "/v1"

    def cpu_s(self) -> float:
        return sum(c.cpu_s() for c in self.children)

    def reset(self) -> None:
        for child in self.children:
            httpx.post(child.url + "/bench/reset", timeout=10.0).raise_for_status()

    def records(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for child in self.children:
            response = httpx.get(child.url + "/bench/log", timeout=60.0)
            response.raise_for_status()
            found += response.json()["records"]
        return found

    def stop(self) -> None:
        for child in self.children:
            child.stop()


@contextlib.contextmanager
def sim_teachers(
    specs: dict[str, dict[str, Any]], seed: int, log_dir: Path
) -> Iterator[SimTeachers]:
    """Start one simulator process per model and stop them all on exit."""
    sims = SimTeachers()
    try:
        for name, spec in specs.items():
            port = free_port()
            config = json.dumps({"seed": seed, "models": {name: spec}})
            argv = [
                sys.executable,
                "-m",
                "bench.simteacher",
                "--port",
                str(port),
                "--config",
                config,
            ]
            child = start_child(f"sim-{name}", argv, f"http://127.0.0.1:{port}", log_dir)
            sims.children.append(child)
            sims.models.append(name)
        for child in sims.children:
            problem = wait_ready(child, child.url + "/v1/models", 30.0)
            if problem:
                raise RuntimeError(problem)
        yield sims
    finally:
        sims.stop()


def scratch_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="cord-bench-")
