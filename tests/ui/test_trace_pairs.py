"""A step's preference pairs in the trace browser: the API over a file, then the page."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page

from cord_proxy.testing.browser import watched_page
from cord_proxy.ui.pairs import step_pairs
from tests.ui.search_records import older_record, searched_record
from tests.ui.viewer import running_view

SEARCHED, OLDER, UNTRAINABLE = 0, 1, 2
NONE = "\N{EN DASH}"  # how the page writes a missing number


def _records() -> list[dict[str, Any]]:
    return [searched_record("s0"), older_record("o1"), searched_record("u2", untrainable="c")]


def _expected(record: dict[str, Any], step: int) -> list[tuple[str, str, float | None]]:
    """(chosen text, rejected text, margin) of every kept x dropped sibling, from the record."""
    candidates = record["search"][step - 1]["candidates"]
    found = []
    for kept in (c for c in candidates if c["child"] is not None):
        for dropped in (c for c in candidates if c["child"] is None):
            if dropped["parent"] != kept["parent"]:
                continue
            both = kept["log_score"] is not None and dropped["log_score"] is not None
            margin = kept["log_score"] - dropped["log_score"] if both else None
            found.append((kept["step_text"], dropped["step_text"], margin))
    return sorted(found, key=str)


@pytest.fixture(scope="module")
def viewer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("ui-pairs")
    traces = workdir / "traces.jsonl"
    traces.write_text("".join(json.dumps(r) + "\n" for r in _records()), encoding="utf-8")
    with running_view(traces, workdir / "view.log") as url:
        yield url


def test_pairs_are_kept_beside_dropped_siblings_with_the_recorded_margin() -> None:
    record = _records()[SEARCHED]
    for step in (1, 2):
        found = step_pairs(record, SEARCHED, step)
        flat = [(p.chosen.text, p.rejected.text, p.margin) for g in found.parents for p in g.pairs]
        assert sorted(flat, key=str) == _expected(record, step) and flat
        for group in found.parents:
            margins = [p.margin for p in group.pairs if p.margin is not None]
            assert margins == sorted(margins, reverse=True)
            assert group.on_path == (group.parent == record["path"][step - 1])
    second = step_pairs(record, SEARCHED, 2).parents
    came = {c["child"]: c["step_text"] for c in record["search"][0]["candidates"]}
    assert [(g.parent, g.prefix) for g in second] == [(0, came[0]), (1, came[1])]
    assert step_pairs(record, SEARCHED, 1).parents[0].prefix == ""


def test_pairs_api_answers_and_refuses_with_openai_errors(viewer: str) -> None:
    answer = httpx.get(f"{viewer}/ui/api/traces/{SEARCHED}/pairs?step=2").json()
    assert answer["step"] == 2 and answer["rounds"] == 2 and len(answer["parents"]) == 2
    untrainable = httpx.get(f"{viewer}/ui/api/traces/{UNTRAINABLE}/pairs?step=2").json()
    assert [p["trainable"] for g in untrainable["parents"] for p in g["pairs"]] == [False, False]
    for query, status, param in (
        (f"{OLDER}/pairs", 404, "line"),
        (f"{SEARCHED}/pairs?step=3", 404, "step"),
        (f"{SEARCHED}/pairs?step=0", 404, "step"),
        (f"{SEARCHED}/pairs?step=one", 400, "step"),
        ("9/pairs", 404, "line"),
    ):
        refused = httpx.get(f"{viewer}/ui/api/traces/{query}")
        assert refused.status_code == status, query
        assert refused.json()["error"]["param"] == param, query


def _open(page: Page, line: int) -> None:
    page.click(f"#tr-rows tr[data-line='{line}']")
    page.wait_for_selector(f"#tr-detail[data-line='{line}'] #tr-tree .cand")


def _shown_pairs(page: Page) -> list[dict[str, Any]]:
    return page.eval_on_selector_all(
        "#tr-pairs .pair",
        """rows => rows.map(row => {
            const side = (role) => {
                const node = row.querySelector(`.pair-side.${role}`);
                const box = node.getBoundingClientRect();
                return {text: node.querySelector("pre").textContent, head: node.textContent,
                        x: box.left, y: box.top,
                        marks: node.querySelectorAll(".untrainable").length};
            };
            return {chosen: side("chosen"), rejected: side("rejected"),
                    margin: row.querySelector(".margin strong").textContent};
        })""",
    )


def _check_step(page: Page, record: dict[str, Any], step: int) -> list[dict[str, Any]]:
    page.select_option("#tr-pair-step", str(step))
    page.wait_for_selector(f"#tr-pairs[data-step='{step}'] .pair")
    shown = _shown_pairs(page)
    margins = [None if s["margin"] == NONE else float(s["margin"]) for s in shown]
    texts = [(s["chosen"]["text"], s["rejected"]["text"]) for s in shown]
    expected = _expected(record, step)
    assert sorted(texts) == sorted((c, r) for c, r, _ in expected)
    by_text = {(c, r): m for c, r, m in expected}
    for pair, margin in zip(texts, margins, strict=True):
        want = by_text[pair]
        assert (margin is None) == (want is None) and abs((margin or 0) - (want or 0)) < 1e-4
    candidates = {c["step_text"]: c for c in record["search"][step - 1]["candidates"]}
    for s in shown:
        for role in ("chosen", "rejected"):
            score = candidates[s[role]["text"]]["score"]
            assert (f"score {score:.4f}" if score is not None else f"score {NONE}") in s[role][
                "head"
            ]
        assert s["chosen"]["x"] < s["rejected"]["x"] and s["chosen"]["y"] == s["rejected"]["y"]
    return shown


def test_page_shows_a_steps_pairs_chosen_beside_rejected(
    viewer: str, browser: BrowserContext
) -> None:
    records = _records()
    watch = watched_page(browser)
    page = watch.page
    page.goto(f"{viewer}/ui")
    page.wait_for_selector("#tr-rows tr")

    _open(page, SEARCHED)
    page.wait_for_selector("#tr-pairs[data-step='1'] .pair")
    for step in (1, 2):
        shown = _check_step(page, records[SEARCHED], step)
        assert all(s[r]["marks"] == 0 for s in shown for r in ("chosen", "rejected"))
    path_texts = page.eval_on_selector_all(
        "#tr-tree .cand.path pre", "nodes => nodes.map(n => n.textContent)"
    )
    assert path_texts == [s["text"].removesuffix("\n\n") for s in records[SEARCHED]["steps"]]
    page.click("#tr-tree .tree-step:nth-child(1) button.link")
    page.wait_for_selector("#tr-pairs[data-step='1']")

    _open(page, OLDER)
    candidates = sum(len(s["candidates"]) for s in records[OLDER]["steps"])
    assert page.get_attribute("#tr-tree", "data-candidates") == str(candidates)
    assert page.locator("#tr-tree .cand.path").count() == len(records[OLDER]["steps"])
    assert not page.is_visible("#tr-pairs-box") and page.locator("#tr-pairs .pair").count() == 0
    assert page.locator("#tr-detail .untrainable").count() == 0

    _open(page, UNTRAINABLE)
    page.wait_for_selector("#tr-pairs[data-step='1'] .pair")
    assert "not trainable" in (page.text_content("#tr-detail-meta") or "")
    assert page.locator("#tr-tree .cand.path .badge.untrainable").count() == 1
    shown = _check_step(page, records[UNTRAINABLE], 2)
    search = records[UNTRAINABLE]["search"]
    untrainable = {c["step_text"] for r in search for c in r["candidates"] if not c["trainable"]}
    for s in shown:
        for role in ("chosen", "rejected"):
            assert s[role]["marks"] == (1 if s[role]["text"] in untrainable else 0)
    watch.assert_clean()
    page.close()
