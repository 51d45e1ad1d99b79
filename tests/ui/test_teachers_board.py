"""Teacher board: live counters from a real decode; a teacher whose server stops turns not ready.

The second teacher is the FAKE teacher server of tests/support/fake_teacher_http.py, because
the test must stop a teacher's server on demand and the shared local teacher must never be stopped.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext

from cord_proxy.testing.browser import watched_page
from tests.support.fake_teacher_http import CountingFakeTeacher
from tests.support.proxy_process import ProxyProcess
from tests.ui.configs import two_teachers

SPARE = """
[[teachers]]
name = "spare"
base_url = "FAKE_URL"
model = "fast"
timeout = 30
"""


@pytest.fixture(scope="module")
def spare_teacher() -> Iterator[CountingFakeTeacher]:
    fake = CountingFakeTeacher()
    fake.start_in_thread()
    yield fake


@pytest.fixture(scope="module")
def board_proxy(
    local_teacher: str, spare_teacher: CountingFakeTeacher, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyProcess]:
    workdir: Path = tmp_path_factory.mktemp("ui-board")
    spare = SPARE.replace("FAKE_URL", f"http://127.0.0.1:{spare_teacher.port}/v1")
    proxy = ProxyProcess(two_teachers(local_teacher) + spare, workdir).start()
    yield proxy
    proxy.stop()


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.split("\t")]


def test_board_counts_a_decode_and_shows_a_stopped_teacher_within_10_s(
    board_proxy: ProxyProcess, spare_teacher: CountingFakeTeacher, browser: BrowserContext
) -> None:
    tiny = {"teachers": ["gemma-t0.5"], "scorers": ["gemma-t0.5"], "beam_width": 1}
    tiny |= {"max_steps": 1, "reference_answer": "4"}
    answer = httpx.post(
        f"{board_proxy.base_url}/chat/completions",
        json={
            "model": "cord",
            "messages": [{"role": "user", "content": "2 + 2?"}],
            "cord": tiny,
            "seed": 7,
        },
        timeout=300,
    )
    assert answer.status_code == 200, answer.text
    usage = next(t for t in answer.json()["cord"]["teachers"] if t["name"] == "gemma-t0.5")

    watch = watched_page(browser)
    page = watch.page
    page.goto(f"http://127.0.0.1:{board_proxy.port}/ui#teachers")
    row = "#tc-rows tr[data-teacher='{}'][data-ready='{}']"
    page.wait_for_selector(row.format("gemma-t0.5", "true"))
    page.wait_for_selector(row.format("spare", "true"))
    cells = page.eval_on_selector_all(
        "#tc-rows tr[data-teacher='gemma-t0.5'] td", "cells => cells.map(c => c.textContent)"
    )
    assert cells[4] == "ready"
    assert int(cells[5]) == usage["propose_calls"] + usage["score_calls"] > 0
    assert cells[7].endswith(" s") and cells[8].endswith(" s")
    assert cells[9] == f"{usage['selected']} / {usage['proposals']}"
    tokens = usage["prompt_tokens"] + usage["completion_tokens"] + usage["score_tokens"]
    assert int(cells[10].replace(",", "")) == tokens

    spare_teacher.stop_thread()
    stopped = time.monotonic()
    page.wait_for_selector(row.format("spare", "false"), timeout=10_000)
    took = time.monotonic() - stopped
    assert took <= 10.0
    assert page.text_content("#tc-rows tr[data-teacher='spare'] .badge") == "not ready"
    assert page.locator(row.format("gemma-t0.5", "true")).count() == 1
    print(f"board showed the stopped teacher as not ready after {took:.1f} s")
    watch.assert_clean()
    page.close()
