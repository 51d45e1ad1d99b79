"""`cord-proxy distill --ray local` against the real local teacher, on a local Ray instance.

24 problems at tiny budgets (one teacher, two proposals, one step), 2 actors x 2 problems
at once: a plain run, a run with one actor SIGKILLed partway (found by its process title),
and a driver SIGKILLed partway then rerun. The killed runs reach the teacher through a
recording pass-through that holds the last problems' calls until after the kill.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.batches.teacher_tap import TeacherTap

PROBLEMS = 24
CORD = {
    "max_steps": 1,
    "beam_width": 1,
    "teachers": ["gemma-t0.5"],
    "proposals_per_teacher": 2,  # the 270M model sometimes proposes an empty step
    "max_step_tokens": 16,
    "answer_budget": 8,
}
RUN_TIMEOUT_S = 600.0
ACTORS_UP_S = 60.0
STAGE_ACTOR_TITLE = b"ray::MapWorker(MapBatches(CordStage))"


def _question(i: int) -> str:
    return f"What is {i} + {i + 1}?"


@contextlib.contextmanager
def _holding_the_last(tap: TeacherTap, count: int = 2) -> Iterator[None]:
    """The last `count` problems' teacher calls wait at the tap inside the block: the run
    cannot finish before a kill there, however fast the others go."""
    with contextlib.ExitStack() as held:
        for i in range(PROBLEMS - count, PROBLEMS):
            held.enter_context(tap.holding(_question(i)))
        yield


def _input(tmp_path: Path) -> Path:
    path = tmp_path / "problems.jsonl"
    with path.open("w", encoding="utf-8") as file:
        for i in range(PROBLEMS):
            row = {"id": f"p{i}", "question": _question(i), "answer": str(2 * i + 1)}
            file.write(json.dumps(row) + "\n")
    return path


def _start(tmp_path: Path, teacher: str, log: str) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "cord_proxy", "distill",
        "--input", str(_input(tmp_path)),
        "--output", str(tmp_path / "traces.jsonl"),
        "--teacher-url", teacher,
        "--ray", "local",
        "--ray-actors", "2",
        "--concurrency", "4",
        "--retries", "1",
        "--cord", json.dumps(CORD),
    ]  # fmt: skip
    with (tmp_path / log).open("wb") as out:
        return subprocess.Popen(
            command,
            cwd=Path(__file__).resolve().parents[2],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _finish(proc: subprocess.Popen[bytes]) -> int:
    try:
        return proc.wait(timeout=RUN_TIMEOUT_S)
    finally:
        _kill_group(proc.pid)


def _kill_group(pgid: int) -> None:
    """The driver and the Ray processes it started share its process group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _records(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _settled_shard_records(tmp_path: Path, quiet_s: float = 5.0) -> list[dict[str, object]]:
    """The shards' records once no write has landed for `quiet_s` seconds: a Ray worker of
    the killed driver may still be finishing one record after the process group is gone."""
    deadline = time.monotonic() + 120
    records = _shard_records(tmp_path)
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = _shard_records(tmp_path)
        if len(now) != len(records):
            records, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            return records
    raise AssertionError("the shards kept growing for 2 minutes after the driver was killed")


def _shards(tmp_path: Path) -> list[Path]:
    return sorted(tmp_path.glob("traces.jsonl.ray.*.jsonl"))


def _shard_records(tmp_path: Path) -> list[dict[str, object]]:
    return [r for shard in _shards(tmp_path) for r in _records(shard)]


def _wait_for(what: str, check: Callable[[], bool], proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not check():
        assert proc.poll() is None, f"the driver exited (status {proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def _stage_actor_pids() -> list[int]:
    """The live CoRD stage actors' PIDs, by the process title Ray gives an actor's worker
    (``ray::MapWorker(MapBatches(CordStage))...``). Joining the cluster as a second driver
    to read its actor table fails on hosts whose node address a second driver cannot
    resolve, so the process table is read instead."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if title.startswith(STAGE_ACTOR_TITLE):
            pids.append(int(entry.name))
    return pids


def _live_stage_actors(proc: subprocess.Popen[bytes]) -> list[int]:
    """The stage actors alive now, polled until both are up. On a busy 2-core machine the
    first actor can finish records while the second is still starting; after
    `ACTORS_UP_S` the one that is alive is enough to kill."""
    deadline = time.monotonic() + ACTORS_UP_S
    while True:
        pids = _stage_actor_pids()
        if len(pids) == 2 or (pids and time.monotonic() > deadline):
            return pids
        assert proc.poll() is None, f"the driver exited (status {proc.returncode}), actors {pids}"
        assert time.monotonic() < deadline + RUN_TIMEOUT_S, "no stage actor came up"
        time.sleep(1)


def _check_output(tmp_path: Path) -> list[dict[str, object]]:
    records = _records(tmp_path / "traces.jsonl")
    counts = Counter(str(r["id"]) for r in records)
    assert sorted(counts) == sorted(f"p{i}" for i in range(PROBLEMS))
    assert max(counts.values()) == 1, [k for k, n in counts.items() if n > 1]
    assert all(r["schema"] == "cord-trace/1" and r["reasoning"] for r in records)
    assert _shards(tmp_path) == [], "the shards are merged and removed at the end"
    return records


def test_distill_on_local_ray_writes_every_problem_once(local_teacher: str, tmp_path: Path) -> None:
    proc = _start(tmp_path, local_teacher, "run.log")
    status = _finish(proc)
    log = (tmp_path / "run.log").read_text(errors="replace")
    assert status == 0, log[-3000:]
    _check_output(tmp_path)
    assert "this run:   24 done, 0 failed" in log
    assert not (tmp_path / "traces.failures.jsonl").exists()


def test_an_actor_killed_partway_is_retried_by_ray(tap: TeacherTap, tmp_path: Path) -> None:
    proc = _start(tmp_path, tap.base_url, "run.log")
    try:
        with _holding_the_last(tap):
            _wait_for("3 finished records", lambda: len(_shard_records(tmp_path)) >= 3, proc)
            pids = _live_stage_actors(proc)
            done_before = len({r["id"] for r in _shard_records(tmp_path)})
            os.kill(pids[0], signal.SIGKILL)
        assert done_before < PROBLEMS, "the actor must die partway through"
    except BaseException:
        _kill_group(proc.pid)
        raise
    status = _finish(proc)
    assert status == 0, (tmp_path / "run.log").read_text(errors="replace")[-3000:]
    _check_output(tmp_path)


def test_a_killed_driver_resumes_without_redoing_ids(tap: TeacherTap, tmp_path: Path) -> None:
    first = _start(tmp_path, tap.base_url, "first.log")
    with _holding_the_last(tap):
        try:
            _wait_for("6 finished records", lambda: len(_shard_records(tmp_path)) >= 6, first)
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
        finally:
            _kill_group(first.pid)  # the Ray processes the killed driver left behind
        before = {str(r["id"]): r["request_id"] for r in _settled_shard_records(tmp_path)}
    assert 6 <= len(before) < PROBLEMS
    second = _start(tmp_path, tap.base_url, "second.log")
    status = _finish(second)
    log = (tmp_path / "second.log").read_text(errors="replace")
    assert status == 0, log[-3000:]
    assert f"resumed:    {len(before)} already" in log
    assert f"this run:   {PROBLEMS - len(before)} done, 0 failed" in log
    records = _check_output(tmp_path)
    kept = {str(r["id"]): r["request_id"] for r in records if str(r["id"]) in before}
    assert kept == before, "records finished before the kill are kept, not redone"
