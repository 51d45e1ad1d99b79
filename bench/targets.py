"""The issue's targets, judged against one run's figures. A miss is reported, never hidden."""

from __future__ import annotations

import math
from typing import Any

from bench.report import Target

FANOUT_EFFICIENCY = 0.95
CPU_MS_PER_CALL = 0.5
LOAD_CONCURRENCY = 256
LOAD_THROUGHPUT_RATIO = 0.90
CORD_CURATION_WALL = 1.3


def _measured(section: dict[str, Any]) -> bool:
    return "skipped" not in section and "error" not in section


def _ok(value: float | None, passes: bool) -> bool | None:
    return None if value is None or math.isnan(value) else passes


def fanout_targets(fanout: dict[str, Any]) -> list[Target]:
    if not _measured(fanout):
        return [
            Target("fan-out efficiency", f">= {FANOUT_EFFICIENCY}", None, None, "not run"),
            Target("proxy CPU per teacher call", f"<= {CPU_MS_PER_CALL} ms", None, None, "not run"),
        ]
    efficiency = fanout["single"]["efficiency"]
    cpu = max(
        fanout["single"]["proxy_cpu_ms_per_call"], fanout["concurrent"]["proxy_cpu_ms_per_call"]
    )
    return [
        Target(
            "fan-out efficiency",
            f">= {FANOUT_EFFICIENCY}",
            efficiency,
            _ok(efficiency, efficiency >= FANOUT_EFFICIENCY),
            "ideal / wall, one decode",
        ),
        Target(
            "proxy CPU per teacher call",
            f"<= {CPU_MS_PER_CALL} ms",
            cpu,
            _ok(cpu, cpu <= CPU_MS_PER_CALL),
            "in-process, worse of one decode and concurrent decodes",
        ),
    ]


def load_targets(load: dict[str, Any]) -> list[Target]:
    name = f"{LOAD_CONCURRENCY} concurrent requests"
    goal = f"0 errors, >= {LOAD_THROUGHPUT_RATIO:.0%} of ideal throughput"
    if not _measured(load) or not load["levels"]:
        return [Target(name, goal, None, None, "not run")]
    level = max(load["levels"], key=lambda lv: lv["concurrency"])
    ratio = level["throughput_ratio"]
    passes = level["errors"] == 0 and ratio >= LOAD_THROUGHPUT_RATIO
    note = f"at {level['concurrency']} clients: {level['errors']} errors"
    if level["concurrency"] != LOAD_CONCURRENCY:
        note += f" (this run's largest level, not {LOAD_CONCURRENCY})"
    return [Target(name, goal, ratio, _ok(ratio, passes), note)]


def real_targets(real: dict[str, Any]) -> list[Target]:
    goal = f"<= {CORD_CURATION_WALL}"
    if not _measured(real):
        return [Target("CoRD / curation wall", goal, None, None, "not run")]
    ratio = real["cord_curation_wall_ratio"]
    return [
        Target(
            "CoRD / curation wall",
            goal,
            ratio,
            _ok(ratio, ratio <= CORD_CURATION_WALL),
            "real teachers",
        )
    ]


def judge(results: dict[str, Any]) -> list[Target]:
    return [
        *fanout_targets(results["fanout"]),
        *load_targets(results["load"]),
        *real_targets(results["real"]),
    ]
