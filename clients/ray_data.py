"""The CoRD stage in a Ray Data pipeline: problems JSONL in, trace records JSONL out.

python clients/ray_data.py problems.jsonl traces.jsonl --teacher-url http://127.0.0.1:8401/v1

The problems are read with Python's ``json`` and handed to Ray with ``ray.data.from_items``,
as ``distill --ray`` does, not with ``ray.data.read_json``: Arrow's JSON reader wants one
type a column, and a problems file may mix string and integer ``id``s (or string and number
``answer``s). Each value keeps its type, so an output row's ``id`` is the input's.
A problem that fails, a line that is not JSON or not an object included, is a row whose
``error`` says why.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cord_proxy.data.jsonl import ReadReport, iter_jsonl

# What the stage reads of a problem (distill's input schema); other fields are not sent.
PROBLEM_FIELDS = ("id", "question", "messages", "answer", "cord")


def read_problems(path: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The problem rows, each value as given, and a failure row for every unusable line."""
    report = ReadReport()
    rows = []
    for line, value in iter_jsonl(path, report, written_by_us=False):
        if isinstance(value, dict):
            rows.append({k: value[k] for k in PROBLEM_FIELDS if k in value})
        else:
            report.bad_lines.append((line, "not a JSON object"))
    failures = [
        {"id": None, "error": f"line {line}: {why}", "kind": "bad_input", "attempts": 0}
        for line, why in sorted(report.bad_lines)
    ]
    return rows, failures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--teacher-url", default="http://127.0.0.1:8401/v1")
    parser.add_argument("--cord", default='{"max_steps": 2}', help="decoding options, as JSON")
    args = parser.parse_args(argv)

    import ray

    from cord_proxy.ray import StageSettings, apply_cord

    problems, failures = read_problems(args.input)
    with open(args.output, "w", encoding="utf-8") as out:
        for row in failures:
            out.write(json.dumps(row) + "\n")
        if not problems:
            return
        ray.init(num_cpus=2, include_dashboard=False)
        settings = StageSettings(teacher_url=args.teacher_url, cord=json.loads(args.cord))
        traces = apply_cord(ray.data.from_items(problems), settings, num_actors=2)
        for row in traces.iter_rows():  # a failed problem is a row whose "error" says why
            out.write(json.dumps(row, default=str) + "\n")


if __name__ == "__main__":
    main()
