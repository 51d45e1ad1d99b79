"""A smoke run of ``python -m bench``: it runs and reports numbers. Not how fast."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
SMOKE_TIMEOUT_S = 180


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _run_bench(out: Path) -> dict[str, Any]:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--skip-real",
            "--skip-faults",
            "--out",
            str(out),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_S,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    (result,) = out.glob("*.json")
    assert result.with_suffix(".md").is_file()
    assert "## Targets" in completed.stdout
    data: dict[str, Any] = json.loads(result.read_text())
    return data


def test_quick_bench_reports_numbers(tmp_path: Path) -> None:
    data = _run_bench(tmp_path)

    assert data["machine"]["cpu_count"] >= 1
    single = data["fanout"]["single"]
    for key in ("wall_s", "ideal_s", "efficiency", "proxy_cpu_ms_per_call", "teacher_calls"):
        assert _is_number(single[key]), key
    assert _is_number(data["fanout"]["concurrent"]["proxy_cpu_ms_per_call"])
    assert data["fanout"]["runs"] == 1  # --quick
    low, high = single["proxy_cpu_ms_per_call_range"]
    assert low == high == single["proxy_cpu_ms_per_call"]
    levels = data["load"]["levels"]
    assert [level["concurrency"] for level in levels] == [1, 4]
    for level in levels:
        for key in ("throughput_rps", "ideal_throughput_rps", "p50_s", "p99_s", "errors"):
            assert _is_number(level[key]), key
    assert data["real"] == {"skipped": "--skip-real"}
    assert data["faults"] == {"skipped": "--skip-faults"}  # tests/bench/test_faults_smoke.py
    assert {t["name"] for t in data["targets"]} >= {"fan-out efficiency", "CoRD / curation wall"}
