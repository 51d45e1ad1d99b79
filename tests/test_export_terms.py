"""Exports leave out text of ``trainable = false`` teachers and count it; records without a
search tree, broken trees, empty results and bad arguments end cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cord_proxy.data.exports import RECORD_FORMATS, ExportOptions, export_file
from tests.test_export_labels import expected_steps
from tests.test_export_pairs import expected_pairs, generated, match, rows_of, write

UNTRAINABLE = frozenset({"gemma-t0.7"})


def trainable_beams(record: dict[str, Any]) -> list[dict[int, bool]]:
    """Item r - 1: round r's beams by index, each True when all its steps are trainable."""
    rounds, beams = [], {0: True}
    for entry in record["search"]:
        rounds.append(beams)
        beams = {
            c["child"]: beams[c["parent"]] and c["trainable"]
            for c in entry["candidates"]
            if c["child"] is not None
        }
    return rounds


def untrainable_pairs(record: dict[str, Any]) -> int:
    beams = trainable_beams(record)
    return sum(
        not (beams[step - 1][kept["parent"]] and kept["trainable"] and dropped["trainable"])
        for (step, _, _, _), (kept, dropped) in expected_pairs(record).items()
    )


def row_trainable(records: list[dict[str, Any]], row: dict[str, Any]) -> bool:
    """Whether a dpo row's prefix, chosen and rejected steps are all trainable."""
    record = next(r for r in records if r["id"] == row["id"])
    pairs = expected_pairs(record)
    kept, dropped = pairs[match(row, record, pairs)]
    prefix = trainable_beams(record)[row["step"] - 1][kept["parent"]]
    return bool(prefix and kept["trainable"] and dropped["trainable"])


def export(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cord_proxy", "export", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    return generated(40, seed=3, untrainable=UNTRAINABLE)


def test_dpo_skips_and_counts_pairs_holding_untrainable_text(
    tmp_path: Path, records: list[dict[str, Any]]
) -> None:
    traces = write(tmp_path / "traces.jsonl", records)
    output = tmp_path / "dpo.jsonl"
    counts = export_file(traces, output, "dpo")
    total = sum(len(expected_pairs(r)) for r in records)
    skipped = sum(untrainable_pairs(r) for r in records)
    assert 0 < skipped < total
    assert (counts.written, counts.untrainable) == (total - skipped, skipped)
    assert f"{skipped} pairs skipped: text of a trainable = false teacher" in counts.render(
        output, "dpo"
    )
    for row in rows_of(output):
        assert row["chosen_proposers"] != ["gemma-t0.7"] != row["rejected_proposers"]
    counts = export_file(traces, output, "dpo", options=ExportOptions(include_untrainable=True))
    assert (counts.written, counts.untrainable) == (total, skipped)
    assert "with text of a trainable = false teacher kept" in counts.render(output, "dpo")
    capped = ExportOptions(include_untrainable=True, pairs_per_step=1)
    counts = export_file(traces, output, "dpo", options=capped)
    written = rows_of(output)
    assert counts.untrainable == sum(not row_trainable(records, row) for row in written) > 0
    assert counts.written == len(written) < total


def test_prm_skips_and_counts_rows_holding_untrainable_steps(
    tmp_path: Path, records: list[dict[str, Any]]
) -> None:
    traces = write(tmp_path / "traces.jsonl", records)
    output = tmp_path / "prm.jsonl"
    counts = export_file(traces, output, "prm")
    rows = [steps for r in records for steps in expected_steps(r)]
    skipped = sum(not all(c["trainable"] for c in steps) for steps in rows)
    assert 0 < skipped < len(rows)
    assert (counts.written, counts.untrainable) == (len(rows) - skipped, skipped)
    wanted = [
        [c["step_text"].strip() for c in steps]
        for steps in rows
        if all(c["trainable"] for c in steps)
    ]
    assert [row["completions"] for row in rows_of(output)] == wanted
    counts = export_file(traces, output, "prm", options=ExportOptions(include_untrainable=True))
    assert (counts.written, counts.untrainable) == (len(rows), skipped)


@pytest.mark.parametrize("format_name", RECORD_FORMATS)
def test_record_formats_skip_a_trace_or_answer_of_an_untrainable_teacher(
    tmp_path: Path, records: list[dict[str, Any]], format_name: str
) -> None:
    traces = write(tmp_path / "traces.jsonl", records)
    untrainable = [
        r
        for r in records
        if not r["answer_trainable"] or not all(s["trainable"] for s in r["steps"])
    ]
    assert 0 < len(untrainable) < len(records)
    assert any(r["answer_trainable"] for r in untrainable)  # a step alone is enough
    output = tmp_path / "out.jsonl"
    counts = export_file(traces, output, format_name)
    assert (counts.written, counts.untrainable) == (
        len(records) - len(untrainable),
        len(untrainable),
    )
    text = output.read_text()
    assert all(f'"{r["id"]}"' not in text for r in untrainable)
    counts = export_file(
        traces, output, format_name, options=ExportOptions(include_untrainable=True)
    )
    assert counts.written == len(records)


def old_record(record_id: str) -> dict[str, Any]:
    """A record of a file written before the search tree was kept."""
    return {
        "id": record_id,
        "messages": [{"role": "user", "content": "What is 1 + 1?"}],
        "reasoning": "1 + 1 = 2.",
        "answer": "2",
        "steps": [{"index": 1, "text": "1 + 1 = 2.", "proposers": ["a"]}],
    }


def test_records_without_a_tree_give_a_clean_empty_export(tmp_path: Path) -> None:
    traces = write(tmp_path / "old.jsonl", [old_record("o1"), old_record("o2")])
    output = tmp_path / "dpo.jsonl"
    done = export(["--input", str(traces), "--output", str(output), "--format", "dpo"])
    assert done.returncode == 0, done.stderr
    assert "exported 0 pairs from 0 records" in done.stdout
    assert "2 records without a search tree skipped" in done.stdout
    assert output.read_text() == ""
    counts = export_file(traces, tmp_path / "trl.jsonl", "trl")
    assert (counts.written, counts.untrainable) == (2, 0)


def test_a_broken_tree_skips_its_record_only(tmp_path: Path, records: list[dict[str, Any]]) -> None:
    broken = json.loads(json.dumps(records[0]))
    broken["id"] = "broken"
    broken["search"][1]["candidates"][0]["parent"] = 7
    traces = write(tmp_path / "traces.jsonl", [broken, records[1]])
    warnings: list[str] = []
    counts = export_file(traces, tmp_path / "prm.jsonl", "prm", warn=warnings.append)
    assert counts.skipped == 1 and counts.records == 1
    assert warnings == ["line 1: skipped: its search tree: round 2: no beam 7 to extend"]
    assert {row["id"] for row in rows_of(tmp_path / "prm.jsonl")} == {records[1]["id"]}


def test_the_command_line_options(tmp_path: Path, records: list[dict[str, Any]]) -> None:
    traces = write(tmp_path / "traces.jsonl", records[:5])
    output = tmp_path / "out.jsonl"
    base = ["--input", str(traces), "--output", str(output)]
    done = export([*base, "--format", "dpo", "--min-margin", "0.5", "--pairs-per-step", "1"])
    assert done.returncode == 0, done.stderr
    rows = rows_of(output)
    assert rows and all(row["margin"] >= 0.5 for row in rows)
    assert len({(row["id"], row["step"]) for row in rows}) == len(rows)
    done = export([*base, "--format", "prm", "--soft", "--include-untrainable"])
    assert done.returncode == 0, done.stderr
    assert "warning: --include-untrainable" in done.stderr and "terms" in done.stderr
    assert "rows with text of a trainable = false teacher kept" in done.stdout
    for bad, message in (
        (["--format", "trl", "--soft"], "--soft applies to --format prm only"),
        (["--format", "prm", "--min-margin", "1"], "--min-margin applies to --format dpo"),
        (["--format", "dpo", "--pairs-per-step", "0"], "--pairs-per-step must be at least 1"),
        (["--format", "dpo", "--min-margin", "nan"], "--min-margin must be a finite number"),
    ):
        done = export([*base, *bad])
        assert done.returncode == 2 and message in done.stderr, (bad, done.stderr)
    done = export(["--input", str(tmp_path / "nope"), "--output", str(output), "--format", "dpo"])
    assert done.returncode == 2 and "does not exist" in done.stderr
