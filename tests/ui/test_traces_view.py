"""`cord-proxy view` over 50 records made by `cord-proxy distill`, one of them hostile."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from cord_proxy.testing.browser import watched_page
from tests.ui.viewer import running_view

RECORDS = 50
HOSTILE_LINE = 17
SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
CORD = {
    "max_steps": 2,
    "beam_width": 2,
    "teachers": ["gemma-t0.5", "gemma-t0.7"],
    "max_step_tokens": 16,
    "answer_budget": 8,
    "include_candidates": True,
}


def _distill(workdir: Path, teacher_url: str) -> list[dict[str, Any]]:
    problems = workdir / "problems.jsonl"
    problems.write_text(
        json.dumps({"id": "a", "question": "What is 12 + 30?", "answer": "42"})
        + "\n"
        + json.dumps({"id": "b", "question": "What is 7 * 8?", "answer": "56"})
        + "\n",
        encoding="utf-8",
    )
    output = workdir / "distilled.jsonl"
    command = [sys.executable, "-m", "cord_proxy", "distill", "--input", str(problems)]
    command += ["--output", str(output), "--teacher-url", teacher_url, "--cord", json.dumps(CORD)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]


def _fifty(made: list[dict[str, Any]], path: Path) -> None:
    """Copies of the distilled records under new ids; one gets markup in its text."""
    lines = []
    for i in range(RECORDS):
        record = json.loads(json.dumps(made[i % len(made)]))
        record["id"] = f"t{i:02d}"
        if i == HOSTILE_LINE:
            record["reasoning"] = f"{SCRIPT}\n{record['reasoning']}\n{IMG}"
            first = record["steps"][0]
            first["text"] = f"{SCRIPT} {IMG} " + first["text"]
            rounds = [first["candidates"], (record.get("search") or [{}])[0].get("candidates", [])]
            for candidate in (c for candidates in rounds for c in candidates):
                candidate["text"] = f"{SCRIPT} {IMG} " + candidate["text"]
            record["messages"][-1]["content"] = f"{IMG} What is 12 + 30?"
        lines.append(json.dumps(record) + "\n")
    path.write_text("".join(lines), encoding="utf-8")


@pytest.fixture(scope="module")
def viewer(local_teacher: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("ui-view")
    traces = workdir / "traces.jsonl"
    _fifty(_distill(workdir, local_teacher), traces)
    with running_view(traces, workdir / "view.log") as url:
        yield url


def _rows(page: Page) -> list[str]:
    return page.eval_on_selector_all(
        "#tr-rows tr", "rows => rows.map(r => r.children[1].textContent)"
    )


def _chips(page: Page) -> list[list[str]]:
    """Each listed row's teacher chips: the teachers that wrote its kept steps."""
    return page.eval_on_selector_all(
        "#tr-rows tr", "rows => rows.map(r => [...r.children[5].children].map(c => c.textContent))"
    )


def _loaded(page: Page, query: str) -> None:
    """Wait until the list shows the answer to a query holding `query`."""
    page.wait_for_selector(f"#tr-count[data-query*='{query}']", state="attached")


def _search(page: Page, text: str, ids: list[str]) -> None:
    page.fill("#tr-search", text)
    _loaded(page, f"q={text}" if text else "offset=0&limit=50")
    page.wait_for_selector(f"#tr-count[data-matched='{len(ids)}']", state="attached")
    assert _rows(page) == ids


def test_list_shows_fifty_and_hostile_text_stays_text(viewer: str, browser: BrowserContext) -> None:
    watch = watched_page(browser)
    page = watch.page
    page.goto(f"{viewer}/ui")
    page.wait_for_selector("#tr-rows tr")
    assert page.is_visible("#view-traces") and not page.is_visible("#nav-playground")
    assert page.locator("#tr-rows tr").count() == RECORDS
    assert page.get_attribute("#tr-count", "data-matched") == str(RECORDS)
    assert _rows(page) == [f"t{i:02d}" for i in range(RECORDS)]

    page.click(f"#tr-rows tr[data-line='{HOSTILE_LINE}']")
    page.wait_for_selector(f"#tr-detail[data-line='{HOSTILE_LINE}'] #tr-tree .cand")
    reasoning = page.text_content("#tr-reasoning") or ""
    assert SCRIPT in reasoning and IMG in reasoning
    assert IMG in (page.text_content("#tr-question") or "")
    assert SCRIPT in (page.text_content("#tr-tree") or "")
    assert page.locator("#tr-detail script, #tr-detail img, #tr-rows img").count() == 0
    assert page.locator("script").count() == 1  # the page's own module
    expect(page.locator("#tr-chart circle")).to_have_count(2)  # waits for the chart
    watch.assert_clean()
    page.close()


def test_search_sort_filter_and_file_statistics(viewer: str, browser: BrowserContext) -> None:
    watch = watched_page(browser)
    page = watch.page
    page.goto(f"{viewer}/ui")
    page.wait_for_selector("#tr-rows tr")
    page.wait_for_selector("#tr-histogram rect", state="attached")
    counts = page.eval_on_selector_all("#tr-histogram rect title", "t => t.map(x => x.textContent)")
    assert sum(int(c.rsplit(": ", 1)[1]) for c in counts) == RECORDS
    assert page.locator("#tr-winrates .share-row").count() >= 1

    _search(page, "t03", ["t03"])
    _search(page, "ALERT", [f"t{HOSTILE_LINE}"])
    _search(page, "", [f"t{i:02d}" for i in range(RECORDS)])

    page.select_option("#tr-sort", "score")
    page.select_option("#tr-order", "desc")
    _loaded(page, "sort=score&order=desc")
    scores = page.eval_on_selector_all(
        "#tr-rows tr", "r => r.map(x => Number(x.children[3].textContent))"
    )
    assert scores == sorted(scores, reverse=True) and len(scores) == RECORDS

    unfiltered = _chips(page)
    options = page.eval_on_selector_all("#tr-teacher option", "o => o.map(x => x.value)")[1:]
    for teacher in options:  # one that proposed but never wrote a kept step matches nothing
        page.select_option("#tr-teacher", teacher)
        _loaded(page, f"teacher={teacher}")
        wrote = sum(1 for chips in unfiltered if teacher in chips)
        page.wait_for_selector(f"#tr-count[data-matched='{wrote}']", state="attached")
        assert _chips(page) == [chips for chips in unfiltered if teacher in chips]
    assert any(teacher in chips for teacher in options for chips in unfiltered)
    watch.assert_clean()
    page.close()
