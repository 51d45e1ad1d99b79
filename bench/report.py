"""The results of one run: machine, settings, figures and targets, as JSON and Markdown."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from cord_proxy.data.jsonl import finite


@dataclass(frozen=True)
class Target:
    name: str
    goal: str
    value: float | None
    met: bool | None  # None: not measured in this run
    note: str = ""


def machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "python": sys.version.split()[0],
        "memory_gib": _memory_gib(),
        "load_average_at_start": list(os.getloadavg()),
        "packages": {name: _version(name) for name in ("cord-proxy", "httpx", "aiohttp")},
    }


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        first = Path("/proc/meminfo").read_text().splitlines()[0]
        return round(int(first.split()[1]) / 1024**2, 1)
    except (OSError, IndexError, ValueError):
        return None


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_num(c) for c in row) + " |" for row in rows]
    return lines


def _skipped(section: dict[str, Any]) -> str | None:
    if "skipped" in section:
        return f"skipped: {section['skipped']}".replace("skipped: skipped: ", "skipped: ")
    if "error" in section:
        return f"failed: {section['error']}"
    return None


_GC_AS = {"server": "cord-proxy serve and distill set it", "python": "Python starts"}


def _runs(fanout: dict[str, Any]) -> str:
    runs = fanout["runs"]
    return f"each figure the median of {runs} runs" if runs > 1 else "one run"


def _range(measured: dict[str, Any]) -> str:
    low, high = measured["proxy_cpu_ms_per_call_range"]
    return f"{low:.3f} to {high:.3f}"


def _fanout_md(fanout: dict[str, Any]) -> list[str]:
    lines = ["## Fan-out efficiency (in-process `cord_proxy.decode`)", ""]
    if (reason := _skipped(fanout)) is not None:
        return [*lines, reason, ""]
    single, many = fanout["single"], fanout["concurrent"]
    lines.append(
        f"B={fanout['beam_width']}, K={len(fanout['teachers'])} teachers "
        f"({', '.join(fanout['teachers'])}), {fanout['steps']} steps; simulated teachers; "
        f"garbage collector as {_GC_AS[fanout.get('gc', 'python')]}; {_runs(fanout)}."
    )
    lines.append("")
    rows = [
        ["wall time, one decode (s)", single["wall_s"], single["ideal_s"]],
        ["efficiency = ideal / wall", single["efficiency"], ">= 0.95"],
        [
            "DecodeResult rounds critical path + answer wait (s)",
            single["rounds_critical_s"],
            single["ideal_s"],
        ],
        ["rounds-based efficiency", single["rounds_efficiency"], ""],
        ["added latency, one decode (s)", single["added_latency_s"], 0.0],
        ["simulator's own lag beyond its latency, p99 (s)", single["sim_lag_p99_s"], 0.0],
        ["candidates per step", single["candidates_per_step"], ""],
        ["teacher calls, one decode", single["teacher_calls"], ""],
        ["proxy CPU per teacher call, one decode (ms)", single["proxy_cpu_ms_per_call"], "<= 0.5"],
        ["the same, lowest and highest run (ms)", _range(single), ""],
        [f"wall time, {many['decodes']} concurrent decodes (s)", many["wall_s"], many["ideal_s"]],
        ["efficiency, concurrent decodes", many["efficiency"], ""],
        ["simulator lag p99, concurrent decodes (s)", many["sim_lag_p99_s"], 0.0],
        ["teacher calls, concurrent decodes", many["teacher_calls"], ""],
        [
            "proxy CPU per teacher call, concurrent decodes (ms)",
            many["proxy_cpu_ms_per_call"],
            "<= 0.5",
        ],
        ["the same, lowest and highest run (ms)", _range(many), ""],
    ]
    return [*lines, *_table(["measure", "value", "ideal / target"], rows), ""]


def _load_md(load: dict[str, Any]) -> list[str]:
    lines = ["## Load through the proxy HTTP server", ""]
    if (reason := _skipped(load)) is not None:
        return [*lines, reason, ""]
    lines.append(
        f"B={load['beam_width']}, K={len(load['teachers'])}, scorers {load['scorers']}, "
        f"{load['steps']} steps per request; simulated latencies x{load['time_scale']:g} "
        "on top of the fan-out arm's; closed-loop clients; latencies in seconds."
    )
    lines.append("")
    header = [
        "clients",
        "requests",
        "errors",
        "req/s",
        "ideal req/s",
        "ratio",
        "p50",
        "ideal p50",
        "p99",
        "ideal p99",
        "added latency",
        "teacher calls",
        "proxy CPU ms/call",
        "proxy CPU busy",
        "sim CPU s",
        "sim lag p99",
    ]
    rows = [
        [
            lv["concurrency"],
            lv["requests"],
            lv["errors"],
            lv["throughput_rps"],
            lv["ideal_throughput_rps"],
            lv["throughput_ratio"],
            lv["p50_s"],
            lv["ideal_p50_s"],
            lv["p99_s"],
            lv["ideal_p99_s"],
            lv["added_latency_mean_s"],
            lv["teacher_calls"],
            lv["proxy_cpu_ms_per_call"],
            lv["proxy_cpu_busy"],
            lv["sim_cpu_s"],
            lv["sim_lag_p99_s"],
        ]
        for lv in load["levels"]
    ]
    lines += _table(header, rows)
    examples = [e for lv in load["levels"] for e in lv["error_examples"]]
    if examples:
        lines += ["", "Errors, for example: " + "; ".join(examples[:3])]
    return [*lines, ""]


def _real_md(real: dict[str, Any]) -> list[str]:
    lines = ["## Real teachers: CoRD vs curation vs one teacher", ""]
    if (reason := _skipped(real)) is not None:
        return [*lines, reason, ""]
    s = real["settings"]
    lines.append(
        f"{s['model']} at {s['base_url']}; teachers {real['teachers']}; {s['problems']} problems, "
        f"B={s['beam_width']}, max_steps={s['max_steps']}, {s['step_tokens']} tokens per step, "
        f"{s['answer_tokens']} answer tokens."
    )
    lines.append("")
    rows = [
        [
            arm,
            r["wall_s"],
            r["wall_s_per_problem"],
            r["teacher_tokens"],
            r["teacher_calls"],
            r["mean_score"],
            r["accuracy"],
        ]
        for arm, r in real["arms"].items()
    ]
    lines += _table(
        [
            "arm",
            "wall s",
            "wall s / problem",
            "teacher tokens",
            "teacher calls",
            "mean predictive score",
            "answer accuracy",
        ],
        rows,
    )
    lines += ["", f"CoRD / curation wall: {_num(real['cord_curation_wall_ratio'])} (target <= 1.3)"]
    return [*lines, ""]


def _scoring_md(scoring: dict[str, Any]) -> list[str]:
    lines = ["## Scoring cost: cached one-token reads vs prompt_logprobs (real teacher)", ""]
    if (reason := _skipped(scoring)) is not None:
        return [*lines, reason, ""]
    s = scoring["settings"]
    lines.append(
        f"{s['model']} at {s['base_url']}; {s['candidates']} candidates of one step, "
        f"{s['mode']} mode; median of {s['runs']} runs, each on a fresh context read once first."
    )
    lines.append("")
    rows = [
        [
            row["context"],
            "/".join(str(t) for t in row["context_tokens"]),
            row["method"],
            ", ".join(row["methods_used"]),
            row["median_s"],
            ", ".join(f"{x:.3f}" for x in row["runs_s"]),
            row.get("propose_median_s"),
            ", ".join(f"{k} {v:.2f}" for k, v in row.get("requests_per_candidate", {}).items()),
        ]
        for row in scoring["rows"]
    ]
    header = ["context", "scored at (tokens)", "method", "used", "median s", "runs s"]
    header += ["proposal s", "requests per candidate"]
    lines += _table(header, rows)
    lines.append("")
    lines += [f"{name}: {_num(value, 2)}" for name, value in scoring["ratios"].items()]
    return [*lines, ""]


def _long_md(long: dict[str, Any]) -> list[str]:
    lines = ["## Long decode: round time by step, by scoring method (real teacher)", ""]
    if (reason := _skipped(long)) is not None:
        return [*lines, reason, ""]
    methods = list(long["cord"])
    by_step = {m: {r["step"]: r for r in long["cord"][m]["rounds"]} for m in methods}
    steps = sorted({step for rounds in by_step.values() for step in rounds})
    rows = []
    for step in steps:
        row: list[Any] = [step]
        for m in methods:
            r = by_step[m].get(step)
            row += [None, None, None] if r is None else [r["wall_s"], r["propose_s"], r["score_s"]]
        rows.append(row)
    header = ["step"]
    for m in methods:
        header += [f"{m} round s", f"{m} propose s", f"{m} score s"]
    lines += _table(header, rows)
    lines.append("")
    rows = [
        [
            m,
            long["cord"][m]["wall_s"],
            long["cord"][m]["steps"],
            long["cord"][m]["final_context_tokens"],
            long["cord_curation_wall_ratio"][m],
        ]
        for m in methods
    ]
    header = ["method", "decode wall s", "steps", "final context tokens", "CoRD / curation wall"]
    lines += _table(header, rows)
    lines += ["", f"Curation at the same budget: {_num(long['curation']['wall_s'])} s wall."]
    return [*lines, ""]


def faults_md(result: dict[str, Any]) -> list[str]:
    lines = ["## Fault injection (real proxy server, FAKE teachers)", ""]
    if "phases" not in result and "rotation" not in result:
        return [*lines, f"{result.get('skipped') or result.get('error')}", ""]
    if "phases" in result:
        lines += _classic_md(result)
    if "rotation" in result:
        lines += rotation_md(result["rotation"], result["settings"])
    return lines


def _classic_md(result: dict[str, Any]) -> list[str]:
    s = result["settings"]
    teachers = result["teachers"]
    lines = [
        f"{s['concurrency']} clients, {s['requests_per_phase']} requests a phase, "
        f"{result['total_requests']} in all. Teachers {', '.join(teachers['steady'])} (one "
        f"process) and {teachers['faulty']} (the faulty process); scorers "
        f"{', '.join(teachers['scorers'])}. Teacher timeout "
        f"{s['teacher_timeout_s']:g} s, round_timeout {s['round_timeout_s']:g} s, request "
        f"deadline {s['request_timeout_s']:g} s, breaker {s['breaker_threshold']} failures / "
        f"{s['breaker_cooldown_s']:g} s cooldown.",
        "",
    ]
    header = ["phase", "requests", "200", "4xx", "502/504", "bad 5xx", "hangs", "p50 s"]
    header += ["p99 s", "max s", "deadline s", "degraded 200", "circuit_open", "p50 after open"]
    keys = ["phase", "requests", "ok_200", "client_4xx", "clean_5xx", "bad_5xx", "hangs"]
    keys += ["p50_s", "p99_s", "max_s", "deadline_s", "degraded_200", "circuit_open_answers"]
    header.append("breakers at phase end (/metrics)")
    rows = [
        [*(p[k] for k in [*keys, "p50_after_open_s"]), _breakers(p["breakers_at_end"])]
        for p in result["phases"]
    ]
    lines += _table(header, rows)
    codes = [
        f"- {p['phase']}: {p['failure_codes'] or 'none'}; answers that met an open breaker, "
        f"by teacher: {p['circuit_open_by_teacher'] or 'none'}"
        for p in result["phases"]
    ]
    lines += ["", "Failure codes in `cord.failures` (200 answers):", "", *codes]
    for title, key in (("Problems", "problem_examples"), ("Error answers", "error_examples")):
        examples = [f"{p['phase']}: {e}" for p in result["phases"] for e in p[key]]
        if examples:
            lines += ["", f"{title}:", "", *(f"- {e}" for e in examples)]
    return [*lines, ""]


def rotation_md(rotation: dict[str, Any], s: dict[str, Any]) -> list[str]:
    lines = [
        "### Rotating kill",
        "",
        f"Three FAKE teacher processes (t1, t2, t3, each proposing and scoring), one SIGKILLed "
        f"every {s['rotate_every_s']:g} s in turn and listening again {s['rotate_down_s']:g} s "
        f"later; {s['concurrency']} clients, {rotation['requests']} requests (every "
        f"{s['rotate_stream_every']}th streamed), {rotation['kills']} kills in "
        f"{rotation['wall_s']:.1f} s; each port refused for {_num(rotation['down_s_p50'])} s "
        f"(median; longest {_num(rotation['down_s_max'])} s), measured from the kill to the "
        f"next process's bind. Teacher timeout {s['teacher_timeout_s']:g} s, breaker "
        f"{s['breaker_threshold']} failures / {s['breaker_cooldown_s']:g} s longest cooldown.",
        "",
    ]
    header = ["requests", "answered 200", "share", "degraded 200", "failed", "failed streams"]
    header += ["longest refusal s", "hangs", "past deadline", "p50 s", "p99 s", "max s"]
    keys = ["requests", "answered_200", "answered_share", "degraded_200", "failed"]
    keys += ["failed_streams", "refusal_stretch_s", "hangs", "past_deadline", "p50_s", "p99_s"]
    lines += _table(header, [[*(rotation[k] for k in keys), rotation["max_s"]]])
    lines += ["", f"Failure codes in `cord.failures`: {rotation['failure_codes'] or 'none'}"]
    if rotation["failure_examples"]:
        lines += ["", "Failed requests:", "", *(f"- {e}" for e in rotation["failure_examples"])]
    return [*lines, ""]


def _breakers(states: dict[str, str]) -> str:
    """The breakers that are not closed, or "all closed"; n/a when /metrics shows none."""
    if not states:
        return "n/a"
    odd = [f"{name} {state}" for name, state in states.items() if state != "closed"]
    return ", ".join(odd) or "all closed"


def _targets_md(targets: list[Target]) -> list[str]:
    rows = [
        [
            t.name,
            t.goal,
            t.value,
            "n/a" if t.met is None else ("MET" if t.met else "MISSED"),
            t.note,
        ]
        for t in targets
    ]
    return ["## Targets", "", *_table(["target", "goal", "value", "status", "note"], rows), ""]


def markdown(results: dict[str, Any], targets: list[Target]) -> str:
    m = results["machine"]
    lines = [
        f"# cord-proxy benchmark, {results['timestamp']}",
        "",
        f"Machine: {m['cpu_count']} CPUs ({m['processor']}), {m['memory_gib']} GiB, "
        f"{m['platform']}, Python {m['python']}; load average at start "
        f"{', '.join(f'{x:.2f}' for x in m['load_average_at_start'])}, at end "
        f"{', '.join(f'{x:.2f}' for x in m['load_average_at_end'])}.",
        "",
        "Settings: `" + json.dumps(results["settings"], separators=(",", ":")) + "`",
        "",
    ]
    lines += _fanout_md(results["fanout"])
    lines += _load_md(results["load"])
    lines += _real_md(results["real"])
    lines += _scoring_md(results.get("scoring", {"skipped": "not run"}))
    lines += _long_md(results.get("long", {"skipped": "not run"}))
    if "faults" in results:
        lines += faults_md(results["faults"])
    lines += _targets_md(targets)
    return "\n".join(lines)


def write(results: dict[str, Any], targets: list[Target], out_dir: Path) -> tuple[Path, Path, str]:
    """Write ``<timestamp>.json`` and ``.md``; return both paths and the Markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / results["timestamp"]
    payload = {**results, "targets": [t.__dict__ for t in targets]}
    json_path = stem.with_suffix(".json")
    json_path.write_text(json.dumps(finite(payload), indent=2, allow_nan=False) + "\n")
    text = markdown(results, targets)
    md_path = stem.with_suffix(".md")
    md_path.write_text(text + "\n")
    return json_path, md_path, text
