"""A smoke run of ``python -m bench.request_cost``: it runs and prints a number per line.
Not how fast."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
COST = re.compile(r"^(bare asyncio client|cord-proxy on a simulated teacher), .+: \d+ us")


def test_it_prints_each_cost_in_microseconds() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.request_cost"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.splitlines()
    assert len(lines) == 5, completed.stdout
    assert all(COST.match(line) for line in lines), completed.stdout
