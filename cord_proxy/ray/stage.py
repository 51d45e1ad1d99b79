"""The Ray Data stage: problem rows (``distill``'s input schema) in, trace records out.

Each actor of the pool builds its teacher clients once (from a config file, or the embedded
default on a teacher URL) and decodes with ``distill``'s in-process engine, with the shared
retries (``cord_proxy.attempts``). A problem that fails becomes a row with ``error`` set, never
a failed job.

Output rows are the dataset's trace records (``cord-trace/1``) plus three columns, so that
records and failures share one schema: ``error`` (None on success), ``kind`` and ``attempts``.
Nested values that Arrow cannot hold as one type travel as Python objects.

With ``shard_dir`` set (``distill --ray``), each actor also appends every finished record to
its own shard file there, one ``write`` and ``fsync`` each, before returning its row.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cord_proxy.attempts import ProblemFailed, with_retries
from cord_proxy.concurrency import gather_or_cancel
from cord_proxy.data.jsonl import append_record
from cord_proxy.distill.arguments import engine_config
from cord_proxy.distill.engines import LocalEngine
from cord_proxy.distill.preflight import DEFAULT_TEACHER_URL
from cord_proxy.distill.problems import parse_problem

if TYPE_CHECKING:
    import ray.data

    from cord_proxy.config import CordConfig


DEFAULT_ACTORS = 2
DEFAULT_CONCURRENCY_PER_ACTOR = 4
# An actor mostly waits on teachers: half a CPU each leaves room for Ray Data's own tasks
# (the repartition), which otherwise wait forever behind a pool that holds every CPU.
DEFAULT_CPUS_PER_ACTOR = 0.5
SHARD_SUFFIX = ".jsonl"


class ArrowBatch(Protocol):
    """What the stage reads of a ``pyarrow.Table`` batch."""

    def to_pylist(self) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class StageSettings:
    """What every actor needs to build its engine; plain data, so Ray can ship it."""

    config: str | None = None
    teacher_url: str = DEFAULT_TEACHER_URL
    model: str | None = None
    cord: dict[str, Any] = field(default_factory=dict)
    timeout_s: float | None = None
    retries: int = 2
    retry_backoff_s: float = 1.0
    concurrency_per_actor: int = DEFAULT_CONCURRENCY_PER_ACTOR
    cpus_per_actor: float = DEFAULT_CPUS_PER_ACTOR
    shard_dir: str | None = None
    shard_stem: str = "shard"


def load_stage_config(settings: StageSettings) -> tuple[CordConfig, str]:
    """The config (a file, or the embedded default on the teacher URL) and the ensemble."""
    return engine_config(settings.config, settings.teacher_url, settings.model)


def build_engine(settings: StageSettings) -> LocalEngine:
    """The in-process engine of `distill`, built once per actor."""
    config, model = load_stage_config(settings)
    timeout = settings.timeout_s or config.server.request_timeout
    return LocalEngine(config, model, dict(settings.cord), timeout)


def shard_path(settings: StageSettings, actor: str) -> Path | None:
    if settings.shard_dir is None:
        return None
    return Path(settings.shard_dir) / f"{settings.shard_stem}.{actor}{SHARD_SUFFIX}"


def _actor_name() -> str:
    """This actor's Ray id (stable across restarts of the same actor), or the process id."""
    try:
        import ray

        return str(ray.get_runtime_context().get_actor_id())[:16]
    except Exception:
        return f"pid{os.getpid()}"


class CordStage:
    """The callable class for ``map_batches``: one engine per actor, rows decoded at once."""

    def __init__(self, settings: StageSettings):
        self.settings = settings
        self.engine = build_engine(settings)
        self.shard = shard_path(settings, _actor_name())
        self.slots = asyncio.Semaphore(max(1, settings.concurrency_per_actor))

    async def __call__(self, batch: ArrowBatch) -> dict[str, list[Any]]:
        rows = await gather_or_cancel(*(self.solve_row(row) for row in batch.to_pylist()))
        return columns(rows)

    async def solve_row(self, row: dict[str, Any]) -> dict[str, Any]:
        """One problem row as a trace record, or as a row carrying the error."""
        try:
            problem = parse_problem(_drop_nulls(row), line=0)
        except ValueError as bad:
            return failure_row(row.get("id"), ProblemFailed(str(bad), "bad_input", False), 0)
        async with self.slots:
            record, error, attempts = await with_retries(
                lambda: self.engine.solve(problem),
                self.settings.retries,
                self.settings.retry_backoff_s,
            )
        if record is None:
            assert error is not None
            return failure_row(problem.id, error, attempts)
        if self.shard is not None:
            await asyncio.to_thread(append_record, self.shard, record)
        return {**record, "error": None, "kind": None, "attempts": attempts}


def _drop_nulls(row: dict[str, Any]) -> dict[str, Any]:
    """Columnar input gives every row every column, and every ``cord`` object every field
    any row set (as None): a problem has only its own fields."""
    return {
        k: _drop_nulls(v) if isinstance(v, dict) else v for k, v in row.items() if v is not None
    }


def failure_row(problem_id: Any, error: ProblemFailed, attempts: int) -> dict[str, Any]:
    return {"id": problem_id, "error": error.message, "kind": error.kind, "attempts": attempts}


def columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Rows as one column per key seen (a key a row lacks is None there)."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    return {key: [row.get(key) for row in rows] for key in keys}


def apply_cord(
    dataset: ray.data.Dataset,
    settings: StageSettings | None = None,
    *,
    num_actors: int = DEFAULT_ACTORS,
) -> ray.data.Dataset:
    """The dataset's problem rows decoded by a pool of `num_actors` actors.

    Each actor runs up to ``settings.concurrency_per_actor`` decodes at once, so the pool
    keeps ``num_actors * concurrency_per_actor`` problems in flight. Rows are cut into
    one-row blocks (a streaming repartition) so that every actor gets work at once. Ray Data
    restarts a crashed actor and retries its tasks (its actor pool's defaults: unlimited).
    """
    from ray.data import ActorPoolStrategy

    settings = settings or StageSettings()
    calls = max(1, settings.concurrency_per_actor)
    return dataset.repartition(target_num_rows_per_block=1).map_batches(
        CordStage,
        fn_constructor_kwargs={"settings": settings},
        batch_size=1,
        batch_format="pyarrow",
        compute=ActorPoolStrategy(
            size=max(1, num_actors),
            max_concurrent_calls_per_actor=calls,
            max_tasks_in_flight_per_actor=calls,
        ),
        num_cpus=settings.cpus_per_actor,
    )
