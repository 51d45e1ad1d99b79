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
CACHED_GROWTH = 1.5
CACHED_SPEEDUP = 10.0
LONG_STEPS = 12
LONG_CONTEXT = 1200


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


def scoring_targets(scoring: dict[str, Any]) -> list[Target]:
    growth_name, growth_goal = "cached scoring, largest / smallest context", f"<= {CACHED_GROWTH}"
    speed_name, speed_goal = "prompt_logprobs / cached, largest context", f">= {CACHED_SPEEDUP}"
    if not _measured(scoring):
        return [
            Target(growth_name, growth_goal, None, None, "not run"),
            Target(speed_name, speed_goal, None, None, "not run"),
        ]
    ratios = scoring["ratios"]
    growth = ratios.get("cached_large_over_small")
    speedup = ratios.get("prompt_logprobs_over_cached_large")
    note = f"contexts {scoring['settings']['contexts']}, medians of {scoring['settings']['runs']}"
    return [
        Target(growth_name, growth_goal, growth, _ok(growth, (growth or 0) <= CACHED_GROWTH), note),
        Target(
            speed_name, speed_goal, speedup, _ok(speedup, (speedup or 0) >= CACHED_SPEEDUP), note
        ),
    ]


def long_targets(long: dict[str, Any]) -> list[Target]:
    name, goal = "CoRD / curation wall, long decode", f"<= {CORD_CURATION_WALL}"
    if not _measured(long):
        return [Target(name, goal, None, None, "not run")]
    targets = []
    for method, ratio in long["cord_curation_wall_ratio"].items():
        run = long["cord"][method]
        long_enough = run["steps"] >= LONG_STEPS and run["final_context_tokens"] > LONG_CONTEXT
        note = f"{method}: {run['steps']} steps, context {run['final_context_tokens']} tokens" + (
            "" if long_enough else f" (short of {LONG_STEPS} steps / {LONG_CONTEXT} tokens)"
        )
        targets.append(
            Target(f"{name} ({method})", goal, ratio, _ok(ratio, ratio <= CORD_CURATION_WALL), note)
        )
    return targets


def judge(results: dict[str, Any]) -> list[Target]:
    return [
        *fanout_targets(results["fanout"]),
        *load_targets(results["load"]),
        *real_targets(results["real"]),
        *scoring_targets(results.get("scoring", {"skipped": "not run"})),
        *long_targets(results.get("long", {"skipped": "not run"})),
    ]
