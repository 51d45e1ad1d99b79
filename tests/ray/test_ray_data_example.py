"""clients/ray_data.py, the Ray Data stage used directly, run as a user would run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORD = {
    "max_steps": 1,
    "beam_width": 1,
    "teachers": ["gemma-t0.5"],
    "max_step_tokens": 12,
    "answer_budget": 6,
}


def test_the_example_writes_one_row_per_problem(local_teacher: str, tmp_path: Path) -> None:
    problems = [{"id": i, "question": f"What is {i} + 2?", "answer": str(i + 2)} for i in range(6)]
    problems.append({"id": 6, "answer": "no question"})
    source = tmp_path / "problems.jsonl"
    source.write_text("".join(json.dumps(p) + "\n" for p in problems), encoding="utf-8")
    target = tmp_path / "traces.jsonl"
    run = subprocess.run(
        [
            sys.executable, str(ROOT / "clients" / "ray_data.py"), str(source), str(target),
            "--teacher-url", local_teacher, "--cord", json.dumps(CORD),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    rows = {row["id"]: row for row in map(json.loads, target.read_text().splitlines())}
    assert sorted(rows) == list(range(7))
    for i in range(6):
        assert rows[i]["error"] is None and rows[i]["schema"] == "cord-trace/1"
        assert rows[i]["reasoning"] and rows[i]["reference_answer"] == str(i + 2)
    assert "exactly one of 'question' and 'messages'" in rows[6]["error"]
    assert rows[6]["kind"] == "bad_input"
