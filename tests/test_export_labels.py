"""``export --format prm``: rows checked against the best trace and its dropped siblings."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from cord_proxy.data.exports import ExportOptions, export_file
from tests.test_export_pairs import generated, rows_of, tie_record, write

datasets = pytest.importorskip("datasets")


def best_candidates(record: dict[str, Any]) -> list[tuple[dict[str, Any], list[Any]]]:
    """Round by round along `path`: the best trace's candidate and its siblings."""
    path, found = record["path"], []
    for entry, parent, child in zip(record["search"], path, path[1:], strict=False):
        family = [c for c in entry["candidates"] if c["parent"] == parent]
        [taken] = [c for c in family if c["child"] == child]
        found.append((taken, family))
    return found


def expected_steps(record: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The rule, rebuilt: each row's candidates. The trace's steps; then per round, per
    dropped scored sibling with text of its own, the steps before and the sibling."""
    taken = best_candidates(record)
    rows = [[c for c, _ in taken if c["step_text"].strip()]]
    before: list[dict[str, Any]] = []
    for chosen, family in taken:
        for sibling in family:
            text = sibling["step_text"].strip()
            if sibling["child"] is not None or sibling["log_score"] is None or not text:
                continue
            if text != chosen["step_text"].strip():
                rows.append([*before, sibling])
        if chosen["step_text"].strip():
            before.append(chosen)
    return rows


def expected_rows(record: dict[str, Any], soft: bool = False) -> list[tuple[list[str], list[Any]]]:
    """Each row's completions and labels: all true for the trace, the sibling false."""
    rows = []
    for number, steps in enumerate(expected_steps(record)):
        goods = [True] * (len(steps) - 1) + [number == 0]
        labels = [min(c["score"], 1.0) if soft else g for c, g in zip(steps, goods, strict=True)]
        rows.append(([c["step_text"].strip() for c in steps], labels))
    return rows


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    return generated(30, seed=11)


@pytest.mark.parametrize("soft", [False, True])
def test_rows_follow_the_labelling_rule(
    tmp_path: Path, records: list[dict[str, Any]], soft: bool
) -> None:
    traces = write(tmp_path / "traces.jsonl", records)
    output = tmp_path / "prm.jsonl"
    counts = export_file(traces, output, "prm", options=ExportOptions(soft=soft))
    rows = rows_of(output)
    expected = [(r["id"], row) for r in records for row in expected_rows(r, soft)]
    assert [(r["id"], (r["completions"], r["labels"])) for r in rows] == expected
    assert counts.written == len(rows) > len(records)
    questions = {r["id"]: r["messages"][0]["content"] for r in records}
    for row in rows:
        assert len(row["labels"]) == len(row["completions"]) > 0
        assert row["prompt"] == questions[row["id"]] + "\n\n"
        if soft:
            assert all(isinstance(v, float) and 0 <= v <= 1 for v in row["labels"])
        else:
            assert row["labels"][:-1] == [True] * (len(row["labels"]) - 1)
            assert row["labels"][-1] is (row["kind"] == "trace")
    trace_rows = [row for row in rows if row["kind"] == "trace"]
    assert [row["id"] for row in trace_rows] == [r["id"] for r in records]
    for row, record in zip(trace_rows, records, strict=True):
        assert "\n\n".join(row["completions"]) == "\n\n".join(
            s["text"].strip() for s in record["steps"] if s["text"].strip()
        )


def test_the_output_loads_with_trl_column_names(
    tmp_path: Path, records: list[dict[str, Any]]
) -> None:
    traces = write(tmp_path / "traces.jsonl", records)
    output = tmp_path / "prm.jsonl"
    export_file(traces, output, "prm")
    rows = datasets.load_dataset(
        "json", data_files=str(output), split="train", cache_dir=str(tmp_path / "hf")
    )
    assert rows.column_names[:3] == ["prompt", "completions", "labels"]
    assert rows.features["labels"].feature.dtype == "bool"
    assert rows.features["prompt"].dtype == "string"


def test_soft_labels_stay_probabilities_when_a_centred_score_passes_one(tmp_path: Path) -> None:
    record = tie_record()
    kept = record["search"][0]["candidates"][0]
    kept["log_score"], kept["score"] = 0.3, math.exp(0.3)  # step mode: centred, above the mean
    traces = write(tmp_path / "traces.jsonl", [record])
    output = tmp_path / "prm.jsonl"
    export_file(traces, output, "prm", options=ExportOptions(soft=True))
    rows = rows_of(output)
    assert rows[0] == {
        "prompt": "q\n\n",
        "completions": ["kept"],
        "labels": [1.0],
        "id": "5",
        "step": 1,
        "kind": "trace",
    }
    assert [row["completions"] for row in rows[1:]] == [
        ["better but dropped"],
        ["tie one"],
        ["tie two"],
    ]
    assert [row["labels"] for row in rows[1:]] == [[math.exp(-0.5)], [math.exp(-2)], [math.exp(-2)]]
