"""Playground: one streamed decode in the page, through the real proxy and local teacher."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext, Response

from cord_proxy.testing.browser import watched_page
from tests.support.proxy_process import ProxyProcess
from tests.ui.configs import two_teachers

SEED = 11
QUESTION = "What is 12 + 30?"


@pytest.fixture(scope="module")
def proxy(local_teacher: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    workdir: Path = tmp_path_factory.mktemp("ui-playground")
    proxy = ProxyProcess(two_teachers(local_teacher), workdir).start()
    yield proxy
    proxy.stop()


def _sse_cord(body: bytes) -> dict[str, Any]:
    """The `cord` object of the finish chunk of a streamed answer."""
    for line in body.decode().splitlines():
        if line.startswith("data: {") and '"cord"' in line:
            chunk = json.loads(line[6:])
            if "cord" in chunk:
                return dict(chunk["cord"])
    raise AssertionError("no chunk carried cord")


def _candidates(cord: dict[str, Any]) -> int:
    return sum(len(step["candidates"]) for step in cord["steps"])


def _selected(cord: dict[str, Any]) -> int:
    return sum(c["selected"] for step in cord["steps"] for c in step["candidates"])


def test_playground_streams_steps_then_answer_then_tree(
    proxy: ProxyProcess, browser: BrowserContext
) -> None:
    watch = watched_page(browser)
    page = watch.page
    streamed: list[Response] = []
    page.on("response", lambda r: streamed.append(r) if "/v1/chat/completions" in r.url else None)
    page.goto(f"http://127.0.0.1:{proxy.port}/ui#playground")
    page.wait_for_selector("#view-playground:not([hidden])")
    page.fill("#pg-question", QUESTION)
    page.fill("#pg-reference", "42")
    page.fill("#pg-beam-width", "2")
    page.fill("#pg-max-steps", "2")
    page.fill("#pg-max-step-tokens", "24")
    page.fill("#pg-answer-budget", "12")
    page.fill("#pg-seed", str(SEED))
    page.click("#pg-run")
    page.wait_for_selector("#pg-tree[data-seq]", timeout=300_000)

    step_seqs = [
        int(s)
        for s in page.eval_on_selector_all("#pg-steps .step", "n => n.map(e => e.dataset.seq)")
    ]
    answer_seq = int(page.get_attribute("#pg-answer", "data-seq") or 0)
    tree_seq = int(page.get_attribute("#pg-tree", "data-seq") or 0)
    assert step_seqs, "no step was shown"
    assert max(step_seqs) < answer_seq < tree_seq
    assert page.text_content("#pg-answer")

    shown = page.locator("#pg-tree .cand").count()
    assert shown == int(page.get_attribute("#pg-tree", "data-candidates") or -1)
    assert len(streamed) == 1
    cord = _sse_cord(streamed[0].body())
    assert shown == _candidates(cord)
    assert page.locator("#pg-tree .cand .badge.survived").count() == _selected(cord)
    assert page.locator("#pg-tree .cand.path").count() == len(cord["steps"])
    assert page.locator("#pg-tree .cand .chip").count() >= shown
    assert "cost" in (page.text_content("#pg-summary") or "")
    watch.assert_clean()
    page.close()

    # The same request through the API, seeded: the same candidates.
    request = json.loads(streamed[0].request.post_data or "{}")
    request["stream"] = False
    request.pop("stream_options", None)
    answer = httpx.post(f"{proxy.base_url}/chat/completions", json=request, timeout=300)
    assert answer.status_code == 200, answer.text
    assert request["seed"] == SEED and request["cord"]["include_candidates"] is True
    assert _candidates(answer.json()["cord"]) == shown
