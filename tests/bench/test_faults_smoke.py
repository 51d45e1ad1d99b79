"""A smoke run of ``python -m bench.faults --quick``: the real proxy server under every fault.

The teachers are the benchmark's FAKE fault-injecting vLLM servers (bench/faultteacher.py):
a real teacher cannot be made to stall, answer malformed bodies or refuse on demand.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
SMOKE_TIMEOUT_S = 150
PHASES = ["baseline", "kill", "stall", "slow", "malformed", "error500", "refused"]


def _run_faults(out: Path) -> tuple[dict[str, Any], str]:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.faults", "--quick", "--out", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_S,
        check=False,
    )
    (result,) = out.glob("*-faults.json")
    assert result.with_suffix(".md").is_file()
    data: dict[str, Any] = json.loads(result.read_text())
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return data, completed.stdout


def test_quick_fault_bench_meets_every_target(tmp_path: Path) -> None:
    data, printed = _run_faults(tmp_path)

    assert "## Targets" in printed and "| stall |" in printed
    by_phase = {p["phase"]: p for p in data["phases"]}
    assert list(by_phase) == PHASES
    for phase in by_phase.values():
        assert phase["requests"] == data["settings"]["requests_per_phase"]
        assert phase["status_500"] == phase["bad_5xx"] == phase["hangs"] == 0, phase
        assert phase["ok_200"] > 0, phase  # a faulty teacher degrades answers, never all
        assert phase["max_s"] <= phase["deadline_s"], phase
    assert by_phase["baseline"]["failure_codes"] == {}
    for name in ("kill", "stall", "malformed", "error500", "refused"):
        assert by_phase[name]["failure_codes"], f"no fault was seen in phase {name}"
    # x10 latency stays within the teacher's timeout: not a failure, but every round waits
    assert by_phase["slow"]["p50_s"] > by_phase["baseline"]["p50_s"]
    assert by_phase["stall"]["circuit_open_answers"] > 0
    assert set(by_phase["stall"]["circuit_open_by_teacher"]) == {"faulty-c"}
    breakers = by_phase["stall"]["breakers_at_end"]  # empty where /metrics shows no breakers
    assert not breakers or breakers["faulty-c"] != "closed"
    assert not breakers or by_phase["baseline"]["breakers_at_end"]["faulty-c"] == "closed"
    assert by_phase["stall"]["requests_after_open"] > 0
    targets = {t["name"]: t for t in data["targets"]}
    assert len(targets) == 4
    assert all(t["met"] is True for t in targets.values()), targets
    assert targets["faults: stall p50"]["value"] <= 1.5


def test_quick_rotating_kill_reports_every_figure(tmp_path: Path) -> None:
    """The rotating-kill phase runs and reports; its targets are the bench's, not a test's."""
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.faults",
            "--phases",
            "rotate",
            "--quick",
            "--out",
            str(tmp_path),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_S,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    (result,) = tmp_path.glob("*-faults.json")
    rotation = json.loads(result.read_text())["rotation"]
    assert rotation["requests"] == rotation["answered_200"] + rotation["failed"] > 0
    assert rotation["kills"] >= 2 and rotation["down_s_max"] < 3.0
    assert rotation["hangs"] == rotation["past_deadline"] == 0
    assert rotation["proxy_alive_at_end"] is True
    assert "### Rotating kill" in completed.stdout and "rotate: answered 200" in completed.stdout
