"""clients/train_student.py trains the local Gemma 3 270M with TRL on each export format, in
its own venv (scripts/student_venv.sh), a few steps each on the CPU: every loss is finite,
SFT's loss on its own rows drops, DPO starts from its reference, PRM's head is the only new
weight and starts undecided. The rows are written here in the exports' formats
(`cord-proxy export --format trl|dpo|prm`), extra columns included."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cord_proxy.local import prepare
from tests.clients.conftest import ROOT

SCRIPT = ROOT / "clients" / "train_student.py"
TINY = ("--max-length", "256")
# one row a step, to keep it short: a DPO row is two sequences through policy and reference
ONE_ROW_A_STEP = ("--steps", "3", "--batch-size", "1")


def _turns(question: str, steps: list[str], answer: str) -> list[dict[str, str]]:
    reasoning = "".join(steps).strip()
    return [
        {"role": "user", "content": question},
        {"role": "assistant", "content": f"<think>\n{reasoning}\n</think>\n\n{answer}"},
    ]


SFT_ROWS = [
    {
        "messages": _turns(
            "What is 2 + 3?",
            ["### Step 1. Add the numbers.\n2 + 3 = 5.\n\n", "### Step 2. Check.\n5 - 3 = 2.\n\n"],
            "The answer is 5.",
        )
    },
    {
        "messages": _turns(
            "What is 7 + 6?",
            ["### Step 1. Add the ones.\n7 + 6 = 13.\n\n", "### Step 2. Check.\n13 - 6 = 7.\n\n"],
            "The answer is 13.",
        )
    },
]


def _pair(question: str, trace: str, chosen: str, rejected: str, step: int) -> dict[str, Any]:
    """A step pair as `export --format dpo` writes it: the conversation, then each answer the
    thinking opened, the trace so far and the step."""
    return {
        "prompt": [{"role": "user", "content": question}],
        "chosen": [{"role": "assistant", "content": f"<think>\n{trace}{chosen}"}],
        "rejected": [{"role": "assistant", "content": f"<think>\n{trace}{rejected}"}],
        "id": f"rec-{step}",
        "step": step,
        "pair_id": f"pair-{step}",
        "chosen_score": -0.27,
        "rejected_score": -2.74,
        "margin": 2.47,
        "chosen_proposers": ["gemma-t0.7"],
        "rejected_proposers": ["gemma-t0.5", "gemma-t0.6"],
    }


DPO_ROWS = [
    _pair("What is 2 + 3?", "", "### Step 1. 2 + 3 = 5.\n\n", "### Step 1. 2 + 3 = 6.\n\n", 1),
    _pair(
        "What is 7 + 6?",
        "### Step 1. 7 + 6 = 13.\n\n",
        "### Step 2. Check: 13 - 6 = 7.\n\n",
        "### Step 2. So it is 14.\n\n",
        2,
    ),
]


def _labels(steps: list[str], labels: list[bool], kind: str) -> dict[str, Any]:
    """A row as `export --format prm` writes it: the prompt as text, the steps stripped."""
    return {
        "prompt": "What is 9 + 9?\n\n",
        "completions": steps,
        "labels": labels,
        "id": "rec-3",
        "step": len(steps),
        "kind": kind,
    }


PRM_ROWS = [
    _labels(["### Step 1. 9 + 9 = 18.", "### Step 2. Check: 18 - 9 = 9."], [True, True], "trace"),
    _labels(["### Step 1. 9 + 9 = 18.", "### Step 2. So it is 19."], [True, False], "sibling"),
]


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
    return summary, done.stdout


def test_sft_loss_drops_on_its_own_rows(student_python: str, tmp_path: Path) -> None:
    # both rows in every batch: each step sees the same rows, so the loss must fall
    summary, _ = train(
        student_python, "sft", SFT_ROWS, tmp_path, "--steps", "4", "--batch-size", "2"
    )
    losses = summary["losses"]
    assert len(losses) == 4, summary
    assert losses[-1] < 0.9 * losses[0], summary
    assert (tmp_path / "student-sft" / "adapter_model.safetensors").is_file()


def test_dpo_starts_from_its_reference(student_python: str, tmp_path: Path) -> None:
    summary, _ = train(student_python, "dpo", DPO_ROWS, tmp_path, *ONE_ROW_A_STEP)
    assert len(summary["losses"]) == 3, summary
    # the adapter starts at zero: policy and reference (the base) agree, so -log sigmoid(0)
    assert summary["losses"][0] == pytest.approx(math.log(2), abs=1e-3), summary


def test_prm_loads_the_text_weights_under_an_undecided_head(
    student_python: str, tmp_path: Path
) -> None:
    summary, out = train(student_python, "prm", PRM_ROWS, tmp_path, *ONE_ROW_A_STEP)
    assert len(summary["losses"]) == 3, summary
    assert "new: score.bias, score.weight; unused: none" in out, out
    # the head starts at zero: both labels even, whatever the row's labels
    assert summary["losses"][0] == pytest.approx(math.log(2), abs=1e-3), summary
