"""Exports load with `datasets`, and TRL rows follow the conversational format."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from openai.types.chat import ChatCompletion

from cord_proxy.data.exports import CONVERTERS, RECORD_FORMATS, export_file
from cord_proxy.data.jsonl import append_record
from cord_proxy.data.records import record_from_completion, trace_record
from tests.test_dataset import BODY, _decode

datasets = pytest.importorskip("datasets")


async def _records() -> list[dict[str, Any]]:
    """Two engine records (one with a system turn) and one built from a proxy completion."""
    plan, result = await _decode(BODY)
    first = trace_record("chatcmpl-a", plan.ensemble, plan.decode, result, problem_id="p1")
    plan, result = await _decode(
        {
            **BODY,
            "messages": [
                {"role": "system", "content": "Think step by step."},
                {"role": "user", "content": "What is 20 + 22?"},
            ],
        }
    )
    second = trace_record("chatcmpl-b", plan.ensemble, plan.decode, result, problem_id=2)
    completion = {
        "id": "chatcmpl-c",
        "object": "chat.completion",
        "model": "cord",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {
                    "role": "assistant",
                    "content": "7",
                    "reasoning_content": "3 + 4 is 7.",
                },
            }
        ],
        "usage": {
            "prompt_tokens": 9,
            "completion_tokens": 6,
            "completion_tokens_details": {"reasoning_tokens": 5},
        },
        "cord": {
            "ensemble": "cord",
            "score": 0.5,
            "log_score": -0.69,
            "steps": [],
            "teachers": [],
            "cost_usd": 0.0,
            "wall_s": 1.0,
            "reference_used": True,
        },
    }
    third = record_from_completion(
        completion,
        problem_id="p3",
        messages=[{"role": "user", "content": "What is 3 + 4?"}],
        reference_answer="7",
        requested={"ensemble": "cord", "cord": {}},
        started_at=0.0,
    )
    return [first, second, third]


@pytest.fixture
async def traces(tmp_path: Path) -> Path:
    path = tmp_path / "traces.jsonl"
    records = await _records()
    for record in [*records, records[0]]:  # a duplicate id is dropped
        append_record(path, record, fsync=False)
    with path.open("ab") as file:
        file.write(b'{"id": "cut", "reasoni')  # a partial last line is ignored
    return path


def _load(path: Path, cache: Path) -> Any:
    return datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(cache))


@pytest.mark.parametrize("format_name", RECORD_FORMATS)
async def test_every_format_loads_with_datasets(
    traces: Path, tmp_path: Path, format_name: str
) -> None:
    output = tmp_path / f"out.{format_name}.jsonl"
    counts = export_file(traces, output, format_name, warn=lambda _: None)
    assert (counts.written, counts.duplicates, counts.partial_tail) == (3, 1, True)
    rows = _load(output, tmp_path / "hf")
    assert rows.num_rows == 3


async def test_trl_rows_follow_the_conversational_format(traces: Path, tmp_path: Path) -> None:
    output = tmp_path / "trl.jsonl"
    export_file(traces, output, "trl")
    rows = _load(output, tmp_path / "hf")
    assert rows.column_names == ["messages"]
    for row in rows:
        messages = row["messages"]
        assert all(set(m) == {"role", "content"} for m in messages)
        assert all(m["role"] in ("system", "user", "assistant") for m in messages)
        assert messages[-1]["role"] == "assistant" and messages[-2]["role"] == "user"
        content = messages[-1]["content"]
        assert content.startswith("<think>\n") and "\n</think>\n\n" in content
    last = rows[2]["messages"][-1]["content"]
    assert last == "<think>\n3 + 4 is 7.\n</think>\n\n7"
    assert rows[1]["messages"][0] == {"role": "system", "content": "Think step by step."}


async def test_sharegpt_rows_use_from_and_value(traces: Path, tmp_path: Path) -> None:
    output = tmp_path / "sharegpt.jsonl"
    export_file(traces, output, "sharegpt")
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["p1", "2", "p3"]
    assert [t["from"] for t in rows[1]["conversations"]] == ["system", "human", "gpt"]
    assert rows[2]["conversations"][-1]["value"].startswith("<think>\n3 + 4 is 7.")


async def test_openai_batch_lines_hold_chat_completions(traces: Path, tmp_path: Path) -> None:
    output = tmp_path / "batch.jsonl"
    export_file(traces, output, "openai-batch")
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["custom_id"] for r in rows] == ["p1", "2", "p3"]
    assert len({r["id"] for r in rows}) == 3
    for row in rows:
        assert set(row) == {"id", "custom_id", "response", "error"} and row["error"] is None
        assert row["response"]["status_code"] == 200
        body = ChatCompletion.model_validate(row["response"]["body"])
        assert body.id == row["response"]["request_id"]
        usage = body.usage
        assert usage is not None and usage.completion_tokens_details is not None
        assert usage.completion_tokens >= (usage.completion_tokens_details.reasoning_tokens or 0)
        body_cord = row["response"]["body"]["cord"]
        assert usage.model_extra is not None
        assert usage.model_extra["cost"] == body_cord["cost_usd"]
    assert rows[2]["response"]["body"]["choices"][0]["message"] == {
        "role": "assistant",
        "content": "7",
        "reasoning_content": "3 + 4 is 7.",
    }


def test_the_command_line_exports_and_reports(traces: Path, tmp_path: Path) -> None:
    output = tmp_path / "cli.jsonl"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cord_proxy",
            "export",
            "--input",
            str(traces),
            "--output",
            str(output),
            "--format",
            "trl",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "exported 3 records" in done.stdout and "1 duplicate" in done.stdout
    assert len(output.read_text().splitlines()) == 3
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "cord_proxy",
            "export",
            "--input",
            str(tmp_path / "nope"),
            "--output",
            str(output),
            "--format",
            "trl",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def _readme_examples() -> list[dict[str, Any]]:
    """The one-line JSON examples of the README's dataset section."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = text.split("## Making training data", 1)[1].split("\n## ", 1)[0]
    blocks = section.split("```json\n")[1:]
    assert blocks, "the README's dataset section has no JSON examples"
    return [json.loads(block.split("\n```")[0]) for block in blocks]


def test_the_readme_examples_are_the_export_of_its_record() -> None:
    examples = _readme_examples()
    record = next(e for e in examples if e.get("schema") == "cord-trace/1")
    for format_name, key in (
        ("trl", "messages"),
        ("sharegpt", "conversations"),
        ("openai-batch", "custom_id"),
    ):
        shown = [e for e in examples if key in e and "schema" not in e]
        assert shown == [CONVERTERS[format_name](record)], format_name
