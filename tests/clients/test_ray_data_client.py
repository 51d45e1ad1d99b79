"""clients/ray_data.py on a problems file whose ids mix strings and integers (issue 26).

Arrow's JSON reader (``ray.data.read_json``) refuses a column that changes type, so the
client reads the lines itself and keeps each id's type, as ``distill --ray`` does. The run
goes through Ray and the real stage against the FAKE counting teacher: it checks the rows'
ids and errors, not what the teachers say.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.clients.conftest import ROOT, rows
from tests.support.fake_teacher_http import CountingFakeTeacher

MIXED = [
    {"id": "p1", "question": "What is 2 + 3?", "answer": "5", "source": "kept out"},
    {"id": 2, "question": "What is 7 + 6?", "answer": 13},
    {"id": 3, "answer": "no question"},
]


def _client() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ray_data_client", ROOT / "clients/ray_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def mixed(tmp_path: Path) -> Path:
    path = tmp_path / "problems.jsonl"
    lines = [json.dumps(p) for p in MIXED] + ["not json", "[1, 2]"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture()
def fake_teacher() -> Iterator[str]:
    with CountingFakeTeacher() as url:
        yield url


def test_rows_keep_each_ids_type_and_bad_lines_become_failures(mixed: Path) -> None:
    problems, failures = _client().read_problems(mixed)
    assert [p["id"] for p in problems] == ["p1", 2, 3]
    assert problems[1]["answer"] == 13 and "source" not in problems[0]
    assert [(f["id"], f["kind"], f["error"][:7]) for f in failures] == [
        (None, "bad_input", "line 4:"),
        (None, "bad_input", "line 5:"),
    ]


def test_the_client_decodes_mixed_ids_through_ray(
    mixed: Path, fake_teacher: str, tmp_path: Path
) -> None:
    pytest.importorskip("ray")
    target = tmp_path / "traces.jsonl"
    cord = {"max_steps": 1, "beam_width": 1}
    run = subprocess.run(
        [
            sys.executable, str(ROOT / "clients" / "ray_data.py"), str(mixed), str(target),
            "--teacher-url", fake_teacher, "--cord", json.dumps(cord),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    by_id = {row["id"]: row for row in rows(target)}
    assert set(by_id) == {"p1", 2, 3, None}
    for key in ("p1", 2):
        assert by_id[key]["error"] is None and by_id[key]["schema"] == "cord-trace/1"
    assert by_id[2]["reference_answer"] == "13"
    assert by_id[3]["kind"] == "bad_input" and "exactly one of" in by_id[3]["error"]
    assert len(rows(target)) == 5  # the two unusable lines are rows too
