"""``python -m bench.tokenize_sharing``: the /tokenize requests and wall time of one small
CoRD decode on the real teacher.

Each teacher's session counts, by a trace, the requests it sends per route, and the distinct
/tokenize bodies among them. Run it on two versions of the code to compare them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from types import SimpleNamespace
from typing import Any

import aiohttp

from bench.real import RealSettings, local_teachers, reachable, step_options
from bench.scenario import question
from cord_proxy import DecodeJob, OpenAICompatTeacher, decode
from cord_proxy.teachers import Message


class RouteTap:
    """Counts the requests a session sends, per route."""

    def __init__(self) -> None:
        self.routes: Counter[str] = Counter()
        self.trace = aiohttp.TraceConfig()
        self.trace.on_request_start.append(self._started)

    async def _started(self, _session: Any, _context: SimpleNamespace, params: Any) -> None:
        self.routes[params.url.path] += 1


def counted_teachers(
    base_url: str, model: str, count: int, tap: RouteTap
) -> tuple[list[OpenAICompatTeacher], list[aiohttp.ClientSession]]:
    sessions = [aiohttp.ClientSession(trace_configs=[tap.trace]) for _ in range(count)]
    teachers = local_teachers(
        base_url,
        model,
        count,
        timeout_s=600.0,
        max_concurrency=64,
        score_method="cached",
        sessions=sessions,
    )
    return teachers, sessions


async def one_decode(arguments: argparse.Namespace) -> dict[str, Any]:
    tap = RouteTap()
    teachers, sessions = counted_teachers(arguments.url, arguments.model, arguments.teachers, tap)
    text, _ = question(0, tag=None)
    options = step_options(arguments.beam, arguments.steps, arguments.step_tokens, 8, seed=7)
    options = options.model_copy(update={"proposals_per_teacher": arguments.proposals})
    started = time.perf_counter()
    try:
        result = await decode(
            DecodeJob.create([Message(role="user", content=text)], teachers, options)
        )
    finally:
        for session in sessions:
            await session.close()
    return {
        "wall_s": round(time.perf_counter() - started, 2),
        "tokenize_requests": tap.routes["/tokenize"],
        "requests": dict(tap.routes),
        "score_calls": sum(u.score_calls for u in result.teachers),
        "steps": len(result.best.steps),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8401/v1")
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--teachers", type=int, default=2)
    parser.add_argument("--beam", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--step-tokens", type=int, default=24)
    parser.add_argument("--proposals", type=int, default=3, help="proposals per teacher")
    arguments = parser.parse_args()
    problem = reachable(RealSettings(base_url=arguments.url, model=arguments.model))
    if problem is not None:
        print(json.dumps({"skipped": problem}))
        return 0
    print(json.dumps(asyncio.run(one_decode(arguments))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
