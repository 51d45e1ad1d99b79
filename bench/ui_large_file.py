"""The trace viewer on a large file: time to the first rendered page in a real browser.

    .venv/bin/python -m bench.ui_large_file [--records 100000] [--keep FILE]

Writes a file of generated trace records (shaped like the proxy's sink: 4 steps, 3
teachers, scorer parts, timings), serves it with ``cord-proxy view`` in a fresh process,
and opens ``/ui`` in headless Debian Chromium (Playwright, ``executable_path``). It prints
the time from navigation to the first 50 rows on screen (the server indexes the file cold
on that first request), then the times of the first sorted page (every record summarised
once) and of a text search, and the JSON API's own times.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page

from cord_proxy.testing.browser import chromium_context

PLAYWRIGHT_VIEWPORT = (1280, 720)  # Playwright's default, the size the figures were measured at

TEACHERS = ("gemma-t0.5", "gemma-t0.6", "gemma-t0.7")


def _teacher(name: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        "proposals": 8,
        "selected": sum(name in s["proposers"] for s in steps),
        "propose_calls": 8,
        "score_calls": 16,
        "prompt_tokens": 400,
        "completion_tokens": 160,
        "score_tokens": 900,
        "cost_usd": 0.0,
        "latency_s": 4.2,
        "failures": 0,
    }


def _record(i: int, rng: random.Random) -> dict[str, Any]:
    a, b = rng.randint(2, 999), rng.randint(2, 999)
    steps: list[dict[str, Any]] = []
    for index in range(1, 5):
        proposers = rng.sample(TEACHERS, rng.randint(1, 2))
        score = rng.random() * 0.6
        steps.append(
            {
                "index": index,
                "text": f"### Step {index}.\nAdd the {index}th part: {a} + {b} = {a + b}.\n",
                "proposers": proposers,
                "score": score,
                "log_score": -1.0 - score,
                "scorers": [
                    {"scorer": t, "mean_logprob": -1.2, "tokens": 3, "weight": 1.0}
                    for t in TEACHERS
                ],
                "tokens": 24,
            }
        )
    teachers = [_teacher(t, steps) for t in TEACHERS]
    return {
        "schema": "cord-trace/1",
        "id": f"gen-{i:06d}",
        "request_id": f"chatcmpl-{i:032x}",
        "ensemble": "cord",
        "messages": [{"role": "user", "content": f"What is {a} + {b}?"}],
        "reference_answer": str(a + b),
        "reasoning": "".join(s["text"] for s in steps),
        "answer": str(a + b),
        "finish_reason": rng.choice(("stop", "stop", "length")),
        "score": rng.random(),
        "log_score": -0.5,
        "score_mode": "reference",
        "reference_used": True,
        "closed_by": "think",
        "answer_teacher": rng.choice(TEACHERS),
        "steps": steps,
        "teachers": teachers,
        "usage": {"prompt_tokens": 28, "reasoning_tokens": 96, "answer_tokens": 3},
        "cost_usd": 0.0,
        "timings": {"started_at": 1.7e9 + i, "finished_at": 1.7e9 + i + 5, "wall_s": 5.0},
        "failures": [],
        "dropped": [],
        "alternatives": [],
        "settings_hash": "sha256:0123456789abcdef",
        "source": "engine",
    }


def write_file(path: Path, records: int) -> None:
    rng = random.Random(1)
    with path.open("w", encoding="utf-8") as handle:
        for i in range(records):
            handle.write(json.dumps(_record(i, rng)) + "\n")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_view(path: Path, port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "cord_proxy", "view", str(path), "--port", str(port)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ui/api/auth", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("cord-proxy view did not start")


def _timed(page: Page, action: Callable[[], Any], query: str) -> float:
    """Seconds from `action` until the list shows 50 rows answering a query holding `query`."""
    started = time.perf_counter()
    action()
    page.wait_for_selector(f"#tr-count[data-query*='{query}']", state="attached")
    page.wait_for_selector("#tr-rows tr:nth-child(50)", state="attached")
    return time.perf_counter() - started


def browser_times(port: int, records: int) -> dict[str, float]:
    with chromium_context(viewport=PLAYWRIGHT_VIEWPORT) as context:
        page = context.new_page()
        first = _timed(page, lambda: page.goto(f"http://127.0.0.1:{port}/ui"), "limit=50")
        sorted_s = _timed(page, lambda: page.select_option("#tr-sort", "score"), "sort=score")
        page.select_option("#tr-sort", "line")
        _timed(page, lambda: None, "offset=0&limit=50")
        search_s = _timed_search(page, f"gen-{records * 7 // 100:05d}")
    return {"first_page_s": first, "first_sorted_page_s": sorted_s, "search_s": search_s}


def _timed_search(page: Page, text: str) -> float:
    """Seconds from typing `text` until its hits (10 ids share the prefix) are listed."""
    started = time.perf_counter()
    page.fill("#tr-search", text)
    page.wait_for_selector(
        f"#tr-count[data-query*='q={text}'][data-matched='10']", state="attached"
    )
    return time.perf_counter() - started


def api_times(port: int) -> dict[str, float]:
    base = f"http://127.0.0.1:{port}/ui/api"
    times = {}
    for name, path in (("api_page_warm_s", "/traces?offset=5000"), ("api_stats_s", "/stats")):
        started = time.perf_counter()
        httpx.get(base + path, timeout=120).raise_for_status()
        times[name] = time.perf_counter() - started
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--keep", help="write the generated file here and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.keep) if args.keep else Path(tmp) / "traces.jsonl"
        started = time.perf_counter()
        write_file(path, args.records)
        size_mb = path.stat().st_size / 1e6
        took = time.perf_counter() - started
        print(f"generated {args.records} records, {size_mb:.0f} MB, in {took:.1f} s")
        port = _free_port()
        proc = _start_view(path, port)
        try:
            figures = {**browser_times(port, args.records), **api_times(port)}
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    print("| figure | seconds |\n|---|---|")
    for name, value in figures.items():
        print(f"| {name} | {value:.3f} |")
    print(f"first rendered page of a {args.records}-record file: {figures['first_page_s']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
