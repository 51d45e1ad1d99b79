"""SIGKILL the proxy while a background response is in progress, start it again: the response
reaches ``completed``, and one that had completed before the kill reaches no teacher again
(by a recording pass-through in front of the real local teacher)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from tests.batches.teacher_tap import TeacherTap
from tests.responses.conftest import LONGER, TINY, sdk, start_proxy, wait_until

DONE_QUESTION = "What is 31 + 11?"
RUNNING_QUESTION = "What is 27 + 15?"


def test_sigkill_mid_background_then_restart_completes_it(tap: TeacherTap, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = start_proxy(tap.base_url, tmp_path, data)
    # The running response cannot finish before the kill, however fast it goes.
    with tap.holding(RUNNING_QUESTION), contextlib.ExitStack() as killing:
        killing.callback(first.kill)
        client = sdk(first)
        done = client.responses.create(
            model="cord",
            input=DONE_QUESTION,
            background=True,
            extra_body={"cord": {**TINY, "reference_answer": "42"}},
        )
        finished = wait_until(client, done.id, ("completed", "incomplete", "failed"))
        assert finished.status in ("completed", "incomplete"), finished.error
        running = client.responses.create(
            model="cord",
            input=RUNNING_QUESTION,
            background=True,
            extra_body={"cord": {**LONGER, "reference_answer": "42"}},
        )
        tap.wait_for_call(RUNNING_QUESTION)
        assert client.responses.retrieve(running.id).status == "in_progress"
    killed_at = time.time()

    second = start_proxy(tap.base_url, tmp_path, data)
    try:
        client = sdk(second)
        resumed = wait_until(client, running.id, ("completed", "incomplete", "failed"))
        assert resumed.status in ("completed", "incomplete"), resumed.error
        assert [item.type for item in resumed.output] == ["reasoning", "message"]
        again = client.responses.retrieve(done.id)
        assert again.status == finished.status and again.output_text == finished.output_text
    finally:
        second.stop()
    assert "background response resumed" in second.log()
    assert [c for c in tap.calls_mentioning(RUNNING_QUESTION) if c.started > killed_at]
    assert not [c for c in tap.calls_mentioning(DONE_QUESTION) if c.started > killed_at], (
        "a completed response reached the teacher again after the restart"
    )
