"""Screenshots of the web page's three views, for the README: docs/img/ui-*.png.

    .venv/bin/python scripts/screenshots.py [--teacher-url http://127.0.0.1:8401/v1]

Starts the proxy on the local teacher (three teachers at temperatures 0.5, 0.6 and 0.7,
tiny budgets) with a dataset sink, fills the sink with a few decodes through the API, then
drives headless Debian Chromium: a decode in the playground, one trace opened in the trace
viewer, and the teacher board.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cord_proxy.testing.browser import chromium_context  # noqa: E402

TEACHER = """
[[teachers]]
name = "gemma-t{t}"
base_url = "{url}"
model = "gemma3-270m"
temperature = {t}
timeout = 300
"""
ENSEMBLE = """
[[ensembles]]
name = "cord"
teachers = ["gemma-t0.5", "gemma-t0.6", "gemma-t0.7"]
[ensembles.defaults]
beam_width = 2
max_steps = 3
max_step_tokens = 32
answer_budget = 12
thinking_budget = 512

[dataset]
path = "{sink}"
"""
PROBLEMS = [("What is 17 + 25?", "42"), ("What is 6 * 7?", "42"), ("What is 90 - 48?", "42")]


def _config(url: str, port: int, sink: Path) -> str:
    server = f'[server]\nhost = "127.0.0.1"\nport = {port}\n'
    teachers = "".join(TEACHER.format(t=t, url=url) for t in ("0.5", "0.6", "0.7"))
    return server + teachers + ENSEMBLE.format(sink=sink)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(config: Path, port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "cord_proxy", "serve", "--config", str(config)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the proxy did not start")


def _fill_sink(port: int) -> None:
    def one(problem: tuple[str, str]) -> None:
        body = {
            "model": "cord",
            "messages": [{"role": "user", "content": problem[0]}],
            "cord": {"reference_answer": problem[1], "include_candidates": True},
        }
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        httpx.post(url, json=body, timeout=600).raise_for_status()

    with concurrent.futures.ThreadPoolExecutor(len(PROBLEMS)) as pool:
        list(pool.map(one, PROBLEMS))


def _shoot(page: Page, port: int, out: Path) -> None:
    base = f"http://127.0.0.1:{port}/ui"
    page.goto(f"{base}#playground")
    page.fill("#pg-question", "What is 12 + 30?")
    page.fill("#pg-seed", "3")
    page.click("#pg-run")
    page.wait_for_selector("#pg-tree[data-seq]", timeout=600_000)
    page.screenshot(path=str(out / "ui-playground.png"), full_page=True)
    page.goto(f"{base}#traces")
    page.wait_for_selector("#tr-rows tr")
    page.wait_for_selector("#tr-histogram rect", state="attached")
    page.click("#tr-rows tr")
    page.wait_for_selector("#tr-tree .cand")
    page.screenshot(path=str(out / "ui-traces.png"), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 260})
    page.goto(f"{base}#teachers")
    page.wait_for_selector("#tc-rows tr[data-ready]")
    page.screenshot(path=str(out / "ui-teachers.png"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher-url", default="http://127.0.0.1:8401/v1")
    parser.add_argument("--out", default=str(ROOT / "docs" / "img"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        config = Path(tmp) / "cord.toml"
        config.write_text(_config(args.teacher_url, port, Path(tmp) / "sink.jsonl"), "utf-8")
        proc = _start(config, port)
        try:
            _fill_sink(port)
            with chromium_context(viewport=(1400, 900)) as context:
                _shoot(context.new_page(), port, out)
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    print(f"screenshots in {out}: ui-playground.png, ui-traces.png, ui-teachers.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
