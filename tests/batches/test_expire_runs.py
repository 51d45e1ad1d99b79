"""How a batch run ends once its window has run out, on a real store and file area (no line is
decoded: a run past its window starts none, so no teacher is needed). Lines not done expire;
a batch whose lines had all ended completes; a cancel already asked for wins; one still
validating expires without being read."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from cord_proxy.batches.files import FileArea
from cord_proxy.batches.runner import BatchRun, Context, RunSettings
from cord_proxy.batches.store import Store
from cord_proxy.metrics import Metrics
from cord_proxy.runtime import Runtime

SETTINGS = RunSettings(concurrency=2, retries=0, max_line_bytes=4096, timeout_s=5.0)


@pytest.fixture
async def context(tmp_path: Path) -> AsyncIterator[Context]:
    store = Store(tmp_path / "batches.sqlite")
    # No runtime: a run past its window never builds a job.
    runtime = cast(Runtime, None)
    yield Context(
        store, FileArea(tmp_path), runtime, SETTINGS, asyncio.Semaphore(2), None, Metrics()
    )
    await store.close()


async def _batch(context: Context, status: str, ended: dict[int, str], lines: int = 4) -> None:
    now = int(time.time())
    await context.store.add_batch(
        {
            "id": "batch_1",
            "owner": "",
            "input_file_id": "file-absent",
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            "status": "validating",
            "created_at": now - 10,
            "expires_at": now - 1,
        }
    )
    if status == "validating":
        return
    await context.store.add_lines("batch_1", [(f"q-{i}", "{}") for i in range(lines)])
    for idx, line_status in ended.items():
        output = json.dumps({"custom_id": f"q-{idx}", "status": line_status})
        await context.store.finish_line("batch_1", idx, line_status, output, 1)
    assert await context.store.move("batch_1", "in_progress", ["validating"])
    if status == "cancelling":
        assert await context.store.move("batch_1", "cancelling", ["in_progress"])


def _file(context: Context, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    text = context.area.path(file_id).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


async def test_lines_not_done_expire_and_the_done_ones_stay(context: Context) -> None:
    await _batch(context, "in_progress", {0: "done", 2: "failed"})
    await BatchRun(context, "batch_1").run()
    row = await context.store.get_batch("batch_1")
    assert row is not None and row["status"] == "expired" and row["expired_at"]
    assert row["completed_at"] is None and row["expired_at"] >= row["expires_at"]
    assert [line["custom_id"] for line in _file(context, row["output_file_id"])] == ["q-0"]
    errors = _file(context, row["error_file_id"])
    assert [e["custom_id"] for e in errors] == ["q-2", "q-1", "q-3"]
    assert [e["error"]["code"] for e in errors[1:]] == ["batch_expired"] * 2
    assert all(e["response"] is None for e in errors[1:])
    assert await context.store.counts("batch_1") == {"done": 1, "failed": 3}
    assert context.metrics.batch_requests == {"expired": 2}


async def test_a_batch_whose_lines_all_ended_completes(context: Context) -> None:
    await _batch(context, "in_progress", {0: "done", 1: "done", 2: "failed", 3: "done"})
    await BatchRun(context, "batch_1").run()
    row = await context.store.get_batch("batch_1")
    assert row is not None and row["status"] == "completed" and row["expired_at"] is None
    assert len(_file(context, row["output_file_id"])) == 3
    assert context.metrics.batch_requests == {}


async def test_a_cancel_asked_for_before_the_window_ran_out_wins(context: Context) -> None:
    await _batch(context, "cancelling", {0: "done"})
    await BatchRun(context, "batch_1").run()
    row = await context.store.get_batch("batch_1")
    assert row is not None and row["status"] == "cancelled" and row["expired_at"] is None
    assert row["error_file_id"] is None
    assert await context.store.counts("batch_1") == {"done": 1, "pending": 3}


async def test_a_batch_still_validating_expires_unread(context: Context) -> None:
    await _batch(context, "validating", {})
    await BatchRun(context, "batch_1").run()
    row = await context.store.get_batch("batch_1")
    assert row is not None and row["status"] == "expired" and row["expired_at"]
    assert row["total"] == 0 and row["output_file_id"] is None and row["error_file_id"] is None
