"""``cord-proxy distill --ray [ADDRESS]``: the same input, output and resume, decoded by Ray.

The problems not yet done go through the Ray Data stage (``cord_proxy.ray.stage``). Each
actor appends its finished records to its own shard next to the output
(``OUTPUT.ray.<actor>.jsonl``, one ``write`` and ``fsync`` each), so a driver killed at any
moment loses nothing finished. At the end the shards are merged into the output (the first
record of each id is kept) and removed. A rerun skips every id in the output or in a shard.
Progress, the failures file, the summary and the exit status are those of ``distill``.
With ``ADDRESS`` other than ``local``, the output's folder must be shared by every node.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from cord_proxy.attempts import ProblemFailed
from cord_proxy.data.jsonl import append_line, encode_line, read_records
from cord_proxy.distill import resume
from cord_proxy.distill.arguments import checked_cord
from cord_proxy.distill.errors import DistillError
from cord_proxy.distill.preflight import as_base_url, check_teachers
from cord_proxy.distill.problems import Problem
from cord_proxy.distill.resume import load_problems, pending
from cord_proxy.distill.settings import DistillSettings
from cord_proxy.distill.summary import Summary
from cord_proxy.progress import ProgressBar
from cord_proxy.ray.stage import StageSettings, apply_cord

LOCAL = "local"
LOCAL_CPUS = 2
MERGE_CHUNK = 1000
MAX_INPUT_BLOCKS = 4096


def shard_stem(output: Path) -> str:
    return f"{output.name}.ray"


def shard_files(output: Path) -> list[Path]:
    return sorted(output.parent.glob(f"{shard_stem(output)}.*.jsonl"))


def done_ids(output: Path, stream: TextIO) -> set[str]:
    """Ids already in the output or in any shard of it."""
    return resume.done_ids([output, *shard_files(output)], stream)


def merge_shards(output: Path) -> int:
    """Append each shard record whose id the output lacks (first one wins); remove shards."""
    seen = {str(r.get("id")) for r in read_records(output)}
    merged, chunk = 0, bytearray()
    shards = shard_files(output)
    for shard in shards:
        for record in read_records(shard):
            key = str(record.get("id"))
            if key in seen:
                continue
            seen.add(key)
            chunk += encode_line(record)
            merged += 1
            if merged % MERGE_CHUNK == 0:
                append_line(output, bytes(chunk))
                chunk.clear()
    if chunk:
        append_line(output, bytes(chunk))
    for shard in shards:
        shard.unlink(missing_ok=True)
    return merged


def start_ray(address: str) -> str:
    """Start (``local``) or join a Ray cluster; returns its GCS address."""
    import ray

    if address == LOCAL:
        context = ray.init(num_cpus=LOCAL_CPUS, include_dashboard=False, log_to_driver=False)
    else:
        context = ray.init(address=address, log_to_driver=False)
    info = getattr(context, "address_info", None) or {}
    return str(info.get("gcs_address", address))


def _row(problem: Problem) -> dict[str, Any]:
    return {
        "id": problem.id,
        "messages": problem.messages,
        "answer": problem.answer,
        "cord": problem.cord or None,
    }


def _failure(row: dict[str, Any], lines: dict[str, int]) -> dict[str, Any]:
    """A stage's failure row as a line of the failures file."""
    failure = ProblemFailed(row["error"], row["kind"], transient=False)
    return failure.record(row.get("id"), lines.get(str(row.get("id"))), row["attempts"])


def consume(
    rows: Any, settings: DistillSettings, todo: list[Problem], summary: Summary, stream: TextIO
) -> None:
    """Count every row as it streams back; failures go to the failures file."""
    lines = {p.key: p.line for p in todo}
    bar = ProgressBar(len(todo), stream=stream)
    bar.update(force=True)
    try:
        for row in rows:
            if row.get("error") is None:
                bar.succeeded(*summary.add(row))
            else:
                append_line(settings.failures, encode_line(_failure(row, lines)))
                summary.failed += 1
                bar.failure()
    except (KeyboardInterrupt, SystemExit):
        summary.interrupted = True
    finally:
        bar.close()


def run_ray_distill(
    settings: DistillSettings,
    stage: StageSettings,
    address: str,
    num_actors: int,
    stream: TextIO | None = None,
) -> Summary:
    """Decode every problem not yet done on Ray; merge the shards into the output."""
    stream = stream if stream is not None else sys.stderr
    summary = Summary()
    problems = load_problems(settings.input, summary, stream)
    settings.output.parent.mkdir(parents=True, exist_ok=True)
    done = done_ids(settings.output, stream)
    todo = pending(problems, done, summary, f"{settings.output} or its shards", stream)
    started = time.monotonic()
    if todo:
        _run_stage(settings, stage, address, num_actors, todo, summary, stream)
    merge_shards(settings.output)
    summary.wall_s = time.monotonic() - started
    summary.output_records = len(read_records(settings.output))
    return summary


def _run_stage(
    settings: DistillSettings,
    stage: StageSettings,
    address: str,
    num_actors: int,
    todo: list[Problem],
    summary: Summary,
    stream: TextIO,
) -> None:
    import ray
    import ray.data

    gcs = start_ray(address)
    print(
        f"cord-proxy distill: Ray cluster {gcs}: {num_actors} actors x "
        f"{stage.concurrency_per_actor} problems at once",
        file=stream,
        flush=True,
    )
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        dataset = ray.data.from_items(
            [_row(p) for p in todo], override_num_blocks=min(len(todo), MAX_INPUT_BLOCKS)
        )
        rows = apply_cord(dataset, stage, num_actors=num_actors).iter_rows()
        consume(rows, settings, todo, summary, stream)
    finally:
        ray.shutdown()


def stage_settings(args: Any, settings: DistillSettings) -> StageSettings:
    """``--concurrency`` stays the total: it is shared by the ``--ray-actors`` actors."""
    actors = max(1, args.ray_actors)
    return StageSettings(
        config=str(Path(args.config).resolve()) if args.config else None,
        teacher_url=as_base_url(args.teacher_url),
        model=args.model,
        cord=settings.cord,
        timeout_s=args.timeout,
        retries=settings.retries,
        retry_backoff_s=settings.retry_backoff_s,
        concurrency_per_actor=max(1, math.ceil(settings.concurrency / actors)),
        shard_dir=str(settings.output.parent.resolve()),
        shard_stem=shard_stem(settings.output),
    )


def _preflight(stage: StageSettings) -> None:
    from cord_proxy.ray.stage import load_stage_config

    config, model = load_stage_config(stage)
    asyncio.run(check_teachers(config, model))


def run_command(args: Any, settings: DistillSettings) -> int:
    """``distill --ray``: exit 0 all done, 1 some failed, 2 could not start, 130 interrupted."""
    try:
        if args.url:
            raise DistillError("--ray runs the engine in Ray actors; it cannot be used with --url")
        checked_cord(args, settings)
        stage = stage_settings(args, settings)
        _preflight(stage)
    except DistillError as error:
        print(f"cord-proxy distill: {error}", file=sys.stderr)
        return 2
    summary = run_ray_distill(settings, stage, args.ray, max(1, args.ray_actors))
    print(summary.render(settings), flush=True)
    return summary.exit_status
