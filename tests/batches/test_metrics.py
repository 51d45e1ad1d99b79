"""A batch's decodes count in /metrics as chat completions' do: the per-teacher work counters
grow by what the batch's lines cost at the real teacher, and each line's outcome is counted."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.batches.conftest import (
    batch_config,
    question,
    request_line,
    sdk,
    submit,
    wait_for,
)
from tests.batches.teacher_tap import TeacherTap
from tests.support.proxy_process import ProxyProcess

LINES = range(500, 503)
TEACHER_WORK = (
    "cord_teacher_calls_total",
    "cord_teacher_latency_seconds_total",
    "cord_teacher_selected_steps_total",
)


def _scrape(proxy: ProxyProcess) -> dict[str, float]:
    answer = httpx.get(f"http://127.0.0.1:{proxy.port}/metrics", timeout=10)
    assert answer.status_code == 200
    found = re.findall(r"^(cord_\w+(?:\{[^}]*\})?) (\S+)$", answer.text, re.M)
    return {name: float(value) for name, value in found}


def test_batch_decodes_count_in_the_teacher_metrics(tap: TeacherTap, tmp_path: Path) -> None:
    proxy = ProxyProcess(batch_config(tap.base_url, tmp_path / "data", 2), tmp_path).start()
    try:
        before = _scrape(proxy)
        client = sdk(proxy)
        batch = submit(client, "three.jsonl", [request_line(i) for i in LINES])
        batch = wait_for(client, batch.id, ("completed", "failed", "cancelled", "expired"))
        after = _scrape(proxy)
    finally:
        proxy.stop()
    assert batch.status == "completed" and batch.request_counts is not None
    completed, failed = batch.request_counts.completed, batch.request_counts.failed
    assert completed >= 1 and completed + failed == len(LINES)
    assert after.get('cord_batch_requests_total{outcome="completed"}') == completed
    assert after.get('cord_batch_requests_total{outcome="failed"}', 0.0) == failed
    for name in TEACHER_WORK:
        key = f'{name}{{teacher="t"}}'
        assert after.get(key, 0.0) > before.get(key, 0.0), f"{name} did not count the batch"
    calls = after['cord_teacher_calls_total{teacher="t"}']
    reached = [c for i in LINES for c in tap.calls_mentioning(question(i))]
    print(f"{completed} lines done, {calls:g} teacher calls counted, {len(reached)} seen")
    assert completed <= calls <= len(reached)
    assert after['cord_teacher_selected_steps_total{teacher="t"}'] >= completed
    chat = [k for k in after if k.startswith('cord_requests_total{route="/v1/chat/completions"')]
    assert chat == [], "a batch line counted as an HTTP chat request"
