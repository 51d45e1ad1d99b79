"""dpo and prm exports of records the real decoder writes (fake teachers, one of them set
``trainable = false``): the rows match the record's tree, and its text is skipped."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import pytest

from cord_proxy.config import CordConfig, EnsembleConfig, TeacherConfig
from cord_proxy.data.exports import ExportOptions, export_file
from cord_proxy.data.records import trace_record
from cord_proxy.decoding.options import DecodeOptions
from cord_proxy.protocol import ChatCompletionRequest
from cord_proxy.runtime import Runtime, run_job
from tests.support.fakes import ScriptedFakeTeacher
from tests.support.search_tree import check_record
from tests.test_export_labels import expected_rows, expected_steps
from tests.test_export_pairs import check_pairs, rows_of, write
from tests.test_export_terms import untrainable_pairs

NAMES = ("alpha", "beta", "gamma")  # gamma: trainable = false


def _config() -> CordConfig:
    teachers = tuple(
        TeacherConfig(
            name=name,
            base_url="http://127.0.0.1:9/v1",
            model="m",
            temperature=0.5 + i / 10,
            trainable=name != "gamma",
        )
        for i, name in enumerate(NAMES)
    )
    ensemble = EnsembleConfig(
        name="trio",
        teachers=NAMES,
        defaults=DecodeOptions(beam_width=2, max_steps=4, thinking_budget=256, answer_budget=8),
    )
    return CordConfig(teachers=teachers, ensembles=(ensemble,))


def _teacher(name: str) -> ScriptedFakeTeacher:
    def proposals(prefix: str) -> str:
        if prefix.endswith("</think>\n\n"):
            return "42"
        if "Step 4" in prefix:
            return f"{name} is done </think>"
        return f"{name} adds {zlib.crc32(prefix.encode()) % 97} "

    def logprobs(prefix: str, target: str) -> list[float]:
        return [-(zlib.crc32((name + prefix).encode()) % 200) / 100 - 0.05]

    teacher = ScriptedFakeTeacher(
        name, proposals=proposals, logprobs=logprobs, score_identity=f"id-{name}"
    )
    # As the proxy builds a teacher: with its config, which holds `trainable`.
    teacher.config = next(t for t in _config().teachers if t.name == name)  # type: ignore[attr-defined]
    return teacher


async def _records(questions: int) -> list[dict[str, Any]]:
    records = []
    for number in range(questions):
        runtime = Runtime(_config(), {name: _teacher(name) for name in NAMES})
        body = {
            "model": "trio",
            "messages": [{"role": "user", "content": f"What is {40 - number} + {2 + number}?"}],
            "cord": {"reference_answer": "42"},
        }
        job = runtime.job_for_request(ChatCompletionRequest.model_validate(body))
        result = await run_job(job, timeout=60.0)
        records.append(
            trace_record(f"chatcmpl-{number}", job.ensemble, job.decode, result, problem_id=number)
        )
    return records


@pytest.fixture
async def records() -> list[dict[str, Any]]:
    return await _records(4)


async def test_dpo_rows_of_decoded_records_match_their_trees(
    tmp_path: Path, records: list[dict[str, Any]]
) -> None:
    for record in records:
        check_record(record)  # the decoder's tree, by the contract's own checks
    traces = write(tmp_path / "traces.jsonl", records)
    output = tmp_path / "dpo.jsonl"
    counts = export_file(traces, output, "dpo", options=ExportOptions(include_untrainable=True))
    rows = rows_of(output)
    assert counts.records == len(records) and len(rows) >= 2 * len(records)
    check_pairs(records, rows)
    skipped = sum(untrainable_pairs(r) for r in records)
    assert counts.untrainable == skipped > 0
    counts = export_file(traces, output, "dpo")
    assert (counts.written, counts.untrainable) == (len(rows) - skipped, skipped)
    assert all(
        "gamma" not in r["chosen_proposers"] or len(r["chosen_proposers"]) > 1
        for r in rows_of(output)
    )


async def test_prm_rows_of_decoded_records_follow_the_rule(
    tmp_path: Path, records: list[dict[str, Any]]
) -> None:
    traces = write(tmp_path / "traces.jsonl", records)
    output = tmp_path / "prm.jsonl"
    export_file(traces, output, "prm", options=ExportOptions(include_untrainable=True))
    expected = [(str(r["id"]), row) for r in records for row in expected_rows(r)]
    rows = rows_of(output)
    assert [(r["id"], (r["completions"], r["labels"])) for r in rows] == expected
    assert all(len(r["labels"]) == len(r["completions"]) > 0 for r in rows)
    assert any(r["kind"] == "sibling" for r in rows)
    counts = export_file(traces, output, "prm")
    every = [steps for r in records for steps in expected_steps(r)]
    skipped = sum(not all(c["trainable"] for c in steps) for steps in every)
    assert (counts.written, counts.untrainable) == (len(every) - skipped, skipped)


async def test_record_formats_skip_decoded_traces_that_hold_untrainable_text(
    tmp_path: Path, records: list[dict[str, Any]]
) -> None:
    traces = write(tmp_path / "traces.jsonl", records)
    held = [
        r
        for r in records
        if not r["answer_trainable"] or any(not s["trainable"] for s in r["steps"])
    ]
    assert held  # gamma wrote a step or the answer of some best trace
    counts = export_file(traces, tmp_path / "trl.jsonl", "trl")
    assert (counts.written, counts.untrainable) == (len(records) - len(held), len(held))
