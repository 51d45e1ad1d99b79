"""Run a file of problems through cord-proxy with the plain `openai` SDK, resumably.

    .venv/bin/python clients/openai_batch.py --base-url http://127.0.0.1:8400/v1 \\
        --input problems.jsonl --output out.jsonl [--model cord] [--concurrency 4] \\
        [--cord '{"beam_width": 2}']

Input lines are either problems, ``{"id", "question" | "messages", "answer"}`` (the answer
is sent as ``cord.reference_answer``), or OpenAI Batch API request lines, ``{"custom_id",
"method": "POST", "url": "/v1/chat/completions", "body": {...}}``, so a file made for the
OpenAI Batch API runs here unchanged.

Output lines follow the OpenAI Batch output format, ``{"id", "custom_id", "response":
{"status_code", "request_id", "body"}, "error"}``; the body is the proxy's chat completion,
with the trace in ``message.reasoning_content`` and the provenance in ``cord``. Failures go
to ``--errors`` (default: OUTPUT with ``.errors.jsonl``), in the same format with
``response: null``. A rerun skips the ids already in the output, so an interrupted run
(Ctrl-C, kill -9) is finished by running the same command again.

Needs only ``pip install openai``. The key comes from ``--api-key``, else ``$CORD_API_KEY``,
else ``$OPENAI_API_KEY`` (any string when the proxy has no ``api_keys``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import openai
from openai import OpenAI


def read_jobs(path: Path) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """``(custom_id, request body)`` for every usable line, and a note for every bad one."""
    jobs: list[tuple[str, dict[str, Any]]] = []
    bad: list[str] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                custom_id, body = job_of(json.loads(line))
            except (ValueError, KeyError, TypeError) as error:
                bad.append(f"line {number}: skipped: {error}")
                continue
            if custom_id in seen:
                bad.append(f"line {number}: skipped: duplicate id {custom_id!r}")
                continue
            seen.add(custom_id)
            jobs.append((custom_id, body))
    return jobs, bad


def job_of(line: Any) -> tuple[str, dict[str, Any]]:
    if not isinstance(line, dict):
        raise ValueError("not a JSON object")
    if "custom_id" in line:  # an OpenAI Batch API request line
        if line.get("url", "/v1/chat/completions") != "/v1/chat/completions":
            raise ValueError(f"url {line.get('url')!r} is not /v1/chat/completions")
        return str(line["custom_id"]), dict(line["body"])
    if "id" not in line:
        raise ValueError("no 'id' (or 'custom_id')")
    if "messages" in line:
        messages = line["messages"]
    elif isinstance(line.get("question"), str):
        messages = [{"role": "user", "content": line["question"]}]
    else:
        raise ValueError("no 'question' or 'messages'")
    body: dict[str, Any] = {"messages": messages}
    if line.get("answer") is not None:
        body["cord"] = {"reference_answer": str(line["answer"])}
    return str(line["id"]), body


def done_ids(path: Path) -> set[str]:
    """Ids already in the output; a partial last line (a killed write) does not count."""
    if not path.exists():
        return set()
    ids = set()
    with path.open("rb") as file:
        for raw in file:
            if not raw.endswith(b"\n"):
                break
            try:
                ids.add(str(json.loads(raw)["custom_id"]))
            except (ValueError, KeyError, TypeError):
                continue
    return ids


class Appender:
    """Appends whole lines: one write each, under a lock, flushed to disk."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self._cut_partial_tail()

    def _cut_partial_tail(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with self.path.open("r+b") as file:
                file.truncate(data.rfind(b"\n") + 1)

    def write(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        with self.lock:
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(descriptor, line)
                os.fsync(descriptor)
            finally:
                os.close(descriptor)


def run_one(
    client: OpenAI, model: str, cord: dict[str, Any], custom_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    """One request; returns an OpenAI Batch output line (success or error)."""
    request = {"model": model, **body}
    extra = {"cord": {**cord, **request.pop("cord", {})}}
    line: dict[str, Any] = {"id": f"batch_req_{uuid.uuid4().hex[:24]}", "custom_id": custom_id}
    try:
        completion = client.chat.completions.create(**request, extra_body=extra)
    except openai.APIStatusError as error:
        detail = error.body if isinstance(error.body, dict) else {"message": str(error)}
        return {
            **line,
            "response": None,
            "error": {"code": str(error.status_code), "message": detail.get("message")},
        }
    except openai.APIError as error:
        return {
            **line,
            "response": None,
            "error": {"code": "request_failed", "message": str(error)},
        }
    completed = completion.model_dump(mode="json", exclude_unset=True)
    return {
        **line,
        "response": {"status_code": 200, "request_id": completion.id, "body": completed},
        "error": None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8400/v1")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("CORD_API_KEY") or os.environ.get("OPENAI_API_KEY") or "none",
        help="the proxy's key (default: $CORD_API_KEY, else $OPENAI_API_KEY)",
    )
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--errors", type=Path, default=None)
    parser.add_argument("--model", default="cord", help="the ensemble")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--cord", default="{}", help="cord options for every request (JSON)")
    parser.add_argument("--timeout", type=float, default=3600.0)
    args = parser.parse_args(argv)

    cord = json.loads(args.cord)
    errors_path = args.errors or args.output.with_name(
        args.output.name.removesuffix(".jsonl") + ".errors.jsonl"
    )
    jobs, bad = read_jobs(args.input)
    for note in bad:
        print(f"{args.input}: {note}", file=sys.stderr)
    finished = done_ids(args.output)
    todo = [(i, b) for i, b in jobs if i not in finished]
    print(
        f"{len(jobs)} requests, {len(jobs) - len(todo)} already done, {len(todo)} to do",
        file=sys.stderr,
    )
    output, errors = Appender(args.output), Appender(errors_path)
    client = OpenAI(
        base_url=args.base_url, api_key=args.api_key, timeout=args.timeout, max_retries=3
    )
    started, ok, failed = time.monotonic(), 0, 0
    with ThreadPoolExecutor(max_workers=max(1, args.concurrency)) as pool:
        futures = [pool.submit(run_one, client, args.model, cord, i, b) for i, b in todo]
        for future in as_completed(futures):
            line = future.result()
            if line["error"] is None:
                output.write(line)
                ok += 1
            else:
                errors.write(line)
                failed += 1
            elapsed = time.monotonic() - started
            print(
                f"{ok + failed}/{len(todo)} ({ok} ok, {failed} failed, "
                f"{60 * (ok + failed) / elapsed:.1f}/min)",
                file=sys.stderr,
            )
    print(
        f"done: {ok} ok, {failed} failed -> {args.output}"
        + (f" (errors: {errors_path})" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
