"""A batch whose completion window runs out becomes `expired`: its in-flight decodes stop (seen
at the real teacher's door), the lines done are in the output file, each line not done is in
the error file with the code `batch_expired`, and a proxy that starts after a batch's window
ran out expires it instead of resuming it."""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
from pathlib import Path
from typing import Any

import httpx
import openai
from openai.types import Batch

from tests.batches.conftest import (
    batch_config,
    events,
    question,
    request_line,
    sdk,
    submit,
    wait_for,
)
from tests.batches.teacher_tap import Call, TeacherTap
from tests.support.proxy_process import ProxyProcess

LINES = range(300, 340)  # far more work than the window leaves time for
HELD = 301
RESTART_LINES = range(400, 430)
# Steps long enough that a line nearly always has a generation in flight when the window
# runs out (as in test_cancel), so the expiry has a call to abort.
LONGER = {"max_steps": 3, "max_step_tokens": 48, "answer_budget": 24}
FINAL = ("completed", "failed", "cancelled", "expired")


def _calls(tap: TeacherTap, lines: range) -> list[Call]:
    return [c for i in lines for c in tap.calls_mentioning(question(i))]


def _lines(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def _check_expired(client: openai.OpenAI, batch: Batch, lines: range) -> set[str]:
    """The batch's files split its lines as OpenAI's would; the ids of the expired ones."""
    assert batch.status == "expired" and batch.expired_at, batch
    assert batch.completed_at is None and batch.expires_at is not None
    assert batch.expires_at <= batch.expired_at
    done = _lines(client, batch.output_file_id)
    errors = _lines(client, batch.error_file_id)
    expired = [e for e in errors if e["error"] and e["error"]["code"] == "batch_expired"]
    assert all(e["response"] is None and e["error"]["message"] for e in expired)
    assert all(e["response"]["status_code"] != 200 for e in errors if e not in expired)
    assert all(d["response"]["status_code"] == 200 for d in done)
    done_ids = [d["custom_id"] for d in done]
    error_ids = [e["custom_id"] for e in errors]
    assert sorted(done_ids + error_ids) == sorted(f"q-{i}" for i in lines)
    counts = batch.request_counts
    assert counts is not None
    assert (counts.total, counts.completed, counts.failed) == (len(lines), len(done), len(errors))
    assert expired, "no line was left to expire"
    return {e["custom_id"] for e in expired}


def _window(
    tap: TeacherTap, workdir: Path, lines: float, cord: dict[str, Any] | None = None
) -> int:
    """A window of about `lines` line decodes at the shared teacher's speed now (it varies
    with the load on it), timed on one such line through a proxy of its own."""
    probe = ProxyProcess(batch_config(tap.base_url, workdir / "probe"), workdir).start()
    try:
        started = time.monotonic()
        answer = httpx.post(
            f"{probe.base_url}/chat/completions", json=request_line(299, cord)["body"], timeout=300
        )
        seconds = time.monotonic() - started
    finally:
        probe.stop()
    assert answer.status_code == 200, answer.text
    print(f"one line took {seconds:.1f} s")
    return max(5, min(120, math.ceil(lines * seconds) + 2))


def _metric(proxy: ProxyProcess, name: str, label: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{proxy.port}/metrics", timeout=10).text
    found = re.search(rf"^{re.escape(name)}\{{{re.escape(label)}\}} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def test_a_running_batch_expires_when_its_window_runs_out(tap: TeacherTap, tmp_path: Path) -> None:
    # One line at a time beside the held one, for about 5 lines' time: some lines end, far
    # from all 40.
    window = _window(tap, tmp_path, 5, LONGER)
    config = batch_config(tap.base_url, tmp_path / "data", concurrency=2, window_s=window)
    proxy = ProxyProcess(config, tmp_path).start()
    # The held line's calls wait at the tap: one is in flight when the window runs out, and
    # the batch cannot complete first, however fast the teacher is.
    with tap.holding(question(HELD)), contextlib.ExitStack() as stopping:
        stopping.callback(proxy.stop)
        client = sdk(proxy)
        batch = submit(client, "many.jsonl", [request_line(i, LONGER) for i in LINES])
        assert batch.completion_window == "24h"
        assert batch.expires_at == batch.created_at + window
        finished = wait_for(client, batch.id, FINAL, window + 60)
        seen_at = time.time()
        expired = _check_expired(client, finished, LINES)
        assert finished.request_counts is not None and finished.request_counts.completed >= 1
        aborted_by = time.monotonic() + 2  # the tap sees the closed connection a moment later
        while [c for c in _calls(tap, LINES) if c.ended is None]:
            assert time.monotonic() < aborted_by, "a teacher call outlived the expiry"
            time.sleep(0.05)
        assert any(c.aborted for c in _calls(tap, LINES)), "no in-flight call was aborted"
        time.sleep(3)
        assert [c for c in _calls(tap, LINES) if c.started > seen_at] == []
        log = proxy.log()
        finished_ids = {e["custom_id"] for e in events(log, "batch line finished")}
        started_ids = {e["custom_id"] for e in events(log, "batch line decode")}
        assert not finished_ids & expired
        assert started_ids - finished_ids <= expired and started_ids - finished_ids
        assert _metric(proxy, "cord_batch_requests_total", 'outcome="expired"') == len(expired)
        assert client.batches.retrieve(batch.id).status == "expired"


def test_a_batch_past_its_window_at_startup_is_expired_not_resumed(
    tap: TeacherTap, tmp_path: Path
) -> None:
    window = _window(tap, tmp_path, 3) + 4
    config = batch_config(tap.base_url, tmp_path / "data", concurrency=1, window_s=window)
    first = ProxyProcess(config, tmp_path).start()
    try:
        client = sdk(first)
        batch = submit(client, "many.jsonl", [request_line(i) for i in RESTART_LINES])
        assert batch.expires_at is not None
        kill_by = batch.expires_at - 4
        while time.time() < kill_by:
            counts = client.batches.retrieve(batch.id).request_counts
            if counts is not None and counts.completed >= 1:
                break
            time.sleep(0.2)
        running = client.batches.retrieve(batch.id)
    finally:
        first.kill()
    assert running.status == "in_progress" and time.time() < batch.expires_at
    while time.time() <= batch.expires_at + 1:
        time.sleep(0.2)
    restarted_at = time.time()

    second = ProxyProcess(config, tmp_path).start()
    try:
        client = sdk(second)
        finished = wait_for(client, batch.id, FINAL, 60)
        expired = _check_expired(client, finished, RESTART_LINES)
        done = running.request_counts.completed if running.request_counts else 0
        assert finished.request_counts is not None
        assert finished.request_counts.completed >= done
        assert events(second.log(), "batch line decode") == [], "the expired batch resumed"
        assert [c for c in _calls(tap, RESTART_LINES) if c.started > restarted_at] == []
        assert _metric(second, "cord_batch_requests_total", 'outcome="expired"') == len(expired)
    finally:
        second.stop()

    third = ProxyProcess(config, tmp_path).start()
    try:
        again = sdk(third).batches.retrieve(batch.id)
        assert again.status == "expired" and again.expired_at == finished.expired_at
        assert again.request_counts == finished.request_counts
    finally:
        third.stop()
