"""SIGKILL the proxy mid-batch, restart it: the batch finishes, and no finished line is
decoded again (by the decode log and by the teacher calls each line's question reached)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from pathlib import Path

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
from tests.batches.teacher_tap import TeacherTap
from tests.support.proxy_process import ProxyProcess

LINES = range(100, 108)
HELD = 101  # in flight when the proxy is killed


def _completed(batch: Batch) -> int:
    return batch.request_counts.completed if batch.request_counts else 0


def _done_lines(database: Path) -> set[str]:
    """The lines the killed proxy had recorded as done, read from its store."""
    with contextlib.closing(sqlite3.connect(database)) as db:
        rows = db.execute("SELECT custom_id FROM lines WHERE status = 'done'").fetchall()
    return {row[0] for row in rows}


def test_sigkill_and_restart_resumes_without_redoing_lines(tap: TeacherTap, tmp_path: Path) -> None:
    config = batch_config(tap.base_url, tmp_path / "data", concurrency=2)
    first = ProxyProcess(config, tmp_path).start()
    # The held line cannot finish before the kill, however fast the others go.
    with tap.holding(question(HELD)), contextlib.ExitStack() as killing:
        killing.callback(first.kill)
        client = sdk(first)
        batch = submit(client, "eight.jsonl", [request_line(i) for i in LINES])
        deadline = time.monotonic() + 300
        while _completed(client.batches.retrieve(batch.id)) < 3:
            assert time.monotonic() < deadline, "3 lines were not done in time"
            time.sleep(0.1)
        assert tap.calls_mentioning(question(HELD)), "the held line never started"
    killed_at = time.time()
    done_before = _done_lines(tmp_path / "data" / "batches.sqlite")
    logged = {e["custom_id"] for e in events(first.log(), "batch line finished")}
    assert logged <= done_before and 3 <= len(done_before) < len(LINES)
    assert f"q-{HELD}" not in done_before

    second = ProxyProcess(config, tmp_path).start()
    try:
        client = sdk(second)
        finished = wait_for(client, batch.id, ("completed", "failed", "cancelled"))
        assert finished.status == "completed", finished.errors
        counts = finished.request_counts
        assert counts is not None and (counts.total, counts.completed) == (8, 8)
        assert finished.output_file_id is not None
        output = client.files.content(finished.output_file_id).text.splitlines()
        ids = [json.loads(line)["custom_id"] for line in output]
        assert sorted(ids) == sorted(f"q-{i}" for i in LINES) and len(set(ids)) == 8
    finally:
        second.stop()

    decoded_after = [e["custom_id"] for e in events(second.log(), "batch line decode")]
    assert not done_before & set(decoded_after), "a finished line was decoded again"
    assert set(decoded_after) == {f"q-{i}" for i in LINES} - done_before
    for index in LINES:
        calls_after = [c for c in tap.calls_mentioning(question(index)) if c.started > killed_at]
        if f"q-{index}" in done_before:
            assert calls_after == [], f"q-{index} reached the teacher after the restart"
        else:
            assert calls_after, f"q-{index} was never decoded after the restart"
