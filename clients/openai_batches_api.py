"""Run a file of problems as one OpenAI batch on cord-proxy (the Files and Batches API).

    .venv/bin/python clients/openai_batches_api.py --base-url http://127.0.0.1:8400/v1 \\
        --input problems.jsonl --output out.jsonl [--model cord] [--cord '{"beam_width": 2}']

Input lines are problems, ``{"id", "question" | "messages", "answer"}`` (the answer is sent
as ``cord.reference_answer``), or OpenAI Batch API request lines, which go up unchanged. The
script uploads them with ``client.files.create``, starts the batch with
``client.batches.create``, polls it, and writes the output file (OpenAI Batch output lines:
``custom_id``, and the chat completion with ``message.reasoning_content`` as the body) to
``--output`` and the error file, if any, to OUTPUT with ``.errors.jsonl``.

The batch runs inside the proxy, which keeps its progress across restarts: if this script is
stopped, ``--batch-id batch_...`` picks the same batch up again. Needs only ``pip install
openai``, sends nothing anywhere but to the proxy, and needs no network beyond it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from openai import OpenAI
from openai.types import Batch

FINAL = ("completed", "failed", "expired", "cancelled")


def request_line(value: dict[str, Any], model: str, cord: dict[str, Any]) -> dict[str, Any]:
    """A problem as an OpenAI Batch request line; a request line as it is."""
    if "custom_id" in value:
        return value
    messages = value.get("messages") or [{"role": "user", "content": value["question"]}]
    options = dict(cord)
    if value.get("answer") is not None:
        options["reference_answer"] = str(value["answer"])
    return {
        "custom_id": str(value["id"]),
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": messages, "cord": options},
    }


def submit(client: OpenAI, path: Path, model: str, cord: dict[str, Any]) -> Batch:
    with path.open(encoding="utf-8") as file:
        lines = [request_line(json.loads(line), model, cord) for line in file if line.strip()]
    content = "".join(json.dumps(line) + "\n" for line in lines).encode()
    uploaded = client.files.create(file=(path.name, content), purpose="batch")
    return client.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"source": path.name[:500]},
    )


def wait(client: OpenAI, batch: Batch, interval: float) -> Batch:
    shown = ""
    while batch.status not in FINAL:
        time.sleep(interval)
        batch = client.batches.retrieve(batch.id)
        counts = batch.request_counts
        line = f"{batch.id}: {batch.status}"
        if counts is not None:
            line += f", {counts.completed} done, {counts.failed} failed of {counts.total}"
        if line != shown:
            print(line, file=sys.stderr, flush=True)
            shown = line
    return batch


def download(client: OpenAI, file_id: str | None, path: Path) -> int:
    if file_id is None:
        return 0
    text = client.files.content(file_id).text
    path.write_text(text, encoding="utf-8")
    return len(text.splitlines())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8400/v1")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("CORD_API_KEY") or os.environ.get("OPENAI_API_KEY") or "none",
        help="the proxy's key (default: $CORD_API_KEY, else $OPENAI_API_KEY)",
    )
    parser.add_argument("--input", help="problems or batch request lines (JSONL)")
    parser.add_argument("--output", required=True)
    parser.add_argument("--model", default="cord", help="the ensemble")
    parser.add_argument("--cord", default="{}", help="cord options for every problem (JSON)")
    parser.add_argument("--batch-id", help="follow a batch already submitted")
    parser.add_argument("--poll-interval", type=float, default=2.0, help="seconds")
    args = parser.parse_args(argv)
    if not args.input and not args.batch_id:
        parser.error("give --input, or --batch-id to follow a batch")

    client = OpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=5)
    if args.batch_id:
        batch = client.batches.retrieve(args.batch_id)
    else:
        batch = submit(client, Path(args.input), args.model, json.loads(args.cord))
        print(f"submitted {batch.id}", file=sys.stderr, flush=True)
    batch = wait(client, batch, args.poll_interval)
    output = Path(args.output)
    written = download(client, batch.output_file_id, output)
    failed = download(client, batch.error_file_id, output.with_suffix(".errors.jsonl"))
    if batch.status != "completed":
        errors = batch.errors.data if batch.errors and batch.errors.data else []
        for error in errors:
            print(f"line {error.line}: {error.message}", file=sys.stderr)
        print(f"batch {batch.id} {batch.status}", file=sys.stderr)
    print(f"wrote {written} rows to {output} ({failed} failed)")
    return 0 if batch.status == "completed" and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
