"""A real local teacher that is stopped and started again takes proposals again within 2 s of
answering its health check (issue 20), with the breaker's default settings (a cool-down that
grows to 30 s while the teacher is down).

The test starts its own vLLM teacher on a free port (stopping the session's teacher would
break the other tests): twice, so it takes a few minutes on 2 cores.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from cord_proxy.config import TeacherConfig
from cord_proxy.errors import CircuitOpenError, TeacherError
from cord_proxy.local import LOCAL_MODEL_NAME, LocalTeacherServer, prepare
from cord_proxy.teachers.base import Message
from cord_proxy.teachers.openai_compat import OpenAICompatTeacher

pytestmark = pytest.mark.integration

BACK_WITHIN_S = 2.0
CONVERSATION = [Message(role="user", content="What is 6 times 7?")]
TRY_EVERY_S = 0.1
POLL_EVERY_S = 0.05


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def own_teacher() -> AsyncIterator[LocalTeacherServer]:
    await asyncio.to_thread(prepare)
    server = LocalTeacherServer(progress=print)
    await asyncio.to_thread(server.start, free_port())
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


async def propose(teacher: OpenAICompatTeacher) -> None:
    await teacher.propose(CONVERSATION, "The answer", n=1, stop=["\n"], max_tokens=2)


async def first_healthy(url: str) -> float:
    """When ``GET /health`` first answers 200, polled every `POLL_EVERY_S`."""
    timeout = aiohttp.ClientTimeout(total=1.0)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return time.monotonic()
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(POLL_EVERY_S)


async def first_proposal(teacher: OpenAICompatTeacher, cooldowns: list[float]) -> float:
    """When the first proposal call that succeeded began, trying every `TRY_EVERY_S`; the
    breaker's cool-down before each try goes to `cooldowns`."""
    while True:
        cooldowns.append(teacher.breaker.cooldown_s)
        began = time.monotonic()
        try:
            await propose(teacher)
            return began
        except (CircuitOpenError, TeacherError):
            await asyncio.sleep(TRY_EVERY_S)


async def test_a_restarted_teacher_takes_proposals_within_2_s_of_its_health_check(
    own_teacher: LocalTeacherServer,
) -> None:
    config = TeacherConfig(
        name="restarted", base_url=own_teacher.base_url, model=LOCAL_MODEL_NAME, max_retries=0
    )
    teacher = OpenAICompatTeacher(config)
    try:
        await propose(teacher)
        port = own_teacher.port
        await asyncio.to_thread(own_teacher.stop)
        while not teacher.breaker.is_open:  # each refused call after the last: an event
            with pytest.raises(TeacherError):
                await propose(teacher)
        assert teacher.breaker.max_cooldown_s == 30.0

        healthy = asyncio.ensure_future(first_healthy(own_teacher.base_url[:-3] + "/health"))
        cooldowns: list[float] = []
        proposed = asyncio.ensure_future(first_proposal(teacher, cooldowns))
        await asyncio.to_thread(own_teacher.start, port)
        healthy_at, proposed_at = await asyncio.wait_for(
            asyncio.gather(healthy, proposed), timeout=60.0
        )
        print(
            f"\nhealthy, then proposals again {proposed_at - healthy_at:.2f} s later; the "
            f"cool-down had grown to {max(cooldowns):g} s"
        )
        assert proposed_at - healthy_at <= BACK_WITHIN_S
        assert teacher.breaker.state == "closed"
    finally:
        await teacher.aclose()
