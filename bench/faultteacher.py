"""A FAKE, fault-injecting vLLM teacher for the fault benchmark (`bench.faults`).

It answers what `OpenAICompatTeacher` sends, over a character-level
tokenizer (one token per character, its code point; ``<bos>`` is token 2), in the wire
shapes of vLLM 0.32:

- ``GET /v1/models``; ``GET /health`` (vLLM's: 200, or 500 during the ``error500`` fault; a
  server answering ``malformed`` bodies believes itself healthy and answers 200);
- ``POST /tokenize`` (a text prompt or chat messages: ``tokens``, ``count``,
  ``max_model_len``, ``token_strs``) and ``POST /detokenize``;
- proposals: ``POST /v1/chat/completions`` (``continue_final_message``) and text
  ``POST /v1/completions``;
- scores: token-id ``POST /v1/completions`` with ``prompt_logprobs``, ``echo``, or a list
  of prompts with ``logprob_token_ids`` + ``return_tokens_as_token_ids`` (answering
  ``top_logprobs[0]["token_id:N"]``).

A proposal is one short step, named after the model so that teachers disagree; the
`steps`-th step of a trace stops at ``</think>``, and a closed trace gets the answer.
Latencies are fixed per route. The fault, set by ``POST /fake/fault {"fault": ...}``, is
one of ``none``, ``slow`` (every latency x `slow_factor`), ``malformed`` (200 with bodies
of the wrong shape) and ``error500`` (HTTP 500 with an error body). Killing, stopping and
refusing are done to the process from outside. ``--listen-at`` (a Unix time) makes a
process started ahead bind its port at that moment (or as soon after it as the process it
replaces is gone), so an outage made by a kill and a restart lasts as long as meant, however
long the imports take on a busy machine (`bench.rotation`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson
from aiohttp import web

from cord_proxy.testing import fake_vllm_wire as wire

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
MAX_MODEL_LEN = 4096
FAULTS = ("none", "slow", "malformed", "error500")
Handler = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class FakeSpec:
    """Latencies in seconds per route, and the shape of a trace."""

    propose_s: float = 0.04
    score_s: float = 0.02
    tokenize_s: float = 0.002
    slow_factor: float = 10.0
    steps: int = 1
    answer: str = "42"


@dataclass
class FakeState:
    spec: FakeSpec
    fault: str = "none"
    calls: int = 0


def render_text(body: dict[str, Any]) -> str:
    if "messages" in body:
        return "".join(f"<{m['role']}>{m['content']}" for m in body["messages"])
    prompt = body["prompt"]
    return prompt if isinstance(prompt, str) else "".join(chr(t) for t in prompt if t != wire.BOS)


def logprob(token: int, position: int) -> float:
    """A scripted log-probability: deterministic, finite, negative."""
    return -0.05 - ((token * 31 + position * 7) % 97) / 100.0


def continuation(spec: FakeSpec, model: str, prefix: str, stop: list[str]) -> tuple[str, Any]:
    """The text after `prefix` and its stop reason: one step, or the answer."""
    if THINK_CLOSE in prefix.rsplit(THINK_OPEN, 1)[-1]:
        return spec.answer, None
    depth = prefix.count("### Step") + 1
    step_stops = [s for s in stop if s != THINK_CLOSE]
    closing = depth >= spec.steps and THINK_CLOSE in stop
    text = f" {model} works out step {depth}: 6 times 7 is 42.\n\n"
    return text, THINK_CLOSE if closing or not step_stops else step_stops[0]


def propose(spec: FakeSpec, body: dict[str, Any], chat: bool) -> dict[str, Any]:
    text, stop_reason = continuation(
        spec, str(body.get("model")), render_text(body), list(body.get("stop") or [])
    )
    text = text[: int(body.get("max_tokens") or len(text))]
    choices = []
    for index in range(int(body.get("n") or 1)):
        choice: dict[str, Any] = {"index": index, "finish_reason": "stop"}
        choice["stop_reason"] = stop_reason
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
            choice["logprobs"] = {"content": [{"token": c, "logprob": -0.5} for c in text]}
        else:
            choice["text"] = text
            choice["logprobs"] = {"tokens": list(text), "token_logprobs": [-0.5] * len(text)}
        choices.append(choice)
    usage = {"prompt_tokens": len(render_text(body)) + 1, "completion_tokens": len(text)}
    return {"id": "cmpl-fake", "object": "chat.completion", "choices": choices, "usage": usage}


def tokenize(body: dict[str, Any]) -> dict[str, Any]:
    return wire.tokenize(body, MAX_MODEL_LEN)


def score(body: dict[str, Any]) -> Any:
    return wire.score_completion(body, logprob)


def malformed(route: str) -> Any:
    """A 200 body of the wrong shape for `route`."""
    if route in ("tokenize", "detokenize"):
        return {"tokens": "not a list", "count": "many", "prompt": 7}
    if route == "chat":
        return {"choices": [{"index": "0", "message": "text", "logprobs": {"content": 3}}]}
    return {"choices": [{"index": 0, "text": 5, "logprobs": 1, "prompt_logprobs": "x"}]}


def latency(state: FakeState, route: str) -> float:
    spec = state.spec
    base = {"chat": spec.propose_s, "completions": spec.propose_s, "score": spec.score_s}.get(
        route, spec.tokenize_s
    )
    return base * (spec.slow_factor if state.fault == "slow" else 1.0)


def routed(state: FakeState, route: str, answer: Handler) -> Callable[..., Awaitable[Any]]:
    async def handle(request: web.Request) -> web.Response:
        state.calls += 1
        body = orjson.loads(await request.read())
        kind = "score" if route == "completions" and isinstance(body.get("prompt"), list) else route
        await asyncio.sleep(latency(state, kind))
        if state.fault == "error500":
            error = {"error": {"message": "fake server error", "type": "InternalServerError"}}
            return _json(error, status=500)
        if state.fault == "malformed":
            return _json(malformed(route))
        return _json(answer(body))

    return handle


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def completions(spec: FakeSpec) -> Handler:
    def answer(body: dict[str, Any]) -> Any:
        return score(body) if isinstance(body.get("prompt"), list) else propose(spec, body, False)

    return answer


def build_app(spec: FakeSpec) -> web.Application:
    state = FakeState(spec)

    async def models(_: web.Request) -> web.Response:
        return _json({"object": "list", "data": [{"id": "fake", "max_model_len": MAX_MODEL_LEN}]})

    async def health(_: web.Request) -> web.Response:
        return web.Response(status=500 if state.fault == "error500" else 200)

    async def set_fault(request: web.Request) -> web.Response:
        fault = (await request.json()).get("fault")
        if fault not in FAULTS:
            return _json({"error": {"message": f"unknown fault {fault!r}"}}, status=400)
        state.fault = fault
        return _json({"fault": fault, "calls": state.calls})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    app.router.add_post("/fake/fault", set_fault)
    app.router.add_post("/tokenize", routed(state, "tokenize", tokenize))
    app.router.add_post("/detokenize", routed(state, "detokenize", wire.detokenize))
    app.router.add_post(
        "/v1/chat/completions", routed(state, "chat", lambda b: propose(spec, b, True))
    )
    app.router.add_post("/v1/completions", routed(state, "completions", completions(spec)))
    return app


PORT_WAIT_S = 60.0


def wait_for_port(port: int) -> None:
    """Wait until `port` can be bound (the process it replaces may not be dead yet)."""
    deadline = time.monotonic() + PORT_WAIT_S
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
        time.sleep(0.005)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.faultteacher", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--spec", default="{}", help="JSON: FakeSpec fields to override")
    parser.add_argument("--listen-at", type=float, help="Unix time at which to bind the port")
    args = parser.parse_args(argv)
    overrides = json.loads(args.spec)
    spec = replace(FakeSpec(), **overrides)
    app = build_app(spec)
    if args.listen_at is not None:
        time.sleep(max(0.0, args.listen_at - time.time()))
        wait_for_port(args.port)
    print(json.dumps({"listening_at": time.time()}), flush=True)  # read by bench.rotation
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
