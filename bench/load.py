"""Load through the real proxy HTTP server: throughput and latency against the ideal.

The proxy runs as ``<python> -m cord_proxy serve --config FILE`` in its own process, the
simulated teachers in theirs; closed-loop clients (aiohttp) send chat completions over
loopback. The ideal of each request is its critical path through the simulated teachers
(`bench.critical`); the ideal of a level is the same closed loop run at ideal speed.
"""

from __future__ import annotations

import asyncio
import math
import signal
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.critical import ideal_paths, service_lag
from bench.procs import Child, SimTeachers, free_port, start_child, wait_ready
from bench.scenario import question
from bench.simmodel import conversation_key, render_chat

ENSEMBLE = "bench"


@dataclass(frozen=True)
class LoadSettings:
    levels: tuple[int, ...] = (1, 16, 64, 256)
    beam_width: int = 2
    steps: int = 4
    scorers: int = 1
    min_requests: int = 2
    time_scale: float = 4.0  # on top of the simulator's: real steps take seconds
    request_timeout_s: float = 600.0
    proxy_python: str = sys.executable
    proxy_wait_s: float = 60.0
    profile_server: bool = False


@dataclass
class Outcome:
    conv: str
    client: int
    latency_s: float
    error: str | None = None


@dataclass
class Level:
    concurrency: int
    outcomes: list[Outcome] = field(default_factory=list)
    wall_s: float = 0.0
    proxy_cpu_s: float = 0.0
    sim_cpu_s: float = 0.0


def proxy_toml(sims: SimTeachers, port: int, settings: LoadSettings) -> str:
    """The proxy config: one teacher per simulated model, one ensemble over all of them."""
    lines = [
        "[server]",
        'host = "127.0.0.1"',
        f"port = {port}",
        f"max_concurrent_requests = {2 * max(settings.levels)}",
        "",
    ]
    for index, name in enumerate(sims.models):
        lines += [
            "[[teachers]]",
            f'name = "{name}"',
            'kind = "openai"',
            f'base_url = "{sims.base_url(index)}"',
            f'model = "{name}"',
            "temperature = 0.6",
            'roles = ["propose", "score"]',
            "timeout = 600.0",
            "max_concurrency = 1024",
            "",
        ]
    # The paper's set-up: the last (slowest, "strongest") teachers are the meta-provers.
    scorers = sims.models[-settings.scorers :]
    lines += [
        "[[ensembles]]",
        f'name = "{ENSEMBLE}"',
        "teachers = [" + ", ".join(f'"{n}"' for n in sims.models) + "]",
        "scorers = [" + ", ".join(f'"{n}"' for n in scorers) + "]",
        "[ensembles.defaults]",
        f"beam_width = {settings.beam_width}",
        f"max_steps = {settings.steps + 2}",
        "",
    ]
    return "\n".join(lines)


def start_proxy(sims: SimTeachers, settings: LoadSettings, work: Path) -> tuple[Child, str | None]:
    """Start the proxy server; the child and why it is not ready (None when it is)."""
    port = free_port()
    config = work / "proxy.toml"
    config.write_text(proxy_toml(sims, port, settings), encoding="utf-8")
    argv = [settings.proxy_python]
    if settings.profile_server:
        profile = str(work / "server-profile.txt")
        argv += ["-m", "pyinstrument", "--show", "*/aiohttp/client*", "-r", "text", "-o", profile]
    argv += ["-m", "cord_proxy", "serve", "--config", str(config), "--log-level", "warning"]
    child = start_child("proxy", argv, f"http://127.0.0.1:{port}", work)
    return child, wait_ready(child, child.url + "/health", settings.proxy_wait_s)


def request_body(index: int, tag: str) -> tuple[dict[str, Any], str]:
    text, answer = question(index, tag)
    body = {
        "model": ENSEMBLE,
        "messages": [{"role": "user", "content": text}],
        "cord": {"reference_answer": answer},
    }
    return body, chat_key(text)


def chat_key(text: str) -> str:
    """The simulator's conversation key of a request that sends `text` as the user turn."""
    messages = [{"role": "user", "content": text}, {"role": "assistant", "content": "<think>"}]
    return conversation_key(render_chat(messages, continue_final=True, add_generation_prompt=False))


async def _one(
    session: aiohttp.ClientSession, url: str, index: int, tag: str, client: int
) -> Outcome:
    body, conv = request_body(index, tag)
    started = time.perf_counter()
    try:
        async with session.post(url, json=body) as response:
            data = await response.json(content_type=None)
            error = None if response.status == 200 else f"HTTP {response.status}: {data}"
            if error is None and not data.get("choices"):
                error = "no choices in the answer"
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    return Outcome(conv, client, time.perf_counter() - started, error and error[:300])


async def _client(
    session: aiohttp.ClientSession, url: str, client: int, indices: Sequence[int], tag: str
) -> list[Outcome]:
    return [await _one(session, url, i, tag, client) for i in indices]


async def run_level(
    proxy: Child, sims: SimTeachers, concurrency: int, settings: LoadSettings
) -> Level:
    per_client = math.ceil(max(settings.min_requests, concurrency) / concurrency)
    tag = f"load{concurrency}-"
    url = proxy.url + "/v1/chat/completions"
    timeout = aiohttp.ClientTimeout(total=settings.request_timeout_s)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    level = Level(concurrency)
    sims.reset()
    proxy_cpu, sim_cpu = proxy.cpu_s(), sims.cpu_s()
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        started = time.perf_counter()
        groups = await asyncio.gather(
            *(
                _client(session, url, c, range(c * per_client, (c + 1) * per_client), tag)
                for c in range(concurrency)
            )
        )
        level.wall_s = time.perf_counter() - started
    level.proxy_cpu_s = proxy.cpu_s() - proxy_cpu
    level.sim_cpu_s = sims.cpu_s() - sim_cpu
    level.outcomes = [o for group in groups for o in group]
    return level


def _quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def summarise(level: Level, records: list[dict[str, Any]]) -> dict[str, Any]:
    ideals = {k: v.wall_s for k, v in ideal_paths(records).items()}
    done = [o for o in level.outcomes if o.error is None]
    ideal_of = [ideals.get(o.conv, math.nan) for o in level.outcomes]
    per_client: dict[int, float] = {}
    for outcome, ideal in zip(level.outcomes, ideal_of, strict=True):
        per_client[outcome.client] = per_client.get(outcome.client, 0.0) + ideal
    ideal_wall = max(per_client.values(), default=math.nan)
    latencies = [o.latency_s for o in done]
    added = [o.latency_s - ideals[o.conv] for o in done if o.conv in ideals]
    calls = len(records)
    throughput = len(done) / level.wall_s if level.wall_s else math.nan
    ideal_throughput = len(level.outcomes) / ideal_wall if ideal_wall else math.nan
    return {
        "concurrency": level.concurrency,
        "requests": len(level.outcomes),
        "errors": len(level.outcomes) - len(done),
        "error_examples": sorted({o.error for o in level.outcomes if o.error})[:3],
        "wall_s": level.wall_s,
        "throughput_rps": throughput,
        "ideal_throughput_rps": ideal_throughput,
        "throughput_ratio": throughput / ideal_throughput,
        "p50_s": _quantile(latencies, 0.50),
        "p99_s": _quantile(latencies, 0.99),
        "ideal_p50_s": _quantile([v for v in ideal_of if not math.isnan(v)], 0.50),
        "ideal_p99_s": _quantile([v for v in ideal_of if not math.isnan(v)], 0.99),
        "added_latency_mean_s": statistics.fmean(added) if added else math.nan,
        "teacher_calls": calls,
        "proxy_cpu_s": level.proxy_cpu_s,
        "proxy_cpu_ms_per_call": 1000 * level.proxy_cpu_s / calls if calls else math.nan,
        "proxy_cpu_busy": level.proxy_cpu_s / level.wall_s if level.wall_s else math.nan,
        "sim_cpu_s": level.sim_cpu_s,
        "sim_lag_p99_s": service_lag(records)["p99_s"],
        "unmatched_requests": sum(1 for o in level.outcomes if o.conv not in ideals),
    }


async def _warm_up(proxy: Child, sims: SimTeachers, settings: LoadSettings) -> None:
    warm = LoadSettings(**{**settings.__dict__, "min_requests": 2})
    await run_level(proxy, sims, 2, warm)


async def run_load(sims: SimTeachers, settings: LoadSettings, work: Path) -> dict[str, Any]:
    """Every concurrency level through a fresh proxy; or why the proxy could not start."""
    proxy, problem = start_proxy(sims, settings, work)
    if problem is not None:
        proxy.stop()
        return {"skipped": f"proxy server did not start: {problem}"}
    try:
        await _warm_up(proxy, sims, settings)
        levels = []
        for concurrency in settings.levels:
            level = await run_level(proxy, sims, concurrency, settings)
            levels.append(summarise(level, sims.records()))
    finally:
        # A profiled server writes its profile on SIGINT, which can take a while.
        proxy.stop(_stop_signal(settings), grace_s=300.0 if settings.profile_server else 10.0)
    result: dict[str, Any] = {
        "beam_width": settings.beam_width,
        "steps": settings.steps,
        "time_scale": settings.time_scale,
        "teachers": sims.models,
        "scorers": sims.models[-settings.scorers :],
        "levels": levels,
    }
    profile = work / "server-profile.txt"
    if profile.exists():
        result["server_profile"] = profile.read_text(encoding="utf-8", errors="replace")
    return result


def _stop_signal(settings: LoadSettings) -> int:
    return signal.SIGINT if settings.profile_server else signal.SIGTERM
