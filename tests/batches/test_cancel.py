"""Cancel a running batch: it reaches `cancelled`, its in-flight teacher calls are aborted,
and no teacher call starts after the cancel returns (seen at the real teacher's door)."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

from tests.batches.conftest import batch_config, jsonl, question, request_line, sdk, wait_for
from tests.batches.teacher_tap import Call, TeacherTap
from tests.support.proxy_process import ProxyProcess

LINES = range(200, 208)
SLOWER = {"max_steps": 3, "max_step_tokens": 48, "answer_budget": 24}
HELD = 201


def _calls(tap: TeacherTap) -> list[Call]:
    return [c for i in LINES for c in tap.calls_mentioning(question(i))]


def test_cancel_stops_in_flight_decodes(tap: TeacherTap, tmp_path: Path) -> None:
    proxy = ProxyProcess(batch_config(tap.base_url, tmp_path / "data", 2), tmp_path).start()
    # The held line's first call waits at the tap: it is in flight when the cancel lands.
    with tap.holding(question(HELD)), contextlib.ExitStack() as stopping:
        stopping.callback(proxy.stop)
        client = sdk(proxy)
        lines = [request_line(i, cord=SLOWER) for i in LINES]
        uploaded = client.files.create(file=("slow.jsonl", jsonl(lines)), purpose="batch")
        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        tap.wait_for_call(question(HELD))
        cancelling = client.batches.cancel(batch.id)
        cancelled_at = time.time()
        assert cancelling.status in ("cancelling", "cancelled")
        aborted_by = time.monotonic() + 2  # the tap sees the closed connection a moment later
        while any(c.ended is None for c in _calls(tap)):
            assert time.monotonic() < aborted_by, "a teacher call outlived the cancel"
            time.sleep(0.05)
        finished = wait_for(client, batch.id, ("cancelled", "completed", "failed"), 60)
        assert finished.status == "cancelled" and finished.cancelled_at
        time.sleep(3)
        assert [c for c in _calls(tap) if c.started > cancelled_at] == []
        assert any(c.aborted for c in _calls(tap)), "no in-flight call was aborted"
        counts = finished.request_counts
        assert counts is not None and counts.total == 8 and counts.completed < 8
        text = ""
        if finished.output_file_id:
            text = client.files.content(finished.output_file_id).text
        outputs = [json.loads(line) for line in text.splitlines()]
        assert len(outputs) == counts.completed
        assert all(o["response"]["status_code"] == 200 for o in outputs)
        assert client.batches.cancel(batch.id).status == "cancelled"
