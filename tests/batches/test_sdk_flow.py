"""The openai SDK's Files and Batches flow against the real proxy and the real local teacher."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.batches.conftest import batch_config, jsonl, request_line, sdk, wait_for
from tests.batches.teacher_tap import TeacherTap
from tests.support.proxy_process import ProxyProcess


@pytest.fixture(scope="module")
def proxy(tap: TeacherTap, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    workdir = tmp_path_factory.mktemp("batches-sdk")
    config = batch_config(tap.base_url, workdir / "data", concurrency=4)
    process = ProxyProcess(config, workdir).start()
    yield process
    process.stop()


def test_six_lines_complete_with_reasoning(proxy: ProxyProcess) -> None:
    client = sdk(proxy)
    uploaded = client.files.create(
        file=("problems.jsonl", jsonl([request_line(i) for i in range(6)])), purpose="batch"
    )
    assert uploaded.purpose == "batch" and uploaded.filename == "problems.jsonl"
    batch = client.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"run": "sdk-flow"},
    )
    assert batch.status == "validating" and batch.metadata == {"run": "sdk-flow"}
    batch = wait_for(client, batch.id, ("completed", "failed", "cancelled"))
    assert batch.status == "completed", batch.errors
    counts = batch.request_counts
    assert counts is not None and (counts.total, counts.completed, counts.failed) == (6, 6, 0)
    assert batch.output_file_id and batch.error_file_id is None
    assert batch.in_progress_at and batch.finalizing_at and batch.completed_at
    lines = [json.loads(x) for x in client.files.content(batch.output_file_id).text.splitlines()]
    assert sorted(line["custom_id"] for line in lines) == [f"q-{i}" for i in range(6)]
    for line in lines:
        assert line["error"] is None and line["response"]["status_code"] == 200
        body = line["response"]["body"]
        assert body["object"] == "chat.completion"
        message = body["choices"][0]["message"]
        assert message["reasoning_content"].startswith("### Step 1.")
        assert isinstance(message["content"], str)
        assert body["cord"]["reference_used"] is True
    output = client.files.retrieve(batch.output_file_id)
    assert output.purpose == "batch_output" and output.bytes > 0
    listed = [b.id for b in client.batches.list(limit=100)]
    assert batch.id in listed


def test_a_line_that_fails_lands_in_the_error_file(proxy: ProxyProcess) -> None:
    client = sdk(proxy)
    lines = [request_line(i) for i in range(10, 16)]
    lines[2]["body"]["model"] = "no-such-ensemble"
    uploaded = client.files.create(file=("mixed.jsonl", jsonl(lines)), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    batch = wait_for(client, batch.id, ("completed", "failed", "cancelled"))
    assert batch.status == "completed", batch.errors
    counts = batch.request_counts
    assert counts is not None and (counts.total, counts.completed, counts.failed) == (6, 5, 1)
    assert batch.output_file_id and batch.error_file_id
    outputs = client.files.content(batch.output_file_id).text.splitlines()
    assert sorted(json.loads(x)["custom_id"] for x in outputs) == [
        f"q-{i}" for i in (10, 11, 13, 14, 15)
    ]
    errors = [json.loads(x) for x in client.files.content(batch.error_file_id).text.splitlines()]
    assert [e["custom_id"] for e in errors] == ["q-12"]
    response = errors[0]["response"]
    assert response["status_code"] == 404
    assert "no-such-ensemble" in response["body"]["error"]["message"]


def test_files_list_retrieve_delete(proxy: ProxyProcess) -> None:
    client = sdk(proxy)
    uploaded = client.files.create(file=("a.jsonl", b"{}\n"), purpose="batch")
    assert uploaded.bytes == 3
    assert uploaded.id in [f.id for f in client.files.list(purpose="batch")]
    assert client.files.retrieve(uploaded.id).filename == "a.jsonl"
    assert client.files.content(uploaded.id).content == b"{}\n"
    assert client.files.delete(uploaded.id).deleted is True
    with pytest.raises(Exception) as caught:
        client.files.retrieve(uploaded.id)
    assert getattr(caught.value, "status_code", None) == 404
