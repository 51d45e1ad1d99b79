"""The issue's targets, judged against one run's figures. A miss is reported, never hidden."""

from __future__ import annotations

import math
from typing import Any

from bench.longdecode import score_share
from bench.report import Target

FANOUT_EFFICIENCY = 0.95
CPU_MS_PER_CALL = 0.5
LOAD_CONCURRENCY = 256
LOAD_THROUGHPUT_RATIO = 0.90
CORD_CURATION_WALL = 1.3
LONG_CURATION_WALL = 1.1
LONG_SCORE_SHARE = 0.2  # of each round's critical path
STALL_P50_RATIO = 1.5
ROTATE_ANSWERED = 0.99
ROTATE_REFUSAL_S = 3.0
DEADLINE_SLACK_S = 0.5  # transport and scheduling on a shared machine
CACHED_GROWTH = 1.3
CACHED_SPEEDUP = 50.0
COMPLETIONS_PER_ROUND = 2  # cached reads per round and scoring model
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
    reads_name, reads_goal = "cached reads per round", f"<= {COMPLETIONS_PER_ROUND}"
    if not _measured(scoring):
        return [
            Target(name, goal, None, None, "not run")
            for name, goal in (
                (growth_name, growth_goal),
                (speed_name, speed_goal),
                (reads_name, reads_goal),
            )
        ]
    ratios = scoring["ratios"]
    growth = ratios.get("cached_large_over_small")
    speedup = ratios.get("prompt_logprobs_over_cached_large")
    settings = scoring["settings"]
    note = f"contexts {settings['contexts']}, medians of {settings['runs']}"
    cached = [row for row in scoring["rows"] if row["method"] == "cached"]
    reads = max(
        (row["requests_per_candidate"].get("completions", 0.0) for row in cached),
        default=None,
    )
    per_round = None if reads is None else reads * settings["candidates"]
    return [
        Target(growth_name, growth_goal, growth, _ok(growth, (growth or 0) <= CACHED_GROWTH), note),
        Target(
            speed_name, speed_goal, speedup, _ok(speedup, (speedup or 0) >= CACHED_SPEEDUP), note
        ),
        Target(
            reads_name,
            reads_goal,
            per_round,
            _ok(per_round, (per_round or 0) <= COMPLETIONS_PER_ROUND),
            f"{settings['candidates']} candidates, the most of any context",
        ),
    ]


def long_targets(long: dict[str, Any]) -> list[Target]:
    name, goal = "CoRD / curation wall, long decode", f"<= {LONG_CURATION_WALL}"
    share_name, share_goal = "scoring share of each round, long decode", f"<= {LONG_SCORE_SHARE}"
    if not _measured(long):
        return [
            Target(name, goal, None, None, "not run"),
            Target(share_name, share_goal, None, None, "not run"),
        ]
    targets = []
    for method, ratio in long["cord_curation_wall_ratio"].items():
        run = long["cord"][method]
        long_enough = run["steps"] >= LONG_STEPS and run["final_context_tokens"] > LONG_CONTEXT
        note = f"{method}: {run['steps']} steps, context {run['final_context_tokens']} tokens" + (
            "" if long_enough else f" (short of {LONG_STEPS} steps / {LONG_CONTEXT} tokens)"
        )
        targets.append(
            Target(f"{name} ({method})", goal, ratio, _ok(ratio, ratio <= LONG_CURATION_WALL), note)
        )
        share = max((score_share(r) for r in run["rounds"]), default=math.nan)
        targets.append(
            Target(
                f"{share_name} ({method})",
                share_goal,
                share,
                _ok(share, share <= LONG_SCORE_SHARE),
                f"{method}: the largest over {run['steps']} rounds",
            )
        )
    return targets


def stall_ratio(result: dict[str, Any]) -> float:
    """p50 with the teacher stalled (after its breaker opened) over the no-fault p50."""
    by_phase = {p["phase"]: p for p in result.get("phases", [])}
    if "baseline" not in by_phase or "stall" not in by_phase:
        return math.nan
    ratio: float = by_phase["stall"]["p50_after_open_s"] / by_phase["baseline"]["p50_s"]
    return ratio


def fault_targets(result: dict[str, Any]) -> list[Target]:
    """The issue's targets; a run that failed or was skipped reports them as not run."""
    names = ("zero 500s", "zero hangs", "every request within its deadline", "stall p50")
    if "phases" not in result:
        return [Target(f"faults: {n}", "", None, None, "not run") for n in names]
    phases = result["phases"]
    bad = sum(p["bad_5xx"] + p["status_500"] for p in phases)
    hangs = sum(p["hangs"] for p in phases)
    late = sum(p["past_deadline"] for p in phases)
    worst = max(p["max_s"] for p in phases)
    ratio = stall_ratio(result)
    total = result["total_requests"]
    return [
        Target(
            "faults: zero 500s",
            "0 (502/504 only as OpenAI error objects)",
            bad,
            bad == 0,
            f"{total} requests over {len(phases)} phases",
        ),
        Target("faults: zero hangs", "0", hangs, hangs == 0, "no answer at deadline + grace"),
        Target(
            "faults: every request within its deadline",
            f"max <= {result['settings']['request_timeout_s']:g} s",
            worst,
            late == 0,
            f"{late} past the deadline (+{DEADLINE_SLACK_S:g} s slack)",
        ),
        Target(
            "faults: stall p50",
            f"<= {STALL_P50_RATIO}x no-fault p50",
            ratio,
            None if math.isnan(ratio) else ratio <= STALL_P50_RATIO,
            "requests started after the breaker opened",
        ),
    ]


def rotation_targets(result: dict[str, Any]) -> list[Target]:
    """The rotating-kill phase's targets (issue 20); none where the phase was not chosen."""
    rotation = result.get("rotation")
    if rotation is None:
        return []
    note = f"{rotation['requests']} requests, {rotation['kills']} kills"
    share, stretch = rotation["answered_share"], rotation["refusal_stretch_s"]
    return [
        Target(
            "rotate: answered 200 (degraded allowed)",
            f">= {ROTATE_ANSWERED:.0%}",
            share,
            _ok(share, share >= ROTATE_ANSWERED),
            f"{rotation['answered_200']} of {note}",
        ),
        Target(
            "rotate: longest stretch refusing everything",
            f"<= {ROTATE_REFUSAL_S:g} s",
            stretch,
            _ok(stretch, stretch <= ROTATE_REFUSAL_S),
            f"{rotation['failed']} failed requests",
        ),
        Target("rotate: zero hangs", "0", rotation["hangs"], rotation["hangs"] == 0, note),
        Target(
            "rotate: every request within its deadline",
            f"max <= {rotation['deadline_s']:g} s",
            rotation["max_s"],
            rotation["past_deadline"] == 0,
            f"{rotation['past_deadline']} past the deadline (+{DEADLINE_SLACK_S:g} s slack)",
        ),
    ]


def judge(results: dict[str, Any]) -> list[Target]:
    return [
        *fanout_targets(results["fanout"]),
        *load_targets(results["load"]),
        *real_targets(results["real"]),
        *scoring_targets(results.get("scoring", {"skipped": "not run"})),
        *long_targets(results.get("long", {"skipped": "not run"})),
        *fault_targets(results.get("faults", {"skipped": "not run"})),
        *rotation_targets(results.get("faults", {})),
    ]
