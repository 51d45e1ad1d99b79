"""clients/train_student.py trains the local Gemma 3 270M with TRL on each export format, in
its own venv (scripts/student_venv.sh), a few steps each on the CPU: every loss is finite,
SFT's loss on its own rows drops, DPO starts from its reference, PRM's head is the only new
weight and starts undecided. The rows are what `cord-proxy export --format trl|dpo|prm`
makes of two records that a real `distill` run on the local teacher wrote (the default
ensemble: beam width 2, 3 teachers)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cord_proxy.local import prepare
from tests.clients.conftest import ROOT

SCRIPT = ROOT / "clients" / "train_student.py"
TRACES = Path(__file__).with_name("distilled_traces.jsonl")
TINY = ("--max-length", "256")
# one row a step, to keep it short: a DPO row is two sequences through policy and reference
ONE_ROW_A_STEP = ("--steps", "3", "--batch-size", "1")


def exported(format_name: str, tmp: Path) -> list[dict[str, Any]]:
    """The rows `cord-proxy export --format FORMAT` makes of the distilled records."""
    output = tmp / f"{format_name}-rows.jsonl"
    command = [
        sys.executable,
        "-m",
        "cord_proxy",
        "export",
        "--input",
        str(TRACES),
        "--output",
        str(output),
    ]
    done = subprocess.run([*command, "--format", format_name], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert rows, done.stdout
    return rows


@pytest.fixture(scope="module")
def student_python() -> str:
    """The student venv's python (scripts/student_venv.sh), with the converted model ready."""
    prepare(progress=print)
    built = subprocess.run(
        ["bash", str(ROOT / "scripts" / "student_venv.sh")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    return built.stdout.strip().splitlines()[-1]


def train(python: str, trainer: str, rows: list[dict[str, Any]], tmp: Path, *extra: str) -> Any:
    data = tmp / f"{trainer}.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    command = [python, str(SCRIPT), "--trainer", trainer, "--data", str(data), *TINY, *extra]
    command += ["--output", str(tmp / f"student-{trainer}")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-5000:])
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["trainer"] == trainer and summary["lora"] is True
    assert all(math.isfinite(loss) for loss in summary["losses"]), summary
    print(f"{trainer} on {len(rows)} exported rows:", json.dumps(summary))
    return summary, done.stdout


def test_sft_loss_drops_on_its_own_rows(student_python: str, tmp_path: Path) -> None:
    # both rows in every batch: each step sees the same rows, so the loss must fall
    summary, _ = train(
        student_python,
        "sft",
        exported("trl", tmp_path),
        tmp_path,
        "--steps",
        "4",
        "--batch-size",
        "2",
    )
    losses = summary["losses"]
    assert len(losses) == 4, summary
    assert losses[-1] < 0.9 * losses[0], summary
    assert (tmp_path / "student-sft" / "adapter_model.safetensors").is_file()


def test_dpo_starts_from_its_reference(student_python: str, tmp_path: Path) -> None:
    summary, _ = train(student_python, "dpo", exported("dpo", tmp_path), tmp_path, *ONE_ROW_A_STEP)
    assert len(summary["losses"]) == 3, summary
    # the adapter starts at zero: policy and reference (the base) agree, so -log sigmoid(0)
    assert summary["losses"][0] == pytest.approx(math.log(2), abs=1e-3), summary


def test_prm_loads_the_text_weights_under_an_undecided_head(
    student_python: str, tmp_path: Path
) -> None:
    summary, out = train(
        student_python, "prm", exported("prm", tmp_path), tmp_path, *ONE_ROW_A_STEP
    )
    assert len(summary["losses"]) == 3, summary
    assert "new: score.bias, score.weight; unused: none" in out, out
    # the head starts at zero: both labels even, whatever the row's labels
    assert summary["losses"][0] == pytest.approx(math.log(2), abs=1e-3), summary
