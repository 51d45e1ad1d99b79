"""Fault injection through the real proxy server: no 500, no hang, no request past its deadline.

The proxy runs as ``<python> -m cord_proxy serve --config FILE``; its ensemble has three
teachers on two FAKE teacher processes (`bench.faultteacher`): ``steady-a`` and
``steady-b`` on one, ``faulty-c`` on the other (``steady-a`` and ``faulty-c`` score). Closed-
loop aiohttp clients send chat completions, one phase per fault of the faulty process:

- ``baseline``: no fault;
- ``kill``: SIGKILL a third of the way in, restarted two thirds of the way in;
- ``stall``: SIGSTOP for the whole phase, SIGCONT after;
- ``slow``: every latency x10; ``malformed``: 200 with bodies of the wrong shape;
- ``error500``: every call a 500; ``refused``: the process is gone, nothing listens;
- ``rotate`` (`bench.rotation`, its own proxy and three FAKE teacher processes): one of the
  three SIGKILLed every 3 s in turn, back 1.5 s later, under the same clients.

Run alone: ``python -m bench.faults [--quick]``; ``python -m bench`` runs it as an arm.
``--quick`` leaves out ``rotate`` (``--phases rotate --quick`` runs a short one).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from bench import report
from bench.procs import REPO_ROOT, Child, free_port, scratch_dir, start_child, wait_ready
from bench.targets import DEADLINE_SLACK_S, fault_targets, rotation_targets
from cord_proxy.data.jsonl import finite

ENSEMBLE = "faults"
PHASES = ("baseline", "kill", "stall", "slow", "malformed", "error500", "refused")
ROTATE = "rotate"
ALL_PHASES = (*PHASES, ROTATE)
STEADY = ("steady-a", "steady-b")
FAULTY = "faulty-c"
SCORERS = ("steady-a", FAULTY)
CLEAN_5XX = (502, 504)
SETTLE_TRIES = 10
DEFAULT_OUT = REPO_ROOT / "bench" / "results"


@dataclass(frozen=True)
class FaultSettings:
    requests_per_phase: int = 300
    concurrency: int = 64
    phases: tuple[str, ...] = ALL_PHASES
    teacher_timeout_s: float = 2.0
    round_timeout_s: float = 5.0
    request_timeout_s: float = 20.0
    breaker_threshold: int = 3
    breaker_cooldown_s: float = 3.0
    max_retries: int = 1
    beam_width: int = 2
    steps: int = 1
    hang_grace_s: float = 15.0  # a client gives up this long after the request's deadline
    proxy_python: str = sys.executable
    proxy_wait_s: float = 60.0
    rotate_requests: int = 6000
    rotate_every_s: float = 3.0
    rotate_down_s: float = 1.5
    rotate_stream_every: int = 4


QUICK = FaultSettings(
    requests_per_phase=40,
    concurrency=8,
    breaker_cooldown_s=1.5,
    phases=PHASES,
    rotate_requests=600,
)


@dataclass
class Outcome:
    started: float
    latency_s: float
    status: int | None  # None: no HTTP answer (hang or lost connection)
    problem: str | None = None  # a 5xx that is not an OpenAI error object, a bad 200, ...
    codes: list[str] = field(default_factory=list)
    error: str | None = None  # the message of an error answer
    open_for: list[str] = field(default_factory=list)  # teachers whose breaker was open

    @property
    def ended(self) -> float:
        return self.started + self.latency_s


class FakeProcess:
    """One FAKE teacher process on a fixed port, which the phases kill, stop and restart."""

    def __init__(self, name: str, work: Path):
        self.name = name
        self.work = work
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.child: Child | None = None

    def start(self) -> None:
        argv = [sys.executable, "-m", "bench.faultteacher", "--port", str(self.port)]
        self.child = start_child(self.name, argv, self.url, self.work)
        problem = wait_ready(self.child, self.url + "/v1/models", 30.0)
        if problem:
            raise RuntimeError(problem)

    def signal(self, sig: int) -> None:
        if self.child is not None and self.child.alive():
            self.child.popen.send_signal(sig)

    def kill(self) -> None:
        if self.child is not None and self.child.alive():
            self.child.popen.kill()
            self.child.popen.wait(10.0)

    def set_fault(self, fault: str) -> None:
        httpx.post(self.url + "/fake/fault", json={"fault": fault}, timeout=10.0)

    def stop(self) -> None:
        if self.child is not None:
            self.signal(signal.SIGCONT)
            self.child.stop()


Action = Callable[[], None]


@dataclass(frozen=True)
class Fault:
    """What a phase does to the faulty process: at its start, at request indices, at its end."""

    begin: Action | None = None
    at: dict[int, Action] = field(default_factory=dict)
    end: Action | None = None


def fault_of(phase: str, proc: FakeProcess, requests: int) -> Fault:
    if phase == "kill":
        return Fault(at={requests // 3: proc.kill, 2 * requests // 3: proc.start})
    if phase == "stall":
        return Fault(lambda: proc.signal(signal.SIGSTOP), end=lambda: proc.signal(signal.SIGCONT))
    if phase == "refused":
        return Fault(proc.kill, end=proc.start)
    if phase in ("slow", "malformed", "error500"):
        return Fault(lambda: proc.set_fault(phase), end=lambda: proc.set_fault("none"))
    return Fault()


def proxy_toml(settings: FaultSettings, port: int, steady: str, faulty: str) -> str:
    lines = [
        "[server]",
        'host = "127.0.0.1"',
        f"port = {port}",
        f"max_concurrent_requests = {4 * settings.concurrency}",
        f"request_timeout = {settings.request_timeout_s}",
        "metrics_public = true",
        "",
    ]
    for name in (*STEADY, FAULTY):
        url = faulty if name == FAULTY else steady
        lines += [
            "[[teachers]]",
            f'name = "{name}"',
            f'base_url = "{url}/v1"',
            f'model = "{name}"',
            f"timeout = {settings.teacher_timeout_s}",
            f"max_retries = {settings.max_retries}",
            f"breaker_threshold = {settings.breaker_threshold}",
            f"breaker_cooldown = {settings.breaker_cooldown_s}",
            "max_concurrency = 1024",
            "",
        ]
    lines += [
        "[[ensembles]]",
        f'name = "{ENSEMBLE}"',
        "teachers = [" + ", ".join(f'"{n}"' for n in (*STEADY, FAULTY)) + "]",
        "scorers = [" + ", ".join(f'"{n}"' for n in SCORERS) + "]",
        "[ensembles.defaults]",
        f"beam_width = {settings.beam_width}",
        f"max_steps = {settings.steps + 1}",
        "max_step_tokens = 64",
        "answer_budget = 16",
        f"round_timeout = {settings.round_timeout_s}",
        "",
    ]
    return "\n".join(lines)


def start_proxy(settings: FaultSettings, work: Path, steady: str, faulty: str) -> Child:
    port = free_port()
    config = work / "faults-proxy.toml"
    config.write_text(proxy_toml(settings, port, steady, faulty), encoding="utf-8")
    argv = [settings.proxy_python, "-m", "cord_proxy", "serve", "--config", str(config)]
    child = start_child("faults-proxy", [*argv, "--log-level", "warning"], "", work)
    child.url = f"http://127.0.0.1:{port}"
    problem = wait_ready(child, child.url + "/health", settings.proxy_wait_s)
    if problem:
        child.stop()
        raise RuntimeError(f"proxy server did not start: {problem}")
    return child


def request_body(index: int) -> dict[str, Any]:
    a, b = 6 + index % 7, 7 + index % 5
    return {"model": ENSEMBLE, "messages": [{"role": "user", "content": f"What is {a} x {b}?"}]}


def error_message(data: Any) -> str | None:
    error = data.get("error") if isinstance(data, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return message[:300] if isinstance(message, str) else None


def failures_of(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(teacher, code) of each failure in a 200's ``cord.failures``."""
    cord = data.get("cord") or {}
    return [(str(f.get("teacher")), str(f.get("code"))) for f in cord.get("failures") or []]


def judge_answer(status: int, data: Any) -> tuple[str | None, list[str]]:
    """Why an answer breaks the rules (None when it does not), and its failure codes."""
    if not isinstance(data, dict):
        return f"HTTP {status} with a body that is not a JSON object", []
    if status == 200:
        codes = [code for _, code in failures_of(data)]
        message = (data.get("choices") or [{}])[0].get("message") or {}
        ok = isinstance(message.get("content"), str)
        return (None if ok else "a 200 without a message"), codes
    error = data.get("error")
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return f"HTTP {status} without an OpenAI error object", []
    if status >= 500 and status not in CLEAN_5XX:
        return f"HTTP {status}: {error['message'][:200]}", []
    return None, []


async def _one(session: aiohttp.ClientSession, url: str, index: int, t0: float) -> Outcome:
    started = time.perf_counter()
    status: int | None = None
    try:
        async with session.post(url, json=request_body(index)) as response:
            status = response.status
            raw = await response.read()
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        problem, codes = judge_answer(status, data)
    except TimeoutError:
        problem, codes, data = "hang: no answer within the deadline and its grace", [], None
    except aiohttp.ClientError as error:
        problem, codes, data = f"lost connection: {type(error).__name__}", [], None
    latency = time.perf_counter() - started
    outcome = Outcome(started - t0, latency, status, problem, codes, error_message(data))
    if status == 200 and isinstance(data, dict):
        outcome.open_for = sorted({t for t, code in failures_of(data) if code == "circuit_open"})
    return outcome


async def _act(action: Action | None) -> None:
    if action is not None:
        await asyncio.to_thread(action)


async def run_phase(
    proxy_url: str, fault: Fault, settings: FaultSettings
) -> tuple[list[Outcome], dict[str, str]]:
    """All of a phase's requests from `concurrency` closed-loop clients; the breakers after."""
    url = proxy_url + "/v1/chat/completions"
    timeout = aiohttp.ClientTimeout(total=settings.request_timeout_s + settings.hang_grace_s)
    counter = itertools.count()
    outcomes: list[Outcome] = []
    actions: list[asyncio.Task[None]] = []
    t0 = time.perf_counter()

    async def client(session: aiohttp.ClientSession) -> None:
        while (index := next(counter)) < settings.requests_per_phase:
            if index in fault.at:
                actions.append(asyncio.create_task(_act(fault.at[index])))
            outcomes.append(await _one(session, url, index, t0))

    await _act(fault.begin)
    connector = aiohttp.TCPConnector(limit=settings.concurrency)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        await asyncio.gather(*(client(session) for _ in range(settings.concurrency)))
    await asyncio.gather(*actions)
    breakers = await asyncio.to_thread(breaker_states, proxy_url)
    await _act(fault.end)
    return outcomes, breakers


def quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _status_class(outcome: Outcome) -> str:
    if outcome.status is None:
        return "hang"
    if outcome.status >= 500:
        return "5xx_bad" if outcome.problem else "5xx_clean"
    return f"{outcome.status // 100}xx"


def summarise(
    phase: str, outcomes: list[Outcome], breakers: dict[str, str], settings: FaultSettings
) -> dict[str, Any]:
    latencies = [o.latency_s for o in outcomes]
    classes = Counter(_status_class(o) for o in outcomes)
    opened = [o.ended for o in outcomes if "circuit_open" in o.codes]
    open_at = min(opened, default=math.nan)
    after = [o.latency_s for o in outcomes if opened and o.started >= open_at]
    codes = Counter(code for o in outcomes for code in o.codes)
    errors = Counter(f"HTTP {o.status}: {o.error}" for o in outcomes if o.error)
    return {
        "phase": phase,
        "requests": len(outcomes),
        "status": dict(sorted(Counter(str(o.status) for o in outcomes).items())),
        "ok_200": classes["2xx"],
        "client_4xx": classes["4xx"],
        "clean_5xx": classes["5xx_clean"],
        "bad_5xx": classes["5xx_bad"],
        "status_500": sum(1 for o in outcomes if o.status == 500),
        "hangs": classes["hang"],
        "problems": sum(1 for o in outcomes if o.problem),
        "problem_examples": sorted({o.problem for o in outcomes if o.problem})[:3],
        "error_examples": [f"{m} x{n}" for m, n in errors.most_common(3)],
        "degraded_200": sum(1 for o in outcomes if o.status == 200 and o.codes),
        "p50_s": quantile(latencies, 0.5),
        "p99_s": quantile(latencies, 0.99),
        "max_s": max(latencies, default=math.nan),
        "deadline_s": settings.request_timeout_s,
        "past_deadline": sum(
            1 for v in latencies if v > settings.request_timeout_s + DEADLINE_SLACK_S
        ),
        "circuit_open_answers": sum(1 for o in outcomes if "circuit_open" in o.codes),
        "breaker_open_at_s": open_at,
        "requests_after_open": len(after),
        "p50_after_open_s": quantile(after, 0.5),
        "failure_codes": dict(codes.most_common()),
        "breakers_at_end": breakers,
        "circuit_open_by_teacher": dict(
            Counter(t for o in outcomes for t in o.open_for).most_common()
        ),
    }


BREAKER_LINE = re.compile(r'^cord_teacher_breaker_state\{teacher="([^"]+)",state="(\w+)"\} 1')


def breaker_states(proxy_url: str) -> dict[str, str]:
    """Each teacher's breaker state from ``/metrics``; empty when the server shows none."""
    try:
        text = httpx.get(proxy_url + "/metrics", timeout=10.0).text
    except httpx.HTTPError:
        return {}
    found = (BREAKER_LINE.match(line) for line in text.splitlines())
    return {m.group(1): m.group(2) for m in found if m}


async def settle(proxy_url: str, settings: FaultSettings) -> None:
    """Wait out the breaker's cooldown, then send requests until one meets no failure.

    The next phase then starts with every breaker closed rather than half-open.
    """
    await asyncio.sleep(settings.breaker_cooldown_s + 0.5)
    timeout = aiohttp.ClientTimeout(total=settings.request_timeout_s + settings.hang_grace_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for index in range(SETTLE_TRIES):
            outcome = await _one(session, proxy_url + "/v1/chat/completions", index, 0.0)
            if outcome.status == 200 and not outcome.codes:
                return
            await asyncio.sleep(settings.breaker_cooldown_s / 2)


@contextlib.contextmanager
def fake_teachers(work: Path) -> Iterator[tuple[FakeProcess, FakeProcess]]:
    steady, faulty = FakeProcess("fake-steady", work), FakeProcess("fake-faulty", work)
    try:
        steady.start()
        faulty.start()
        yield steady, faulty
    finally:
        faulty.stop()
        steady.stop()


async def run_faults(settings: FaultSettings, work: Path) -> dict[str, Any]:
    """Every phase: the per-phase summaries, the rotation's, and the settings."""
    from bench.rotation import run_rotation  # it builds on this module

    classic = [p for p in settings.phases if p != ROTATE]
    result: dict[str, Any] = {
        "settings": {k: v for k, v in asdict(settings).items() if k != "proxy_python"},
        "teachers": {"steady": list(STEADY), "faulty": FAULTY, "scorers": list(SCORERS)},
    }
    if classic:
        phases, alive = await run_classic(replace(settings, phases=tuple(classic)), work)
        result.update(
            phases=phases,
            total_requests=sum(p["requests"] for p in phases),
            proxy_alive_at_end=alive,
        )
    if ROTATE in settings.phases:
        print(f"[faults] phase {ROTATE} ...", file=sys.stderr, flush=True)
        result["rotation"] = await run_rotation(settings, work)
    return result


async def run_classic(settings: FaultSettings, work: Path) -> tuple[list[dict[str, Any]], bool]:
    """The phases of the faulty process, through one proxy server."""
    phases: list[dict[str, Any]] = []
    with fake_teachers(work) as (steady, faulty):
        proxy = start_proxy(settings, work, steady.url, faulty.url)
        try:
            await run_phase(proxy.url, Fault(), replace(settings, requests_per_phase=4))
            for phase in settings.phases:
                print(f"[faults] phase {phase} ...", file=sys.stderr, flush=True)
                fault = fault_of(phase, faulty, settings.requests_per_phase)
                outcomes, breakers = await run_phase(proxy.url, fault, settings)
                phases.append(summarise(phase, outcomes, breakers, settings))
                await settle(proxy.url, settings)
            alive = proxy.alive()
        finally:
            proxy.stop()
    return phases, alive


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__)
    p.add_argument("--quick", action="store_true", help="a smoke run: 8 clients, 40 a phase")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    p.add_argument("--requests-per-phase", type=int)
    p.add_argument("--concurrency", type=int)
    p.add_argument("--phases", help="comma-separated, of " + ",".join(ALL_PHASES))
    p.add_argument("--rotate-requests", type=int, help="requests of the rotate phase (6000)")
    p.add_argument("--breaker-threshold", type=int, help="failures that open a breaker (3)")
    p.add_argument("--breaker-cooldown", type=float, help="the breaker's longest cool-down, s (3)")
    p.add_argument("--proxy-python", default=sys.executable)
    return p


def settings_from(args: argparse.Namespace) -> FaultSettings:
    settings = QUICK if args.quick else FaultSettings()
    given: dict[str, Any] = {"proxy_python": args.proxy_python}
    if args.requests_per_phase:
        given["requests_per_phase"] = args.requests_per_phase
    if args.concurrency:
        given["concurrency"] = args.concurrency
    if args.phases:
        given["phases"] = tuple(args.phases.split(","))
    if args.rotate_requests:
        given["rotate_requests"] = args.rotate_requests
    if args.breaker_threshold:
        given["breaker_threshold"] = args.breaker_threshold
    if args.breaker_cooldown:
        given["breaker_cooldown_s"] = args.breaker_cooldown
    return replace(settings, **given)


async def _standalone(settings: FaultSettings) -> dict[str, Any]:
    with scratch_dir() as scratch:
        return await run_faults(settings, Path(scratch))


def main(argv: list[str] | None = None) -> int:
    """Run alone; write ``<timestamp>-faults.json`` and ``.md``; exit 1 on a missed target."""
    settings = settings_from(build_parser().parse_args(argv))
    result = asyncio.run(_standalone(settings))
    found = [*fault_targets(result), *rotation_targets(result)]
    result["targets"] = [t.__dict__ for t in found]
    text = "\n".join([*report.faults_md(result), *report._targets_md(found)])
    out: Path = build_parser().parse_args(argv).out
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{time.strftime('%Y%m%dT%H%M%S')}-faults"
    stem.with_suffix(".json").write_text(
        json.dumps(finite(result), indent=2, allow_nan=False) + "\n"
    )
    stem.with_suffix(".md").write_text(text + "\n")
    print(text)
    print(f"\n[faults] wrote {stem}.json and {stem}.md", file=sys.stderr)
    return 0 if all(t.met is not False for t in found) else 1  # None: its phase did not run


if __name__ == "__main__":
    sys.exit(main())
