"""`distill --ray local` against in-process `distill`: same problems, same total concurrency.

    .venv/bin/python -m bench.ray_overhead [--problems 24] [--concurrency 4] [--teacher-url URL]

Runs both commands as a user would, on the local teacher, into fresh output files, and
prints each one's wall time: the whole command (process start to exit, Ray's start and
stop included) and the run as its summary reports it. The Ray run uses 2 actors that share
the concurrency. Needs the local teacher running (`cord-proxy up`, or CORD_TEST_TEACHER_URL).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

CORD = {
    "max_steps": 1,
    "beam_width": 1,
    "teachers": ["gemma-t0.5"],
    "max_step_tokens": 16,
    "answer_budget": 8,
}


def write_problems(path: Path, count: int) -> None:
    with path.open("w", encoding="utf-8") as file:
        for i in range(count):
            row = {"id": f"p{i}", "question": f"What is {i} + {i + 1}?", "answer": str(2 * i + 1)}
            file.write(json.dumps(row) + "\n")


def run_distill(
    folder: Path, name: str, teacher: str, concurrency: int, ray: str | None
) -> tuple[float, float]:
    """(command wall s, the summary's run wall s) of one distill into a fresh output."""
    command = [
        sys.executable, "-m", "cord_proxy", "distill",
        "--input", str(folder / "problems.jsonl"), "--output", str(folder / f"{name}.jsonl"),
        "--teacher-url", teacher, "--concurrency", str(concurrency), "--cord", json.dumps(CORD),
    ]  # fmt: skip
    if ray:
        command += ["--ray", ray, "--ray-actors", "2"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed ({done.returncode}): {done.stderr[-2000:]}")
    found = re.search(r"done, \d+ failed in (\d+):(\d+)", done.stdout)
    inner = 60 * int(found.group(1)) + int(found.group(2)) if found else float("nan")
    return wall, float(inner)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=24)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--teacher-url", default="http://127.0.0.1:8401/v1")
    parser.add_argument(
        "--ray-address",
        default="local",
        help="'local' (a Ray instance started per run) or a running cluster (`ray start --head`)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as name:
        folder = Path(name)
        write_problems(folder / "problems.jsonl", args.problems)
        arms = [("in-process", None), (f"ray {args.ray_address}", args.ray_address)]
        results = {
            n: run_distill(folder, n, args.teacher_url, args.concurrency, r) for n, r in arms
        }
    base, ray = results["in-process"], results[f"ray {args.ray_address}"]
    print(f"{args.problems} problems, total concurrency {args.concurrency}")
    print("| arm | command wall s | run wall s (summary) |")
    print("|---|---|---|")
    for name, (wall, inner) in results.items():
        print(f"| {name} | {wall:.1f} | {inner:.0f} |")
    print(f"Ray overhead, command wall: {100 * (ray[0] / base[0] - 1):+.0f}%")


if __name__ == "__main__":
    main()
