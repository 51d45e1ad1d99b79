"""``cord-proxy export`` on a large file: peak memory and rows per second, by format.

    .venv/bin/python -m bench.export_memory [--records 100000] [--small 1000] [--seed 0]

Writes two files of generated trace records with their search trees (a beam of width 2,
3 teachers, about 8 rounds each; the generator simulates the search: every live beam gets
one proposal per teacher, equal texts merge, the top 2 of the round's scored candidates
become the next round's beams, a trace closes now and then) in a temporary folder, then
runs each export format on each file in a fresh process (``python -m cord_proxy export``)
and prints the child's peak RSS (``os.wait4``'s ``ru_maxrss``), its rows per second and
the output's size. Flat memory: the large file's peak is about the small file's.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cord_proxy.data.exports import FORMATS
from cord_proxy.data.jsonl import encode_line

TEACHERS = ("gemma-t0.5", "gemma-t0.6", "gemma-t0.7")
PHRASES = (
    "Add the tens first: {a} + {t} = {s}.",
    "Then the units: {s} + {u} = {r}, so the running total is {r}.",
    "Check it another way: {r} - {b} = {a}, which matches the first number.",
    "Carry nothing, since {u} + {au} stays under ten here.",
    "Write the partial sum {s} down and keep {u} for the next line.",
    "So far {a} plus {b} gives {r}; nothing else is left to add.",
)


@dataclass
class _Beam:
    text: str = ""
    steps: list[dict[str, Any]] = field(default_factory=list)
    path: list[int] = field(default_factory=lambda: [0])
    total: float = 0.0

    @property
    def index(self) -> int:
        """Its index in this round's beam: its place among the last round's chosen."""
        return self.path[-1]

    @property
    def mean(self) -> float:
        return self.total / max(len(self.steps), 1)


def _step_text(step: int, rng: random.Random, numbers: dict[str, int]) -> str:
    body = " ".join(rng.choice(PHRASES).format(**numbers) for _ in range(rng.randint(1, 2)))
    return f"### Step {step}. {body}\n\n"


def _round(
    step: int,
    live: Sequence[_Beam],
    rng: random.Random,
    teachers: Sequence[str],
    untrainable: frozenset[str],
    numbers: dict[str, int],
    last: bool,
) -> list[dict[str, Any]]:
    candidates: list[dict[str, Any]] = []
    for beam in live:
        merged: dict[str, list[str]] = {}
        for teacher in teachers:
            merged.setdefault(_step_text(step, rng, numbers), []).append(teacher)
        for text, proposers in merged.items():
            log_score = None if rng.random() < 0.04 else -rng.uniform(0.1, 3.0)
            closes = "think" if last or rng.random() < 0.06 * step else None
            candidates.append(
                {
                    "parent": beam.index,
                    "child": None,
                    "text": text.rstrip("\n"),
                    "step_text": text,
                    "proposers": proposers,
                    "trainable": any(p not in untrainable for p in proposers),
                    "score": None if log_score is None else math.exp(log_score),
                    "log_score": log_score,
                    "scorers": [
                        {"scorer": t, "mean_logprob": log_score, "tokens": 4, "weight": 1.0}
                        for t in teachers
                        if log_score is not None
                    ],
                    "self_scored": False,
                    "tokens": len(text) // 4,
                    "finish_reason": "stop",
                    "selected": False,
                    "closes": closes,
                }
            )
    return candidates


def _select(
    candidates: list[dict[str, Any]], live: Sequence[_Beam], width: int
) -> tuple[list[_Beam], list[_Beam]]:
    """The top `width` scored candidates become beams (child = rank); returns (live, done)."""
    parents = {beam.index: beam for beam in live}
    scored = [c for c in candidates if c["log_score"] is not None]
    scored.sort(key=lambda c: -(parents[c["parent"]].total + c["log_score"]))
    grown: list[_Beam] = []
    done: list[_Beam] = []
    for rank, candidate in enumerate(scored[:width]):
        candidate["child"], candidate["selected"] = rank, True
        parent = parents[candidate["parent"]]
        record = {key: candidate[key] for key in ("proposers", "trainable", "score", "log_score")}
        step = {"index": len(parent.steps) + 1, "text": candidate["step_text"], **record}
        beam = _Beam(
            parent.text + candidate["step_text"],
            [*parent.steps, {**step, "scorers": candidate["scorers"], "tokens": 20}],
            [*parent.path, rank],
            parent.total + candidate["log_score"],
        )
        (done if candidate["closes"] else grown).append(beam)
    return grown, done


def searched_record(
    index: int,
    rng: random.Random,
    *,
    beam_width: int = 2,
    teachers: Sequence[str] = TEACHERS,
    rounds: int = 8,
    untrainable: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """A trace record with its search tree, as the decoder writes it (schema cord-trace/1)."""
    a, b = rng.randint(10, 999), rng.randint(10, 999)
    t, u = b // 10 * 10, b % 10
    numbers = {"a": a, "b": b, "t": t, "u": u, "s": a + t, "r": a + b, "au": a % 10}
    live, done, search = [_Beam()], list[_Beam](), list[dict[str, Any]]()
    for step in range(1, rounds + 1):
        if not live:
            break
        candidates = _round(step, live, rng, teachers, untrainable, numbers, step == rounds)
        live, finished = _select(candidates, live, beam_width)
        done.extend(finished)
        search.append({"step": step, "candidates": candidates})
    best = max(done, key=lambda beam: beam.mean) if done else _Beam()
    answer_teacher = rng.choice(teachers)
    return {
        "schema": "cord-trace/1",
        "id": f"gen-{index:06d}",
        "request_id": f"chatcmpl-{index:032x}",
        "ensemble": "cord",
        "messages": [{"role": "user", "content": f"What is {a} + {b}?"}],
        "reference_answer": str(a + b),
        "reasoning": best.text.strip(),
        "answer": str(a + b),
        "finish_reason": "stop",
        "score": math.exp(best.mean),
        "log_score": best.mean,
        "score_mode": "reference",
        "reference_used": True,
        "closed_by": "think",
        "answer_teacher": answer_teacher,
        "answer_trainable": answer_teacher not in untrainable,
        "path": best.path,
        "steps": best.steps,
        "search": search,
        "teachers": [{"name": name, "proposals": 8, "selected": 2} for name in teachers],
        "usage": {"prompt_tokens": 30, "reasoning_tokens": 20 * len(best.steps)},
        "cost_usd": 0.0,
        "timings": {"wall_s": 12.0, "rounds": [{"step": s["step"]} for s in search]},
        "failures": [],
        "dropped": [],
        "alternatives": [],
        "settings": {"ensemble": "cord", "options": {"beam_width": beam_width}},
        "settings_hash": "sha256:0000000000000000",
        "source": "engine",
    }


def write_records(path: Path, count: int, seed: int) -> int:
    """`count` records into `path`; returns the file's size in bytes."""
    rng = random.Random(seed)
    with path.open("wb") as file:
        for index in range(count):
            file.write(encode_line(searched_record(index, rng)))
    return path.stat().st_size


@dataclass(frozen=True)
class Run:
    rows: int
    seconds: float
    peak_rss_mb: float
    output_mb: float


def export_run(source: Path, output: Path, format_name: str) -> Run:
    """One export in a fresh process, its peak RSS read from its own rusage."""
    command = [sys.executable, "-m", "cord_proxy", "export", "--input", str(source)]
    command += ["--output", str(output), "--format", format_name]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    assert child.stdout is not None and child.stderr is not None
    summary, errors = child.stdout.read().decode(), child.stderr.read().decode()
    child.stdout.close()
    child.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"export --format {format_name} failed: {errors.strip()[-500:]}")
    rows = re.search(r"exported (\d+)", summary)
    size = output.stat().st_size / 2**20
    output.unlink()
    return Run(int(rows.group(1)) if rows else 0, seconds, usage.ru_maxrss / 1024, size)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cord-export-memory-") as folder:
        files = {}
        for count in (args.small, args.records):
            path = Path(folder) / f"records-{count}.jsonl"
            started = time.perf_counter()
            size = write_records(path, count, args.seed)
            took = time.perf_counter() - started
            print(f"wrote {count:,} records, {size / 2**20:,.1f} MiB, in {took:.1f} s", flush=True)
            files[count] = path
        print("\n| format | peak RSS, small file | peak RSS, large file | rows | rows/s | output |")
        print("|---|---|---|---|---|---|")
        for format_name in FORMATS:
            small = export_run(files[args.small], Path(folder) / "out.jsonl", format_name)
            large = export_run(files[args.records], Path(folder) / "out.jsonl", format_name)
            print(
                f"| {format_name} | {small.peak_rss_mb:.1f} MiB | {large.peak_rss_mb:.1f} MiB "
                f"| {large.rows:,} | {large.rows / large.seconds:,.0f} "
                f"| {large.output_mb:,.1f} MiB |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
