"""``python -m bench``: run every arm, write bench/results/<timestamp>.json and .md, print it."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench import report
from bench.fanout import FanoutSettings, profile_concurrent, run_fanout
from bench.faults import QUICK as QUICK_FAULTS
from bench.faults import FaultSettings, run_faults
from bench.load import LoadSettings, run_load
from bench.longdecode import LongSettings, run_long
from bench.procs import REPO_ROOT, scratch_dir, sim_teachers
from bench.real import RealSettings, reachable, run_real
from bench.scenario import SimProfile
from bench.scoring import ScoringSettings, run_scoring
from bench.targets import judge

DEFAULT_OUT = REPO_ROOT / "bench" / "results"
ARMS = ("fanout", "load", "faults", "real", "scoring", "long")


@dataclass(frozen=True)
class Plan:
    sim: SimProfile
    fanout: FanoutSettings
    load: LoadSettings
    real: RealSettings
    scoring: ScoringSettings
    long: LongSettings
    skip_load: bool
    skip_real: bool
    skip_scoring: bool
    skip_long: bool
    skip_fanout: bool
    profile: bool
    faults: FaultSettings
    skip_faults: bool


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    p.add_argument("--quick", action="store_true", help="tiny settings: a smoke run in seconds")
    p.add_argument("--time-scale", type=float, help="multiply every simulated latency")
    p.add_argument("--seed", type=int, default=7, help="simulator seed (texts, jitter)")
    p.add_argument("--fanout-beam", type=int, help="B of the fan-out decode (4)")
    p.add_argument("--fanout-teachers", type=int, help="K simulated teachers (3)")
    p.add_argument("--fanout-steps", type=int, help="steps of the fan-out decode (10)")
    p.add_argument(
        "--fanout-gc",
        choices=("server", "python"),
        help="the garbage collector of the fan-out decodes: as cord-proxy serve and distill "
        "set it (server, the default) or as Python starts (python)",
    )
    p.add_argument("--cpu-decodes", type=int, help="concurrent decodes for CPU per call (16)")
    p.add_argument(
        "--fanout-runs", type=int, help="runs of each fan-out measure, reported as medians (3)"
    )
    p.add_argument("--load-levels", help="comma-separated client counts (1,16,64,256)")
    p.add_argument("--load-beam", type=int, help="B of each load request (2)")
    p.add_argument("--load-steps", type=int, help="steps of each load request (4)")
    p.add_argument("--load-scorers", type=int, help="how many teachers score, slowest first (1)")
    p.add_argument("--load-min-requests", type=int, help="requests of a level at least (2)")
    p.add_argument("--load-time-scale", type=float, help="load arm: latencies x this, on top (4.0)")
    p.add_argument("--proxy-python", default=sys.executable, help="python that runs cord_proxy")
    p.add_argument("--skip-load", action="store_true", help="skip the proxy server load arm")
    p.add_argument("--real-url", default=RealSettings.base_url, help="real teacher base URL")
    p.add_argument("--real-model", default=RealSettings.model)
    p.add_argument("--real-problems", type=int, default=RealSettings.problems)
    p.add_argument("--real-beam", type=int, default=RealSettings.beam_width)
    p.add_argument("--real-teachers", type=int, default=RealSettings.teachers)
    p.add_argument("--real-steps", type=int, default=RealSettings.max_steps)
    p.add_argument("--real-step-tokens", type=int, default=RealSettings.step_tokens)
    p.add_argument("--real-answer-tokens", type=int, default=RealSettings.answer_tokens)
    p.add_argument("--real-seed", type=int, help="sampling seed sent to the teachers (none)")
    p.add_argument("--skip-real", action="store_true", help="skip the real-teacher arms")
    p.add_argument("--faults-requests", type=int, help="requests per fault phase (300)")
    p.add_argument("--faults-concurrency", type=int, help="clients of the fault arm (64)")
    p.add_argument("--skip-faults", action="store_true", help="skip the fault-injection arm")
    p.add_argument("--only", help=f"comma-separated arms to run, of {','.join(ARMS)} (all)")
    p.add_argument("--skip-scoring", action="store_true", help="skip the scoring-cost arm")
    p.add_argument("--scoring-contexts", help="comma-separated context sizes (200,800,1600)")
    p.add_argument("--scoring-runs", type=int, help="runs per figure, the median is kept (3)")
    p.add_argument("--scoring-methods", help="comma-separated methods (cached,prompt_logprobs)")
    p.add_argument("--scoring-mode", choices=["reference", "step"], help="target (reference)")
    p.add_argument("--skip-long", action="store_true", help="skip the long-decode arm")
    p.add_argument("--long-steps", type=int, help="max steps of the long decode (16)")
    p.add_argument("--long-step-tokens", type=int, help="tokens per step of the long decode (64)")
    p.add_argument("--long-methods", help="comma-separated methods (cached,prompt_logprobs)")
    p.add_argument(
        "--profile",
        action="store_true",
        help="also write pyinstrument profiles of the engine and the server",
    )
    return p


def _given(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def plan_from(args: argparse.Namespace) -> Plan:
    sim = SimProfile(time_scale=0.05, steps=3) if args.quick else SimProfile()
    fanout = FanoutSettings(2, 3, 2, runs=1) if args.quick else FanoutSettings()
    load = (
        LoadSettings(levels=(1, 4), beam_width=2, steps=2, min_requests=2, time_scale=1.0)
        if args.quick
        else LoadSettings()
    )
    levels = tuple(int(x) for x in args.load_levels.split(",")) if args.load_levels else None
    sim = replace(
        sim, **_given(time_scale=args.time_scale, teachers=args.fanout_teachers, seed=args.seed)
    )
    fanout = replace(
        fanout,
        **_given(
            beam_width=args.fanout_beam,
            steps=args.fanout_steps,
            gc=args.fanout_gc,
            concurrent_decodes=args.cpu_decodes,
            runs=args.fanout_runs,
        ),
    )
    load = replace(
        load,
        proxy_python=args.proxy_python,
        profile_server=args.profile,
        **_given(
            levels=levels,
            beam_width=args.load_beam,
            steps=args.load_steps,
            scorers=args.load_scorers,
            min_requests=args.load_min_requests,
            time_scale=args.load_time_scale,
        ),
    )
    real = RealSettings(
        base_url=args.real_url,
        model=args.real_model,
        problems=args.real_problems,
        beam_width=args.real_beam,
        teachers=args.real_teachers,
        max_steps=args.real_steps,
        step_tokens=args.real_step_tokens,
        answer_tokens=args.real_answer_tokens,
        seed=args.real_seed,
    )
    return Plan(
        sim,
        fanout,
        load,
        real,
        scoring_settings(args),
        long_settings(args),
        args.skip_load or not _chosen(args, "load"),
        args.skip_real or not _chosen(args, "real"),
        args.skip_real or args.skip_scoring or not _chosen(args, "scoring"),
        args.skip_real or args.skip_long or not _chosen(args, "long"),
        not _chosen(args, "fanout"),
        args.profile,
        fault_settings(args),
        args.skip_faults or not _chosen(args, "faults"),
    )


def _chosen(args: argparse.Namespace, arm: str) -> bool:
    return not args.only or arm in args.only.split(",")


def _csv(text: str | None, kind: type) -> tuple[Any, ...] | None:
    return tuple(kind(x) for x in text.split(",")) if text else None


def fault_settings(args: argparse.Namespace) -> FaultSettings:
    return replace(
        QUICK_FAULTS if args.quick else FaultSettings(),
        proxy_python=args.proxy_python,
        **_given(requests_per_phase=args.faults_requests, concurrency=args.faults_concurrency),
    )


def scoring_settings(args: argparse.Namespace) -> ScoringSettings:
    quick = {"contexts": (200, 800), "runs": 1} if args.quick else {}
    given = _given(
        contexts=_csv(args.scoring_contexts, int),
        runs=args.scoring_runs,
        mode=args.scoring_mode,
        methods=_csv(args.scoring_methods, str),
    )
    return ScoringSettings(base_url=args.real_url, model=args.real_model, **{**quick, **given})


def long_settings(args: argparse.Namespace) -> LongSettings:
    quick = {"max_steps": 3, "step_tokens": 24} if args.quick else {}
    given = _given(
        max_steps=args.long_steps,
        step_tokens=args.long_step_tokens,
        methods=_csv(args.long_methods, str),
    )
    return LongSettings(base_url=args.real_url, model=args.real_model, **{**quick, **given})


async def _guarded(name: str, run: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """One arm; a crash is reported in the results instead of ending the run."""
    print(f"[bench] {name} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    try:
        result = await run()
    except Exception as error:  # any failure of an arm is a result to report
        traceback.print_exc()
        result = {"error": f"{type(error).__name__}: {error}"}
    print(
        f"[bench] {name} done in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True
    )
    return result


async def _fanout_arm(plan: Plan, work: Path, profiles: dict[str, str]) -> dict[str, Any]:
    sim = replace(plan.sim, steps=plan.fanout.steps)
    with sim_teachers(sim.specs(), sim.seed, work) as sims:
        result = await run_fanout(sims, plan.fanout)
        if plan.profile:
            profiles["engine"] = await profile_concurrent(sims, plan.fanout)
    return result


async def _load_arm(plan: Plan, work: Path, profiles: dict[str, str]) -> dict[str, Any]:
    sim = replace(
        plan.sim, steps=plan.load.steps, time_scale=plan.sim.time_scale * plan.load.time_scale
    )
    with sim_teachers(sim.specs(), sim.seed, work) as sims:
        result = await run_load(sims, plan.load, work)
    if "server_profile" in result:
        profiles["server"] = result.pop("server_profile")
    return result


async def _real_arm(
    name: str,
    skip: bool,
    real: RealSettings,
    arm: Callable[[Any], Awaitable[dict[str, Any]]],
    settings: Any,
) -> dict[str, Any]:
    """An arm on the real teacher: skipped when asked, or when no teacher answers."""
    if skip:
        return {"skipped": "not chosen (--skip-*, --only)"}
    if (problem := reachable(real)) is not None:
        return {"skipped": problem}
    return await _guarded(name, lambda: arm(settings))


async def run(plan: Plan) -> tuple[dict[str, Any], dict[str, str]]:
    profiles: dict[str, str] = {}
    results: dict[str, Any] = {
        "timestamp": time.strftime("%Y%m%dT%H%M%S"),
        "machine": report.machine(),
        "settings": {
            "simulator": plan.sim.describe(),
            "fanout": asdict(plan.fanout),
            "load": asdict(plan.load),
            "real": asdict(plan.real),
            "scoring": asdict(plan.scoring),
            "long": asdict(plan.long),
            "faults": asdict(plan.faults),
        },
    }
    with scratch_dir() as scratch:
        work = Path(scratch)
        results["fanout"] = (
            {"skipped": "--only"}
            if plan.skip_fanout
            else await _guarded("fan-out", lambda: _fanout_arm(plan, work, profiles))
        )
        results["load"] = (
            {"skipped": "--skip-load"}
            if plan.skip_load
            else await _guarded("load", lambda: _load_arm(plan, work, profiles))
        )
        results["faults"] = (
            {"skipped": "--skip-faults"}
            if plan.skip_faults
            else await _guarded("faults", lambda: run_faults(plan.faults, work))
        )
    results["real"] = (
        {"skipped": "--skip-real"}
        if plan.skip_real
        else await _guarded("real teachers", lambda: run_real(plan.real))
    )
    results["scoring"] = await _real_arm(
        "scoring", plan.skip_scoring, plan.real, run_scoring, plan.scoring
    )
    results["long"] = await _real_arm("long decode", plan.skip_long, plan.real, run_long, plan.long)
    results["machine"]["load_average_at_end"] = list(os.getloadavg())
    return results, profiles


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    plan = plan_from(args)
    results, profiles = asyncio.run(run(plan))
    targets = judge(results)
    json_path, md_path, text = report.write(results, targets, args.out)
    for name, profile in profiles.items():
        path = args.out / f"{results['timestamp']}-profile-{name}.txt"
        path.write_text(profile)
        print(f"[bench] profile of the {name}: {path}", file=sys.stderr)
    print(text)
    print(f"\n[bench] wrote {json_path} and {md_path}", file=sys.stderr)
    return 0
