"""A teacher endpoint's model list (teachers/endpoint.py) against a FAKE server that sends its
answer one byte at a time: a fault a real vLLM server cannot make on demand."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from cord_proxy.config import TeacherConfig
from cord_proxy.teachers.endpoint import fetch_model_ids, listed_models

BODY = b'{"object": "list", "data": [{"id": "m"}]}'
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"


@asynccontextmanager
async def dripping_server(every_s: float) -> AsyncIterator[str]:
    """A FAKE endpoint that answers any request with its head, then a byte every `every_s`."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(HEAD % len(BODY))
        try:
            for byte in BODY:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(every_s)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.close()


async def test_an_answer_that_drips_ends_at_the_timeout() -> None:
    async with dripping_server(every_s=0.2) as base_url:
        started = time.monotonic()
        with pytest.raises(httpx.TimeoutException):
            await fetch_model_ids(base_url, None, timeout=1.0)
        assert time.monotonic() - started < 3.0  # the whole body would take 8 s


async def test_a_teacher_whose_list_drips_counts_as_unreachable() -> None:
    async with dripping_server(every_s=0.2) as base_url:
        config = TeacherConfig(name="drip", base_url=base_url, model="m")
        started = time.monotonic()
        assert await listed_models(config, timeout=1.0) is None
        assert time.monotonic() - started < 3.0


async def test_a_quick_answer_is_read_whole() -> None:
    async with dripping_server(every_s=0.0) as base_url:
        assert await fetch_model_ids(base_url, None, timeout=5.0) == ["m"]
