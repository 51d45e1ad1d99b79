"""The dataset sink: whole lines only, never interleaved, and the record's content."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from cord_proxy.api.app import create_app
from cord_proxy.config import CordConfig, EnsembleConfig, TeacherConfig
from cord_proxy.data.jsonl import ReadReport, append_record, encode_line, iter_jsonl, read_records
from cord_proxy.data.records import record_from_completion, settings_hash, trace_record
from cord_proxy.data.sink import JsonlSink
from cord_proxy.decoding.options import DecodeOptions
from cord_proxy.protocol import ChatCompletionRequest
from cord_proxy.runtime import Runtime, run_job
from tests.support.fakes import ScriptedFakeTeacher
from tests.support.search_tree import check_record

# --- appending -------------------------------------------------------------------------------


def test_a_record_is_one_line_of_strict_json() -> None:
    line = encode_line({"text": "two\nlines", "bad": float("-inf"), "nested": [float("nan")]})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"text": "two\nlines", "bad": None, "nested": [None]}


async def test_concurrent_appends_never_interleave(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "sink" / "traces.jsonl")
    size = {i: 1 + (i * 7919) % 200_000 for i in range(120)}
    await asyncio.gather(*(sink({"id": i, "blob": chr(65 + i % 26) * size[i]}) for i in size))
    back = read_records(sink.path)
    assert sorted(r["id"] for r in back) == list(range(120))
    assert all(r["blob"] == chr(65 + r["id"] % 26) * size[r["id"]] for r in back)


APPENDER = """
import sys
from cord_proxy.data.jsonl import append_record
for i in range(60):
    append_record(sys.argv[1], {"writer": sys.argv[2], "i": i, "blob": "x" * (i * 3001)},
                  fsync=False)
"""


def test_appends_from_several_processes_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "shared.jsonl"
    procs = [
        subprocess.Popen([sys.executable, "-c", APPENDER, str(path), str(w)]) for w in range(4)
    ]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    report = ReadReport()
    back = read_records(path, report)
    assert not report.bad_lines and not report.partial_tail
    assert sorted((r["writer"], r["i"]) for r in back) == [
        (str(w), i) for w in range(4) for i in range(60)
    ]


def test_a_partial_last_line_is_skipped_by_readers_and_cut_by_the_next_append(
    tmp_path: Path,
) -> None:
    path = tmp_path / "traces.jsonl"
    append_record(path, {"id": "a"})
    with path.open("ab") as file:
        file.write(b'{"id": "b", "reasoning": "cut sh')  # a crash in the middle of a write
    report = ReadReport()
    assert [r["id"] for r in read_records(path, report)] == ["a"]
    assert report.partial_tail
    append_record(path, {"id": "c"})
    assert path.read_bytes() == b'{"id": "a"}\n{"id": "c"}\n'


def test_a_complete_looking_last_line_without_newline_is_still_partial(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "b"}')
    assert [r["id"] for r in read_records(path)] == ["a"]
    # input files written by hand may end without a newline
    assert [v["id"] for _, v in iter_jsonl(path, written_by_us=False)] == ["a", "b"]


def test_unreadable_lines_are_reported_by_number(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    path.write_bytes(b'{"id": 1}\nnot json\n\n[1, 2]\n{"id": 2}\n')
    report = ReadReport()
    assert [r["id"] for r in read_records(path, report)] == [1, 2]
    assert [n for n, _ in report.bad_lines] == [2, 4]


def test_a_short_write_is_rolled_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "traces.jsonl"
    append_record(path, {"id": "a"})
    real_write = os.write

    def half_write(fd: int, data: bytes) -> int:
        return real_write(fd, bytes(data)[: len(data) // 2])

    monkeypatch.setattr(os, "write", half_write)
    with pytest.raises(OSError, match="short write"):
        append_record(path, {"id": "b", "text": "y" * 1000})
    monkeypatch.undo()
    assert path.read_bytes() == b'{"id": "a"}\n'


# --- the record --------------------------------------------------------------------------------


def _config() -> CordConfig:
    teachers = tuple(
        TeacherConfig(name=n, base_url="http://127.0.0.1:9/v1", model="m", temperature=t)
        for n, t in (("alpha", 0.5), ("beta", 0.7))
    )
    ensemble = EnsembleConfig(
        name="duo",
        teachers=("alpha", "beta"),
        defaults=DecodeOptions(beam_width=2, max_steps=3, thinking_budget=64, answer_budget=8),
    )
    return CordConfig(teachers=teachers, ensembles=(ensemble,))


def _fakes() -> dict[str, ScriptedFakeTeacher]:
    def proposals(prefix: str) -> str:
        if prefix.endswith("</think>\n\n"):
            return "42"
        return "add the numbers " if "Step 2" not in prefix else "done </think>"

    return {
        name: ScriptedFakeTeacher(
            name,
            proposals=proposals,
            logprobs=lambda p, t, n=name: [-0.1 if n == "alpha" else -0.3],
            score_identity=f"id-{name}",
        )
        for name in ("alpha", "beta")
    }


async def _decode(body: dict[str, Any]) -> tuple[Any, Any]:
    runtime = Runtime(_config(), _fakes())
    job = runtime.job_for_request(ChatCompletionRequest.model_validate(body))
    return job, await run_job(job, timeout=60.0)


BODY = {
    "model": "duo",
    "messages": [{"role": "user", "content": "What is 40 + 2?"}],
    "cord": {"reference_answer": "42"},
}


async def test_the_record_holds_everything_the_issue_lists() -> None:
    job, result = await _decode(BODY)
    record = trace_record("chatcmpl-1", job.ensemble, job.decode, result, problem_id="p1")
    assert json.loads(encode_line(record)) == record
    assert record["id"] == "p1" and record["request_id"] == "chatcmpl-1"
    assert record["ensemble"] == "duo"
    assert record["messages"] == [{"role": "user", "content": "What is 40 + 2?"}]
    assert record["reference_answer"] == "42"
    assert record["reasoning"] == result.best.reasoning and record["answer"] == "42"
    steps = record["steps"]
    assert steps and all({"text", "proposers", "score", "scorers"} <= set(s) for s in steps)
    assert {p["scorer"] for p in steps[0]["scorers"]} == {"alpha", "beta"}
    teachers = {t["name"]: t for t in record["teachers"]}
    assert set(teachers) == {"alpha", "beta"}
    assert all(
        {"completion_tokens", "prompt_tokens", "cost_usd"} <= set(t) for t in teachers.values()
    )
    assert sum(t["completion_tokens"] for t in teachers.values()) > 0
    assert record["cost_usd"] == 0.0
    timings = record["timings"]
    assert timings["wall_s"] > 0 and timings["rounds"]
    assert timings["finished_at"] >= timings["started_at"]
    assert record["settings_hash"].startswith("sha256:")
    assert record["settings"]["options"]["beam_width"] == 2
    assert len(record["alternatives"]) == len(result.traces) - 1


async def test_the_settings_hash_follows_the_decoding_settings() -> None:
    job_a, result_a = await _decode(BODY)
    job_b, result_b = await _decode(BODY)
    job_c, result_c = await _decode({**BODY, "cord": {"reference_answer": "42", "max_steps": 2}})
    a = trace_record("r1", job_a.ensemble, job_a.decode, result_a)
    b = trace_record("r2", job_b.ensemble, job_b.decode, result_b)
    c = trace_record("r3", job_c.ensemble, job_c.decode, result_c)
    assert a["settings_hash"] == b["settings_hash"] != c["settings_hash"]
    assert settings_hash({"x": 1, "y": [1, 2]}) == settings_hash({"y": [1, 2], "x": 1})
    assert not math.isnan(a["score"])


async def test_the_server_sinks_one_record_per_finished_request(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "sink.jsonl")
    app = create_app(Runtime(_config(), _fakes()), sink)
    async with TestClient(TestServer(app)) as client:
        answers = await asyncio.gather(
            *(client.post("/v1/chat/completions", json=BODY) for _ in range(5))
        )
        bodies = [await a.json() for a in answers]
    assert all(a.status == 200 for a in answers)
    records = read_records(sink.path)
    assert sorted(r["request_id"] for r in records) == sorted(b["id"] for b in bodies)
    by_id = {r["request_id"]: r for r in records}
    for body in bodies:
        record = by_id[body["id"]]
        assert record["answer"] == body["choices"][0]["message"]["content"]
        assert record["reasoning"] == body["choices"][0]["message"]["reasoning_content"]
        assert record["reference_answer"] == "42"
        assert record["source"] == "engine"


def without_nulls(value: Any) -> Any:
    """`value` as the sink writes it: unset fields left out at every depth (exclude_none)."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


async def test_a_record_from_the_response_is_the_sinks_record(tmp_path: Path) -> None:
    """The response's `cord` object and the sink's record render one provenance (the response
    carries the search tree when it asks for every candidate)."""
    sink = JsonlSink(tmp_path / "sink.jsonl")
    asked = {**BODY, "cord": {**BODY["cord"], "include_candidates": True}}
    async with TestClient(TestServer(create_app(Runtime(_config(), _fakes()), sink))) as client:
        body = await (await client.post("/v1/chat/completions", json=asked)).json()
    [sunk] = read_records(sink.path)
    rebuilt = record_from_completion(
        body,
        problem_id=sunk["id"],
        messages=sunk["messages"],
        reference_answer=sunk["reference_answer"],
        requested=sunk["settings"],
        started_at=sunk["timings"]["started_at"],
    )
    differ = {key for key in sunk if rebuilt[key] != sunk[key]}
    only_in_the_engine = {"alternatives"} if sunk["alternatives"] else set()
    assert differ == {"steps", "timings", "source"} | only_in_the_engine
    assert rebuilt["alternatives"] == [] and rebuilt["source"] == "proxy"
    assert [without_nulls(s) for s in rebuilt["steps"]] == sunk["steps"]
    for key in ("started_at", "wall_s", "answer_wait_s", "rounds"):
        assert rebuilt["timings"][key] == sunk["timings"][key], key
    assert rebuilt["failures"] == sunk["failures"] and rebuilt["dropped"] == sunk["dropped"]
    assert rebuilt["search"] == sunk["search"] and rebuilt["path"] == sunk["path"]
    assert sunk["answer_trainable"] is True
    check_record(sunk)


# the response's `cord` keys before the search tree was kept (issue 25): a default response
LEAN_CORD = {
    "ensemble", "score_mode", "reference_used", "score", "log_score", "closed_by",
    "answer_teacher", "steps", "choices", "teachers", "failures", "dropped", "rounds",
    "cost_usd", "budgets", "wall_s", "answer_wait_s",
}  # fmt: skip


async def test_the_response_stays_lean_while_the_sink_keeps_the_tree(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "sink.jsonl")
    async with TestClient(TestServer(create_app(Runtime(_config(), _fakes()), sink))) as client:
        body = await (await client.post("/v1/chat/completions", json=BODY)).json()
    cord = body["cord"]
    assert set(cord) == LEAN_CORD
    assert all(step["candidates"] is None and "trainable" not in step for step in cord["steps"])
    assert all("answer_trainable" not in choice for choice in cord["choices"])
    [sunk] = read_records(sink.path)
    assert sunk["search"] and len(sunk["path"]) == len(sunk["steps"]) + 1
    check_record(sunk)
