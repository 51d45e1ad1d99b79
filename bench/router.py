"""vLLM Router in front of two local vLLM teacher replicas: consistent_hash against round_robin.

    .venv/bin/python -m bench.router [--decodes 4] [--beam-width 2] [--max-steps 4]

Starts two replicas of the local CPU teacher (about 5.5 GB each) and, for each policy, a
`vllm-router` (deploy/router/serve-router.sh) over them; runs the same number of CoRD decodes
through it at once (two teachers, both at the router) and prints, per policy, the requests
each replica served and its prefix cache hit rate (``vllm:prefix_cache_hits`` /
``vllm:prefix_cache_queries``, from the replicas' own ``/metrics``), and the decode wall time.
Each policy gets its own problems, so that neither finds the other's traces in the cache.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from cord_proxy import DecodeJob, DecodeOptions, decode
from cord_proxy.config import TeacherConfig
from cord_proxy.decoding.trace import DecodeResult
from cord_proxy.local import LocalTeacherServer, prepare
from cord_proxy.teachers.openai_compat import OpenAICompatTeacher

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = ROOT / "deploy" / "router" / "serve-router.sh"
MODEL = "gemma3-270m"
POLICIES = ("consistent_hash", "round_robin", "cache_aware")
ROUTER_START_S = 180.0
COUNTERS = {
    "requests": "vllm:request_success_total",
    "queries": "vllm:prefix_cache_queries_total",
    "hits": "vllm:prefix_cache_hits_total",
}


@dataclass(frozen=True)
class Counts:
    """One replica's counters: finished requests, prefix cache queries and hits (tokens)."""

    requests: float = 0.0
    queries: float = 0.0
    hits: float = 0.0

    def __sub__(self, other: Counts) -> Counts:
        return Counts(
            self.requests - other.requests, self.queries - other.queries, self.hits - other.hits
        )

    @property
    def hit_rate(self) -> float:
        return self.hits / self.queries if self.queries else 0.0


def parse_counts(text: str) -> Counts:
    """The counters of a Prometheus text page, summed over their labels."""
    sums = dict.fromkeys(COUNTERS, 0.0)
    for line in text.splitlines():
        for key, name in COUNTERS.items():
            if line.startswith(name + "{") or line.startswith(name + " "):
                sums[key] += float(line.rsplit(" ", 1)[1])
    return Counts(**sums)


def replica_counts(root_url: str) -> Counts:
    return parse_counts(httpx.get(root_url.rstrip("/") + "/metrics", timeout=30.0).text)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_router(
    policy: str, replicas: Sequence[str], port: int, log: Path
) -> subprocess.Popen[bytes]:
    """`vllm-router` through the launch script, ready when it lists the model."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "CORD_ROUTER_PORT": str(port),
        "CORD_ROUTER_POLICY": policy,
        "CORD_ROUTER_METRICS_PORT": str(free_port()),
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", str(LAUNCHER), *replicas], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    deadline = time.monotonic() + ROUTER_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"vllm-router exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5.0).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop(proc)
    raise RuntimeError(f"vllm-router did not answer /v1/models within {ROUTER_START_S:g} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_replicas(count: int) -> list[LocalTeacherServer]:
    """`count` local teachers on free ports, one after the other.

    From this thread: a local teacher is stopped when the thread that started it ends.
    """
    prepare()
    servers: list[LocalTeacherServer] = []
    try:
        for _ in range(count):
            servers.append(LocalTeacherServer().start(port=free_port(), timeout=900.0))
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


def teachers_at(base_url: str) -> list[OpenAICompatTeacher]:
    """Two homogeneous teachers, both behind the router."""
    return [
        OpenAICompatTeacher(
            TeacherConfig(name=f"t{t}", base_url=base_url, model=MODEL, temperature=t, timeout=600)
        )
        for t in (0.5, 0.7)
    ]


def problems(first: int, count: int) -> list[tuple[str, str]]:
    """`count` problems that share a few hundred tokens of context (as real prompts do).

    vLLM CPU caches prefixes in blocks of 128 tokens, so the context gives every call whole
    blocks to hit. Each `first` gets its own context: one policy never finds another's.
    """
    facts = " ".join(f"Fact {i}: {i} plus {i} is {2 * i}." for i in range(first, first + 40))
    return [
        (f"{facts}\nProblem {a}: what is {a} + {a + 7}? Think step by step.", str(2 * a + 7))
        for a in range(first, first + count)
    ]


async def run_decodes(
    base_url: str, questions: Sequence[tuple[str, str]], options: DecodeOptions
) -> tuple[float, list[DecodeResult]]:
    """Decode every question at once through one set of teachers; (wall s, results)."""
    teachers = teachers_at(base_url)
    started = time.perf_counter()
    try:
        results = await asyncio.gather(
            *(
                decode(DecodeJob.create(q, teachers, options, reference_answer=a))
                for q, a in questions
            )
        )
    finally:
        for teacher in teachers:
            await teacher.aclose()
    return time.perf_counter() - started, list(results)


def teacher_calls(results: Sequence[DecodeResult]) -> int:
    """Proposal, score and answer calls made (answers count as proposals)."""
    return sum(t.propose_calls + t.score_calls for r in results for t in r.teachers)


@dataclass(frozen=True)
class PolicyRun:
    policy: str
    wall_s: float
    calls: int
    per_replica: list[Counts]

    @property
    def hit_rate(self) -> float:
        total = Counts(
            sum(c.requests for c in self.per_replica),
            sum(c.queries for c in self.per_replica),
            sum(c.hits for c in self.per_replica),
        )
        return total.hit_rate


def measure(
    policy: str,
    replicas: Sequence[str],
    questions: Sequence[tuple[str, str]],
    options: DecodeOptions,
) -> PolicyRun:
    port = free_port()
    proc = start_router(policy, replicas, port, Path(f"/tmp/cord-router-{port}.log"))
    try:
        before = [replica_counts(r) for r in replicas]
        wall, results = asyncio.run(run_decodes(f"http://127.0.0.1:{port}/v1", questions, options))
        after = [replica_counts(r) for r in replicas]
    finally:
        stop(proc)
    deltas = [a - b for a, b in zip(after, before, strict=True)]
    return PolicyRun(policy, wall, teacher_calls(results), deltas)


def render(runs: Sequence[PolicyRun]) -> str:
    lines = [
        "| policy | decode wall s | teacher calls | requests per replica | hit rate per replica "
        "| hit rate, all |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs:
        requests = " / ".join(f"{c.requests:.0f}" for c in run.per_replica)
        rates = " / ".join(f"{c.hit_rate:.3f}" for c in run.per_replica)
        lines.append(
            f"| {run.policy} | {run.wall_s:.1f} | {run.calls} | {requests} | {rates} "
            f"| {run.hit_rate:.3f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decodes", type=int, default=4)
    parser.add_argument("--beam-width", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=4)
    parser.add_argument("--step-tokens", type=int, default=48)
    parser.add_argument("--policies", nargs="+", choices=POLICIES, default=POLICIES[:2])
    parser.add_argument(
        "--replica-urls", nargs=2, help="two running replicas (server roots) instead of new ones"
    )
    args = parser.parse_args(argv)
    options = DecodeOptions(
        beam_width=args.beam_width,
        max_steps=args.max_steps,
        max_step_tokens=args.step_tokens,
        thinking_budget=args.max_steps * args.step_tokens,
        answer_budget=12,
        seed=7,
    )
    servers = [] if args.replica_urls else start_replicas(2)
    try:
        replicas = args.replica_urls or [s.base_url.removesuffix("/v1") for s in servers]
        runs = [
            measure(p, replicas, problems(10 + 100 * POLICIES.index(p), args.decodes), options)
            for p in args.policies
        ]
    finally:
        for server in servers:
            server.stop()
    print(f"{args.decodes} decodes at once, B={args.beam_width}, {args.max_steps} steps of "
          f"{args.step_tokens} tokens, 2 teachers, 2 replicas")  # fmt: skip
    print(render(runs))


if __name__ == "__main__":
    main()
