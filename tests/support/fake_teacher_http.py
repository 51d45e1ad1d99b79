"""A FAKE OpenAI-compatible teacher server for what the real one cannot do on demand.

It answers after a delay chosen by the model name (``fast``: none, ``slow``: 30 s,
``broken``: HTTP 500, ``malformed``: a 200 whose proposals have the wrong shape) and
counts the calls in flight, so tests can see that a client
disconnect really cancels every teacher call. It is never a stand-in for a feature test.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from cord_proxy.testing import fake_vllm_wire as wire
from tests.support.threaded_server import ThreadedServer

DELAYS = {"fast": 0.0, "slow": 30.0}


class CountingFakeTeacher(ThreadedServer):
    """Counts the calls it serves, in flight, started and cancelled."""

    thread_name = "fake-teacher"
    runner_options = {"handler_cancellation": True}  # noqa: RUF012

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0
        self.started = 0
        self.cancelled = 0
        self.models_calls = 0

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._chat)
        app.router.add_post("/tokenize", self._tokenize)
        app.router.add_post("/detokenize", self._detokenize)
        app.router.add_get("/v1/models", self._models)
        return app

    async def _models(self, request: web.Request) -> web.Response:
        self.models_calls += 1
        data = [{"id": name, "object": "model"} for name in (*DELAYS, "broken", "malformed")]
        return web.json_response({"object": "list", "data": data})

    async def _chat(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json()
        model = body.get("model", "fast")
        if model == "broken":
            return web.json_response({"error": {"message": "fake failure"}}, status=500)
        if model == "malformed" and not wire.is_scoring(body):
            return web.json_response({"choices": [{"index": "0", "message": "not an object"}]})
        self.in_flight += 1
        self.started += 1
        try:
            await asyncio.sleep(DELAYS.get(model, 0.0))
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1
        if wire.is_scoring(body):
            return web.json_response(wire.score_completion(body, lambda _t, _p: -0.25))
        return web.json_response(_proposed(body))

    async def _tokenize(self, request: web.Request) -> web.Response:
        return web.json_response(wire.tokenize(await request.json()))

    async def _detokenize(self, request: web.Request) -> web.Response:
        return web.json_response(wire.detokenize(await request.json()))


def _proposed(body: dict[str, Any]) -> dict[str, Any]:
    prefix = body["messages"][-1]["content"]
    closing = prefix.count("### Step") >= 2
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": " add the numbers.\n\n"},
        "logprobs": {"content": [{"token": "x", "logprob": -0.5}] * 4},
        "finish_reason": "stop",
        "stop_reason": "</think>" if closing else "### Step",
    }
    n = int(body.get("n", 1))
    choices = [{**choice, "index": i} for i in range(n)]
    return {
        "object": "chat.completion",
        "choices": choices,
        "usage": {"prompt_tokens": 10, "completion_tokens": 4 * n},
    }
