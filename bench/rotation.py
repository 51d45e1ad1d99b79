"""The rotating-kill phase of `bench.faults` (issue 20): no teacher down for long, but always one.

Three FAKE teacher processes (`bench.faultteacher`), one teacher each (``t1``, ``t2``,
``t3``, all proposing and scoring), behind one proxy server with its own config. Every
`rotate_every_s` seconds the next of them in turn is SIGKILLed; a process started a rotation
ahead (``--listen-at``) takes its port `rotate_down_s` seconds after the kill, so the port is
refused that long and then answers (the report gives the outages as measured, from the kill to
the next process's bind).
Closed-loop clients (`concurrency`) send `rotate_requests` chat completions; every
`rotate_stream_every`-th streams. A request is **answered** when it gets a 200 (a stream: one
that ends without an error event), **degraded** when answered with teacher failures in its
``cord.failures``, **failed** otherwise. The **refusal stretch** is the longest time in which
every request that began was refused: between the starts of two answered requests, with
failed ones begun in between. Hangs (no answer by the deadline and its grace) and requests
over their deadline are counted as in the other phases.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from bench.procs import Child, free_port, start_child, wait_ready
from bench.targets import DEADLINE_SLACK_S

if TYPE_CHECKING:
    from bench.faults import FaultSettings

ENSEMBLE = "rotate"
TEACHERS = ("t1", "t2", "t3")
READY_WAIT_S = 30.0


@dataclass
class Answer:
    """One request of the rotation, as its client saw it."""

    started: float
    latency_s: float
    status: int | None  # None: no HTTP answer (a hang or a lost connection)
    stream: bool
    failed_why: str | None = None  # None: answered
    codes: list[str] = field(default_factory=list)  # cord.failures codes of an answer

    @property
    def ended(self) -> float:
        return self.started + self.latency_s

    @property
    def answered(self) -> bool:
        return self.failed_why is None


class RotatingFake:
    """One FAKE teacher process on a fixed port, killed and replaced by a standby process
    started ahead of time (its imports take seconds on a busy machine), which binds the port
    at a given moment."""

    def __init__(self, name: str, work: Path):
        self.name = name
        self.work = work
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.child: Child | None = None
        self.standby: Child | None = None
        self.starts = 0

    def spawn(self, listen_at: float | None = None) -> Child:
        self.starts += 1
        argv = [sys.executable, "-m", "bench.faultteacher", "--port", str(self.port)]
        if listen_at is not None:
            argv += ["--listen-at", f"{listen_at:.3f}"]
        return start_child(f"rotate-{self.name}-{self.starts}", argv, self.url, self.work)

    def start(self) -> None:
        self.child = self.spawn()

    def prepare(self, listen_at: float) -> None:
        """Start the process that takes over at the next kill, binding at `listen_at`."""
        self.standby = self.spawn(listen_at)

    def wait_ready(self) -> None:
        assert self.child is not None
        problem = wait_ready(self.child, self.url + "/health", READY_WAIT_S)
        if problem:
            raise RuntimeError(problem)

    def kill(self) -> tuple[float, Child]:
        """SIGKILL the process; its standby takes over. The kill's Unix time, the standby."""
        assert self.standby is not None
        killed_at = time.time()
        if self.child is not None and self.child.alive():
            self.child.popen.send_signal(signal.SIGKILL)
            self.child.popen.wait(10.0)
        self.child, self.standby = self.standby, None
        return killed_at, self.child

    def stop(self) -> None:
        for child in (self.child, self.standby):
            if child is not None:
                child.stop()


def rotation_toml(settings: FaultSettings, port: int, fakes: Sequence[RotatingFake]) -> str:
    lines = [
        "[server]",
        'host = "127.0.0.1"',
        f"port = {port}",
        f"max_concurrent_requests = {4 * settings.concurrency}",
        f"request_timeout = {settings.request_timeout_s}",
        "metrics_public = true",
        "",
    ]
    for fake in fakes:
        lines += [
            "[[teachers]]",
            f'name = "{fake.name}"',
            f'base_url = "{fake.url}/v1"',
            f'model = "{fake.name}"',
            f"timeout = {settings.teacher_timeout_s}",
            f"max_retries = {settings.max_retries}",
            f"breaker_threshold = {settings.breaker_threshold}",
            f"breaker_cooldown = {settings.breaker_cooldown_s}",
            "max_concurrency = 1024",
            "",
        ]
    names = ", ".join(f'"{fake.name}"' for fake in fakes)
    lines += [
        "[[ensembles]]",
        f'name = "{ENSEMBLE}"',
        f"teachers = [{names}]",
        f"scorers = [{names}]",
        "[ensembles.defaults]",
        f"beam_width = {settings.beam_width}",
        f"max_steps = {settings.steps + 1}",
        "max_step_tokens = 64",
        "answer_budget = 16",
        f"round_timeout = {settings.round_timeout_s}",
        "",
    ]
    return "\n".join(lines)


def rotation_body(index: int, stream: bool) -> dict[str, Any]:
    a, b = 6 + index % 7, 7 + index % 5
    content = f"What is {a} x {b}?"
    return {"model": ENSEMBLE, "messages": [{"role": "user", "content": content}], "stream": stream}


def read_whole(status: int, raw: bytes) -> tuple[str | None, list[str]]:
    """Why a whole answer failed (None: answered), and its failure codes."""
    try:
        data = json.loads(raw)
    except ValueError:
        return f"HTTP {status} with a body that is not JSON", []
    if status != 200:
        return f"HTTP {status}: {_message(data)}", []
    message = ((data.get("choices") or [{}])[0]).get("message") or {}
    if not isinstance(message.get("content"), str):
        return "a 200 without a message", []
    return None, _codes(data)


def read_stream(status: int, raw: bytes) -> tuple[str | None, list[str]]:
    """Why a stream failed (an error event, no ``[DONE]``), and its failure codes."""
    if status != 200:
        return read_whole(status, raw)
    text = raw.decode("utf-8", "replace")
    events = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    if not events or events[-1] != "[DONE]":
        return "a stream that did not end with [DONE]", []
    codes: list[str] = []
    for event in events[:-1]:
        data = json.loads(event)
        if "error" in data:
            return f"stream error event: {_message(data)}", []
        codes += _codes(data)
    return None, codes


def _message(data: Any) -> str:
    error = data.get("error") if isinstance(data, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return message[:200] if isinstance(message, str) else "no OpenAI error object"


def _codes(data: dict[str, Any]) -> list[str]:
    cord = data.get("cord") or {}
    return [str(f.get("code")) for f in cord.get("failures") or []]


async def one_request(
    session: aiohttp.ClientSession, url: str, index: int, stream: bool, t0: float
) -> Answer:
    started = time.perf_counter()
    status: int | None = None
    try:
        async with session.post(url, json=rotation_body(index, stream)) as response:
            status = response.status
            raw = await response.read()
        why, codes = (read_stream if stream else read_whole)(status, raw)
    except TimeoutError:
        why, codes = "hang: no answer within the deadline and its grace", []
    except aiohttp.ClientError as error:
        why, codes = f"lost connection: {type(error).__name__}", []
    return Answer(started - t0, time.perf_counter() - started, status, stream, why, codes)


async def rotate(
    fakes: Sequence[RotatingFake], settings: FaultSettings, done: asyncio.Event, t0: float
) -> list[dict[str, Any]]:
    """Kill the next fake every `rotate_every_s` until `done`, each replaced by a standby that
    binds `rotate_down_s` after the planned kill; the outages, in phase time.

    A fake's standby starts right after its previous kill, a whole rotation ahead: on a busy
    machine a Python process may take seconds to import."""
    every, down = settings.rotate_every_s, settings.rotate_down_s
    start = time.time()

    def kill_at(turn: int) -> float:
        return start + every * (turn + 1)

    for turn, fake in enumerate(fakes):
        await asyncio.to_thread(fake.prepare, kill_at(turn) + down)
    outages: list[dict[str, Any]] = []
    for turn in itertools.count():
        try:
            await asyncio.wait_for(done.wait(), timeout=max(0.0, kill_at(turn) - time.time()))
            return outages
        except TimeoutError:
            pass
        fake = fakes[turn % len(fakes)]
        at = round(time.perf_counter() - t0, 3)
        killed, child = await asyncio.to_thread(fake.kill)
        outages.append({"teacher": fake.name, "killed_at_s": at, "unix": killed, "child": child})
        await asyncio.to_thread(fake.prepare, kill_at(turn + len(fakes)) + down)
    return outages


async def run_clients(proxy_url: str, settings: FaultSettings, t0: float) -> list[Answer]:
    url = proxy_url + "/v1/chat/completions"
    timeout = aiohttp.ClientTimeout(total=settings.request_timeout_s + settings.hang_grace_s)
    counter = itertools.count()
    answers: list[Answer] = []

    async def client(session: aiohttp.ClientSession) -> None:
        while (index := next(counter)) < settings.rotate_requests:
            stream = index % settings.rotate_stream_every == settings.rotate_stream_every - 1
            answers.append(await one_request(session, url, index, stream, t0))

    connector = aiohttp.TCPConnector(limit=settings.concurrency)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        await asyncio.gather(*(client(session) for _ in range(settings.concurrency)))
    return answers


def measure_outages(outages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each outage with how long its port was really refused: from the kill to the moment
    the next process bound it (its log's ``listening_at``); None when that is unknown."""
    measured = []
    for outage in outages:
        child: Child = outage["child"]
        listening = _listening_at(child.log_tail(50))
        down = None if listening is None else round(listening - outage["unix"], 3)
        measured.append(
            {"teacher": outage["teacher"], "killed_at_s": outage["killed_at_s"], "down_s": down}
        )
    return measured


def _listening_at(log: str) -> float | None:
    for line in log.splitlines():
        if line.startswith('{"listening_at"'):
            return float(json.loads(line)["listening_at"])
    return None


def refusal_stretch(answers: Sequence[Answer], end: float) -> float:
    """The longest time in which every request that began was refused: from the start of an
    answered request to the start of the next answered one, with failed ones begun between
    (to the phase's end when none was answered after them)."""
    longest, last_ok, refusing = 0.0, 0.0, False
    for answer in sorted(answers, key=lambda a: a.started):
        if not answer.answered:
            refusing = True
            continue
        if refusing:
            longest = max(longest, answer.started - last_ok)
        last_ok, refusing = answer.started, False
    return max(longest, end - last_ok) if refusing else longest


def summarise_rotation(
    answers: list[Answer], outages: list[dict[str, Any]], wall_s: float, settings: FaultSettings
) -> dict[str, Any]:
    latencies = sorted(a.latency_s for a in answers)
    failed = [a for a in answers if not a.answered]
    answered = len(answers) - len(failed)
    limit = settings.request_timeout_s + DEADLINE_SLACK_S
    downs = sorted(o["down_s"] for o in outages if o["down_s"] is not None)
    return {
        "requests": len(answers),
        "streams": sum(1 for a in answers if a.stream),
        "answered_200": answered,
        "answered_share": answered / len(answers) if answers else math.nan,
        "degraded_200": sum(1 for a in answers if a.answered and a.codes),
        "failed": len(failed),
        "failed_streams": sum(1 for a in failed if a.stream),
        "refusal_stretch_s": refusal_stretch(answers, wall_s),
        "hangs": sum(
            1 for a in failed if a.status is None and (a.failed_why or "").startswith("hang")
        ),
        "past_deadline": sum(1 for v in latencies if v > limit),
        "p50_s": _quantile(latencies, 0.5),
        "p99_s": _quantile(latencies, 0.99),
        "max_s": latencies[-1] if latencies else math.nan,
        "deadline_s": settings.request_timeout_s,
        "wall_s": wall_s,
        "kills": len(outages),
        "down_s_p50": _quantile(downs, 0.5),
        "down_s_max": downs[-1] if downs else math.nan,
        "outages": outages,
        "failure_codes": dict(Counter(c for a in answers for c in a.codes).most_common()),
        "failure_examples": [
            f"{w} x{n}" for w, n in Counter(a.failed_why for a in failed).most_common(3)
        ],
    }


def _quantile(ordered: Sequence[float], q: float) -> float:
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def start_rotation_proxy(
    settings: FaultSettings, work: Path, fakes: Sequence[RotatingFake]
) -> Child:
    port = free_port()
    config = work / "rotate-proxy.toml"
    config.write_text(rotation_toml(settings, port, fakes), encoding="utf-8")
    argv = [settings.proxy_python, "-m", "cord_proxy", "serve", "--config", str(config)]
    child = start_child("rotate-proxy", [*argv, "--log-level", "warning"], "", work)
    child.url = f"http://127.0.0.1:{port}"
    problem = wait_ready(child, child.url + "/health", settings.proxy_wait_s)
    if problem:
        child.stop()
        raise RuntimeError(f"proxy server did not start: {problem}")
    return child


async def run_rotation(settings: FaultSettings, work: Path) -> dict[str, Any]:
    """The rotating-kill phase through its own proxy server and FAKE teachers."""
    fakes = [RotatingFake(name, work) for name in TEACHERS]
    try:
        for fake in fakes:
            fake.start()
        for fake in fakes:
            fake.wait_ready()
        proxy = start_rotation_proxy(settings, work, fakes)
        try:
            result = await _measure(proxy, fakes, settings)
            result["proxy_alive_at_end"] = proxy.alive()
        finally:
            proxy.stop()
    finally:
        for fake in fakes:
            fake.stop()
    return result


async def _measure(
    proxy: Child, fakes: Sequence[RotatingFake], settings: FaultSettings
) -> dict[str, Any]:
    t0 = time.perf_counter()
    done = asyncio.Event()
    rotation = asyncio.create_task(rotate(fakes, settings, done, t0))
    try:
        answers = await run_clients(proxy.url, settings, t0)
    finally:
        done.set()
        outages = await rotation
    wall = time.perf_counter() - t0
    for fake in fakes:
        await asyncio.to_thread(fake.wait_ready)
    return summarise_rotation(answers, measure_outages(outages), wall, settings)
