"""`distill --ray` refuses what it cannot run, before starting Ray (exit status 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--url", "http://127.0.0.1:9/v1"], "cannot be used with --url"),
        (["--teacher-url", "http://127.0.0.1:9/v1"], "is unreachable"),
        (["--cord", '{"beam_width": 0}'], "--cord: beam_width"),
    ],
)
def test_bad_runs_stop_before_ray_starts(tmp_path: Path, extra: list[str], message: str) -> None:
    source = tmp_path / "problems.jsonl"
    source.write_text('{"id": 1, "question": "What is 1 + 1?", "answer": "2"}\n')
    command = [sys.executable, "-m", "cord_proxy", "distill", "--input", str(source)]
    command += ["--output", str(tmp_path / "out.jsonl"), "--ray", "local", *extra]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 2, run.stderr
    assert message in run.stderr
    assert "Started a local Ray instance" not in run.stderr
    assert not (tmp_path / "out.jsonl").exists()
