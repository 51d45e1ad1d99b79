"""`distill --ray` without Ray: which ids count as done, the merge of shards, row cleaning."""

from __future__ import annotations

import io
import json
from pathlib import Path

from cord_proxy.data.jsonl import append_record, read_records
from cord_proxy.ray.distill import done_ids, merge_shards, shard_files


def _record(i: str, tag: str) -> dict[str, str]:
    return {"schema": "cord-trace/1", "id": i, "tag": tag}


def test_ids_in_the_output_or_any_shard_are_done(tmp_path: Path) -> None:
    output = tmp_path / "traces.jsonl"
    append_record(output, _record("a", "out"))
    append_record(tmp_path / "traces.jsonl.ray.actor1.jsonl", _record("b", "s1"))
    shard = tmp_path / "traces.jsonl.ray.actor2.jsonl"
    append_record(shard, _record("c", "s2"))
    with shard.open("ab") as file:  # a write a crash cut short
        file.write(json.dumps(_record("d", "s2")).encode())
    append_record(tmp_path / "other.jsonl.ray.actor3.jsonl", _record("e", "other output"))
    stream = io.StringIO()
    assert done_ids(output, stream) == {"a", "b", "c"}
    assert "partial last line" in stream.getvalue()


def test_merge_keeps_the_first_record_of_each_id_and_removes_the_shards(tmp_path: Path) -> None:
    output = tmp_path / "traces.jsonl"
    append_record(output, _record("a", "out"))
    first, second = (tmp_path / f"traces.jsonl.ray.actor{n}.jsonl" for n in (1, 2))
    for record in (_record("a", "s1"), _record("b", "s1"), _record("b", "s1-retry")):
        append_record(first, record)
    for record in (_record("b", "s2"), _record("c", "s2")):
        append_record(second, record)
    assert merge_shards(output) == 2
    assert [(r["id"], r["tag"]) for r in read_records(output)] == [
        ("a", "out"),
        ("b", "s1"),
        ("c", "s2"),
    ]
    assert shard_files(output) == []
    assert merge_shards(output) == 0


def test_columnar_nulls_are_not_options() -> None:
    from cord_proxy.ray.stage import _drop_nulls

    row = {"id": 1, "question": "q", "messages": None, "cord": {"max_steps": 2, "beam_width": None}}
    assert _drop_nulls(row) == {"id": 1, "question": "q", "cord": {"max_steps": 2}}
