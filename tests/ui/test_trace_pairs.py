"""A step's preference pairs in the trace browser: the API over a file, then the page."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page

from cord_proxy.data.preferences import PairOptions, counted_preference_rows
from cord_proxy.testing.browser import watched_page
from cord_proxy.ui.pairs import step_pairs
from tests.support.search_tree import beam_texts
from tests.ui.search_records import decoded_record, older_record, searched_record
from tests.ui.viewer import running_view

SEARCHED, OLDER, UNTRAINABLE, DECODED = 0, 1, 2, 3


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    return [
        searched_record("s0"),
        older_record("o1"),
        searched_record("u2", untrainable="c"),
        decoded_record("d3"),
    ]


def _pairable(candidate: dict[str, Any]) -> bool:
    return candidate["log_score"] is not None and bool(candidate["step_text"].strip())


def _expected(record: dict[str, Any], step: int) -> list[tuple[str, str, float]]:
    """(chosen text, rejected text, margin) of every scored kept x dropped sibling with other
    text, read from the record alone."""
    candidates = [c for c in record["search"][step - 1]["candidates"] if _pairable(c)]
    return sorted(
        (kept["step_text"], dropped["step_text"], kept["log_score"] - dropped["log_score"])
        for kept in candidates
        for dropped in candidates
        if kept["child"] is not None
        and dropped["child"] is None
        and dropped["parent"] == kept["parent"]
        and dropped["step_text"].strip() != kept["step_text"].strip()
    )


def _exported(record: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The pairs `export --format dpo` writes of the record, untrainable ones included."""
    rows, _ = counted_preference_rows(record, [], PairOptions(include_untrainable=True))
    keys = ("step", "chosen_score", "rejected_score", "margin")
    return sorted(
        (*(r[k] for k in keys), r["chosen_proposers"], r["rejected_proposers"]) for r in rows
    )


@pytest.fixture(scope="module")
def viewer(
    records: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("ui-pairs")
    traces = workdir / "traces.jsonl"
    traces.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    with running_view(traces, workdir / "view.log") as url:
        yield url


def test_pairs_are_kept_beside_dropped_siblings_as_the_export_makes_them(
    records: list[dict[str, Any]],
) -> None:
    for line in (SEARCHED, UNTRAINABLE, DECODED):
        record, shown = records[line], []
        beams = beam_texts(record["search"])
        for step in range(1, len(record["search"]) + 1):
            found = step_pairs(record, line, step)
            flat = [
                (p.chosen.text, p.rejected.text, p.margin) for g in found.parents for p in g.pairs
            ]
            assert sorted(flat) == _expected(record, step) and flat
            for group in found.parents:
                assert [p.margin for p in group.pairs] == sorted(
                    (p.margin for p in group.pairs), reverse=True
                )
                assert group.on_path == (group.parent == record["path"][step - 1])
                assert group.prefix == beams[step - 1][group.parent]
                shown += [
                    (
                        step,
                        p.chosen.log_score,
                        p.rejected.log_score,
                        p.margin,
                        p.chosen.proposers,
                        p.rejected.proposers,
                    )
                    for p in group.pairs
                ]
        assert sorted(shown) == _exported(record)
    untrainable = [
        p.trainable for g in step_pairs(records[DECODED], DECODED, 1).parents for p in g.pairs
    ]
    assert False in untrainable and True in untrainable


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


def _check_step(page: Page, record: dict[str, Any], step: int) -> None:
    """The step's pairs on the page: the record's, chosen left of rejected, with the recorded
    scores and margin, and the mark on text of an untrainable teacher."""
    page.select_option("#tr-pair-step", str(step))
    page.wait_for_selector(f"#tr-pairs[data-step='{step}'] .pair")
    shown = _shown_pairs(page)
    texts = [(s["chosen"]["text"], s["rejected"]["text"]) for s in shown]
    expected = _expected(record, step)
    assert sorted(texts) == [(c, r) for c, r, _ in expected]
    by_text = {(c, r): m for c, r, m in expected}
    for pair, s in zip(texts, shown, strict=True):
        assert s["margin"] == f"{by_text[pair]:.4f}"
    candidates = {c["step_text"]: c for c in record["search"][step - 1]["candidates"]}
    for s in shown:
        for role in ("chosen", "rejected"):
            candidate = candidates[s[role]["text"]]
            assert f"score {candidate['score']:.4f}" in s[role]["head"]
            assert s[role]["marks"] == (0 if candidate["trainable"] else 1)
        assert s["chosen"]["x"] < s["rejected"]["x"] and s["chosen"]["y"] == s["rejected"]["y"]


def test_page_shows_a_steps_pairs_chosen_beside_rejected(
    viewer: str, browser: BrowserContext, records: list[dict[str, Any]]
) -> None:
    watch = watched_page(browser)
    page = watch.page
    page.goto(f"{viewer}/ui")
    page.wait_for_selector("#tr-rows tr")

    _open(page, SEARCHED)
    page.wait_for_selector("#tr-pairs[data-step='1'] .pair")
    for step in (1, 2):
        _check_step(page, records[SEARCHED], step)
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

    for line in (UNTRAINABLE, DECODED):
        record = records[line]
        _open(page, line)
        page.wait_for_selector("#tr-pairs[data-step='1'] .pair")
        assert "not trainable" in (page.text_content("#tr-detail-meta") or "")
        untrainable_steps = sum(not s["trainable"] for s in record["steps"])
        assert page.locator("#tr-tree .cand.path .badge.untrainable").count() == untrainable_steps
        for step in range(1, len(record["search"]) + 1):
            _check_step(page, record, step)
    watch.assert_clean()
    page.close()
