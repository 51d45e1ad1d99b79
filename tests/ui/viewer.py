"""`cord-proxy view FILE` as a subprocess for tests."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.proxy_process import free_port


@contextmanager
def running_view(path: Path, log: Path) -> Iterator[str]:
    """Serve `path` with `python -m cord_proxy view`; yield its base URL."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cord_proxy", "view", str(path), "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError(f"view exited: {log.read_text()[-2000:]}")
                try:
                    if httpx.get(f"{url}/ui/api/auth", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=15)
