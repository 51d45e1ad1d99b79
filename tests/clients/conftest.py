"""What the client tests share: the data tools' own venv, the problems file, and rows."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBLEMS = [
    {"id": "p1", "question": "What is 2 + 3?", "answer": "5"},
    {"id": "p2", "question": "What is 7 + 6?", "answer": "13"},
    {"id": "p3", "question": "What is 9 + 9?", "answer": "18"},
]


@pytest.fixture(scope="session")
def tools_python() -> str:
    """The python of the data tools' cached venv (scripts/tools_venv.sh: Curator, distilabel)."""
    built = subprocess.run(
        ["bash", str(ROOT / "scripts" / "tools_venv.sh")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    return built.stdout.strip().splitlines()[-1]


@pytest.fixture()
def problems(tmp_path: Path) -> Path:
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS), encoding="utf-8")
    return path


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
