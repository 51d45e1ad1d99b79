"""What one loopback request costs this process's CPU: a bare asyncio client against a bare
server; and the proxy's own calls against a simulated teacher: a proposal, and the scoring
of one candidate. The floor under the fan-out arm's CPU per teacher call (bench/README.md).

    python -m bench.request_cost
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.fanout import close_teachers, make_teachers
from bench.procs import free_port, sim_teachers
from bench.scenario import SimProfile
from cord_proxy.teachers.base import Message

REQUEST = b"POST /tokenize HTTP/1.1\r\nHost: bench\r\nContent-Length: 3000\r\n\r\n" + b"y" * 3000
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n" + b"x" * 2000
WARM_BATCHES = 5
BATCHES_PER_RUN = 30
RUNS = 5
CONNECTIONS = (1, 8, 16)
CANDIDATES = 8


class _BareServer(asyncio.Protocol):
    """Answers each whole request with a fixed answer; nothing is parsed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.pending = 0

    def data_received(self, data: bytes) -> None:
        self.pending += len(data)
        while self.pending >= len(REQUEST):
            self.pending -= len(REQUEST)
            self.transport.write(ANSWER)  # type: ignore[attr-defined]


class _BareClient(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def ask(self) -> asyncio.Future[None]:
        self.answer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.received = 0
        self.transport.write(REQUEST)  # type: ignore[attr-defined]
        return self.answer

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if self.received >= len(ANSWER):
            self.answer.set_result(None)


def _serve_bare(port: int) -> None:
    async def serve() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_server(_BareServer, "127.0.0.1", port)
        await asyncio.Event().wait()

    asyncio.run(serve())


async def _median_us(batch: Callable[[], Awaitable[object]], requests: int) -> float:
    """Median over `RUNS` runs of `BATCHES_PER_RUN` batches, each of `requests` requests: this
    process's CPU microseconds per request."""
    for _ in range(WARM_BATCHES):
        await batch()
    runs = []
    for _ in range(RUNS):
        started = time.process_time()
        for _ in range(BATCHES_PER_RUN):
            await batch()
        runs.append(1e6 * (time.process_time() - started) / (BATCHES_PER_RUN * requests))
    return statistics.median(runs)


async def _bare(port: int, connections: int) -> float:
    loop = asyncio.get_running_loop()
    clients = []
    for _ in range(connections):
        _, client = await loop.create_connection(_BareClient, "127.0.0.1", port)
        clients.append(client)
    try:
        return await _median_us(lambda: asyncio.gather(*(c.ask() for c in clients)), len(clients))
    finally:
        for client in clients:
            client.transport.close()


def bare_costs() -> dict[int, float]:
    """CPU microseconds per request and answer, by connections at once."""
    port = free_port()
    server = multiprocessing.Process(target=_serve_bare, args=(port,), daemon=True)
    server.start()
    try:
        time.sleep(1.0)
        return {n: asyncio.run(_bare(port, n)) for n in CONNECTIONS}
    finally:
        server.terminate()
        server.join()


async def _teacher_costs() -> dict[str, float]:
    """CPU microseconds of a proposal call, and of scoring one candidate of 8 scored together
    (two ``/tokenize`` requests and its share of the reads), on a simulated teacher."""
    sim = SimProfile(teachers=1, time_scale=0.01)
    with sim_teachers(sim.specs(), sim.seed, Path(tempfile.mkdtemp())) as sims:
        (teacher,) = make_teachers(sims)
        conversation = [Message(role="user", content="What is 6 times 7? Explain briefly.")]
        trace = "<think>\n" + "We think about it carefully and at length. " * 60
        asked = 0

        async def propose() -> None:
            await teacher.propose(conversation, trace, n=1, stop=["\n\n"], max_tokens=64)

        async def score() -> None:
            nonlocal asked
            asked += 1  # every candidate new: nothing is answered from the kept ones
            questions = [(f"{trace} {asked}.{k}. So", " 42") for k in range(CANDIDATES)]
            await teacher.score_many(conversation, questions)

        try:
            return {
                "a proposal call": await _median_us(propose, 1),
                f"a candidate scored, {CANDIDATES} at once": await _median_us(score, CANDIDATES),
            }
        finally:
            await close_teachers([teacher])


def main() -> None:
    for connections, cost in bare_costs().items():
        print(f"bare asyncio client, {connections} connections at once: {cost:.0f} us a request")
    for what, cost in asyncio.run(_teacher_costs()).items():
        print(f"cord-proxy on a simulated teacher, {what}: {cost:.0f} us")


if __name__ == "__main__":
    main()
