"""A simulated teacher server: a benchmark fixture, not a model.

    python -m bench.simteacher --port 8501 --config '{"seed": 7, "models": {"fast": {}}}'

It answers the subset of vLLM's OpenAI API that `OpenAICompatTeacher`
uses, with deterministic texts, log-probabilities and latencies (`bench.simmodel`):

- ``POST /v1/chat/completions``: proposals (``continue_final_message``, ``n``, ``stop``,
  ``max_tokens``, ``logprobs``) and scores (``prompt_logprobs``, top-level in the answer).
- ``POST /v1/completions``: the same for template prompts, as text or as token ids; scores
  by ``prompt_logprobs`` (per choice), by ``echo`` with ``logprobs``, or by one-token reads
  on a list of token-id prompts (``logprob_token_ids`` or ``allowed_token_ids``,
  ``max_tokens: 1``, ``logprobs``, ``return_tokens_as_token_ids``). A read request is a
  prefix-cache hit: it takes the fixed score latency only. Every route gives a token the
  same log-probability at one position.
- ``POST /tokenize`` (a prompt or chat messages) and ``POST /detokenize``, at no latency.
- ``POST /cord/spans``: cord-proxy's spans route, as the local teacher's vLLM plugin serves
  it (cord_proxy/local/vllm_plugin/cord_spans_wire.py), at no latency.
- ``GET /v1/models``.

Fixture-only routes: ``GET /bench/log`` returns one record per answered call (which
request, which proposal it follows, the simulated latency); ``POST /bench/reset`` clears it.
``--config`` takes JSON text or the path of a JSON file.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import time
from dataclasses import asdict, dataclass
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any

from aiohttp import web

from bench.simmodel import (
    THINK_CLOSE,
    THINK_OPEN,
    TOKEN_CHARS,
    Choice,
    ModelSpec,
    SimConfig,
    Vocabulary,
    conversation_key,
    count_tokens,
    generate,
    jitter,
    logprob_base,
    markers,
    position_logprob,
    propose_latency,
    render_chat,
    score_latency,
    token_logprobs,
    tokenize,
)
from cord_proxy.local.vllm_plugin.cord_spans_wire import ROUTE as SPANS_ROUTE
from cord_proxy.local.vllm_plugin.cord_spans_wire import Side, error_entry, pair_entry, pairs_of

CONFIG_KEY = web.AppKey("config", SimConfig)
LOG_KEY = web.AppKey("log", list)
VOCAB_KEY = web.AppKey("vocab", Vocabulary)
MAX_MODEL_LEN = 131_072
dumps = functools.partial(json.dumps, separators=(",", ":"))


@dataclass
class CallRecord:
    """One answered teacher call, for the ideal critical path."""

    conv: str
    kind: str  # propose | score | answer
    model: str
    parent: str | None
    depth: int
    ids: list[str]
    sleep_s: float
    arrived: float
    done: float
    prompt_tokens: int
    completion_tokens: int


class RequestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": status}}
    return web.json_response(body, status=status, dumps=dumps)


def _spec(app: web.Application, body: dict[str, Any]) -> ModelSpec:
    model = body.get("model")
    spec = app[CONFIG_KEY].models.get(str(model))
    if spec is None:
        raise RequestError(404, f"The model `{model}` does not exist.")
    return spec


def _stop_list(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop") or []
    return [stop] if isinstance(stop, str) else [str(s) for s in stop]


def _is_answer(prompt: str) -> bool:
    return THINK_CLOSE in prompt.rsplit(THINK_OPEN, 1)[-1]


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _prompt_logprobs(
    config: SimConfig, spec: ModelSpec, prompt: str, vocab: Vocabulary
) -> list[dict[str, dict[str, Any]] | None]:
    """vLLM's shape: null for the first token, then ``{token_id: {logprob, rank, decoded}}``."""
    return json.loads(_prompt_logprobs_json(config, spec, prompt, vocab))  # type: ignore[no-any-return]


def _prompt_logprobs_json(
    config: SimConfig, spec: ModelSpec, prompt: str, vocab: Vocabulary
) -> str:
    """`_prompt_logprobs` as JSON text, written directly: scores are the simulator's hot path."""
    pieces = tokenize(prompt)
    ids = [vocab.id_of(piece) for piece in pieces]
    values = token_logprobs(config, spec, ids)
    parts = ["null"]
    for piece, token, value in zip(pieces[1:], ids[1:], values[1:], strict=True):
        parts.append(
            f'{{"{token}":{{"logprob":{value!r},"rank":1,'
            f'"decoded_token":{encode_basestring(piece)}}}}}'
        )
    return "[" + ",".join(parts) + "]"


def _echo_logprobs(
    config: SimConfig, spec: ModelSpec, prompt: str, vocab: Vocabulary
) -> dict[str, Any]:
    pieces = tokenize(prompt)
    ids = [vocab.id_of(piece) for piece in pieces]
    values: list[float | None] = [None, *token_logprobs(config, spec, ids)[1:]]
    offsets = [i * TOKEN_CHARS for i in range(len(pieces))]
    top = [None if v is None else {p: v} for p, v in zip(pieces, values, strict=True)]
    return {"tokens": pieces, "token_logprobs": values, "text_offset": offsets, "top_logprobs": top}


async def _record_and_wait(
    app: web.Application,
    kind: str,
    spec: ModelSpec,
    prompt: str,
    latency: float,
    choices: list[Choice],
) -> None:
    arrived = time.perf_counter()
    await asyncio.sleep(latency)
    found = markers(prompt)
    app[LOG_KEY].append(
        CallRecord(
            conv=conversation_key(prompt),
            kind=kind,
            model=spec.name,
            parent=found[-1] if found else None,
            depth=len(found),
            ids=[c.marker for c in choices if c.marker],
            sleep_s=latency,
            arrived=arrived,
            done=time.perf_counter(),
            prompt_tokens=count_tokens(prompt),
            completion_tokens=sum(c.tokens for c in choices),
        )
    )


async def _propose_choices(
    app: web.Application, spec: ModelSpec, prompt: str, body: dict[str, Any]
) -> list[Choice]:
    config = app[CONFIG_KEY]
    stop = _stop_list(body)
    max_tokens = int(body.get("max_tokens") or 16)
    n = int(body.get("n") or 1)
    choices = [generate(config, spec, prompt, stop, max_tokens, i) for i in range(n)]
    kind = "answer" if _is_answer(prompt) else "propose"
    await _record_and_wait(
        app, kind, spec, prompt, propose_latency(config, spec, prompt, choices), choices
    )
    return choices


async def _score_wait(app: web.Application, spec: ModelSpec, prompt: str) -> None:
    latency = score_latency(app[CONFIG_KEY], spec, prompt)
    await _record_and_wait(app, "score", spec, prompt, latency, [])


def _envelope(
    kind: str, model: str, choices: list[dict[str, Any]], usage: dict[str, int]
) -> dict[str, Any]:
    return {
        "id": f"sim-{time.perf_counter_ns()}",
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage,
    }


def _chat_choice(index: int, choice: Choice, with_logprobs: bool) -> dict[str, Any]:
    logprobs = None
    if with_logprobs:
        content = [
            {"token": p, "logprob": -0.5, "bytes": list(p.encode()), "top_logprobs": []}
            for p in tokenize(choice.text)
        ]
        logprobs = {"content": content}
    return {
        "index": index,
        "message": {"role": "assistant", "content": choice.text, "reasoning_content": None},
        "logprobs": logprobs,
        "finish_reason": choice.finish_reason,
        "stop_reason": choice.stop_reason,
    }


async def chat_completions(request: web.Request) -> web.Response:
    try:
        body = await request.json()
        spec = _spec(request.app, body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError(400, "messages must be a non-empty list")
        prompt = render_chat(
            messages,
            continue_final=bool(body.get("continue_final_message", False)),
            add_generation_prompt=bool(body.get("add_generation_prompt", True)),
        )
        if body.get("prompt_logprobs") is not None:
            return await _chat_score(request.app, spec, prompt)
        choices = await _propose_choices(request.app, spec, prompt, body)
    except RequestError as error:
        return _error(error.status, error.message)
    wire = [_chat_choice(i, c, bool(body.get("logprobs"))) for i, c in enumerate(choices)]
    usage = _usage(count_tokens(prompt), sum(c.tokens for c in choices))
    return web.json_response(_envelope("chat.completion", spec.name, wire, usage), dumps=dumps)


async def _chat_score(app: web.Application, spec: ModelSpec, prompt: str) -> web.Response:
    await _score_wait(app, spec, prompt)
    choice = Choice(".", 1, "length", None, None)
    data = _envelope(
        "chat.completion",
        spec.name,
        [_chat_choice(0, choice, False)],
        _usage(count_tokens(prompt), 1),
    )
    logprobs = _prompt_logprobs_json(app[CONFIG_KEY], spec, prompt, app[VOCAB_KEY])
    text = dumps(data)[:-1] + ',"prompt_logprobs":' + logprobs + "}"
    return web.Response(text=text, content_type="application/json")


def _completion_choice(index: int, choice: Choice, with_logprobs: bool) -> dict[str, Any]:
    logprobs = None
    if with_logprobs:
        pieces = tokenize(choice.text)
        logprobs = {
            "tokens": pieces,
            "token_logprobs": [-0.5] * len(pieces),
            "text_offset": [i * TOKEN_CHARS for i in range(len(pieces))],
            "top_logprobs": None,
        }
    return {
        "index": index,
        "text": choice.text,
        "logprobs": logprobs,
        "finish_reason": choice.finish_reason,
        "stop_reason": choice.stop_reason,
    }


def _prompt_text(app: web.Application, prompt: Any) -> str:
    """A text prompt, or the text of a token-id prompt."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        try:
            return app[VOCAB_KEY].decode(prompt)
        except KeyError as error:
            raise RequestError(400, f"token id {error} is out of vocabulary") from None
    raise RequestError(400, "the simulator takes a prompt string or a list of token ids")


def _prompt_texts(app: web.Application, prompt: Any) -> list[str]:
    """One prompt, or a list of token-id prompts (a batch of one-token reads)."""
    if isinstance(prompt, list) and prompt and all(isinstance(p, list) for p in prompt):
        return [_prompt_text(app, p) for p in prompt]
    return [_prompt_text(app, prompt)]


async def completions(request: web.Request) -> web.Response:
    try:
        body = await request.json()
        spec = _spec(request.app, body)
        prompts = _prompt_texts(request.app, body.get("prompt"))
        if body.get("logprob_token_ids") or body.get("allowed_token_ids"):
            return await _token_reads(request.app, spec, prompts, body)
        if len(prompts) != 1:
            raise RequestError(400, "the simulator takes one prompt except for token reads")
        prompt = prompts[0]
        if body.get("echo") or body.get("prompt_logprobs") is not None:
            return await _completion_score(request.app, spec, prompt, body)
        choices = await _propose_choices(request.app, spec, prompt, body)
    except RequestError as error:
        return _error(error.status, error.message)
    wire = [
        _completion_choice(i, c, body.get("logprobs") is not None) for i, c in enumerate(choices)
    ]
    usage = _usage(count_tokens(prompt), sum(c.tokens for c in choices))
    return web.json_response(_envelope("text_completion", spec.name, wire, usage), dumps=dumps)


def _read_choice(
    app: web.Application, spec: ModelSpec, prompt: str, body: dict[str, Any], index: int
) -> dict[str, Any]:
    """One prompt's next token (forced by ``allowed_token_ids``, else the first asked id)
    with its log-probability and those of every id in ``logprob_token_ids``."""
    config, vocab = app[CONFIG_KEY], app[VOCAB_KEY]
    position = count_tokens(prompt)
    asked = [int(t) for t in body.get("logprob_token_ids") or []]
    allowed = [int(t) for t in body.get("allowed_token_ids") or []]
    for token in (*allowed, *asked):
        if token not in vocab.pieces:
            raise RequestError(400, f"token id {token} is out of vocabulary")
    base = logprob_base(config, spec)
    as_ids = bool(body.get("return_tokens_as_token_ids"))

    def shown(token: int) -> str:
        return f"token_id:{token}" if as_ids else vocab.pieces[token]

    sampled = (allowed or asked)[0]
    value = position_logprob(base, position, sampled)
    top = {shown(sampled): value}
    for token in asked:
        top.setdefault(shown(token), position_logprob(base, position, token))
    return {
        "index": index,
        "text": vocab.pieces[sampled],
        "logprobs": {
            "text_offset": [0],
            "token_logprobs": [value],
            "tokens": [shown(sampled)],
            "top_logprobs": [top],
        },
        "finish_reason": "length",
        "stop_reason": None,
    }


async def _token_reads(
    app: web.Application, spec: ModelSpec, prompts: list[str], body: dict[str, Any]
) -> web.Response:
    """One-token reads on token-id prompts: prefix-cache hits, one fixed latency a request."""
    choices = [_read_choice(app, spec, p, body, i) for i, p in enumerate(prompts)]
    latency = spec.score_fixed_s * jitter(app[CONFIG_KEY], spec, "read", prompts[0])
    await _record_and_wait(app, "read", spec, prompts[0], latency, [])
    usage = _usage(sum(count_tokens(p) for p in prompts), len(prompts))
    return web.json_response(_envelope("text_completion", spec.name, choices, usage), dumps=dumps)


def _tokenized(app: web.Application, body: dict[str, Any]) -> tuple[list[int], list[str]]:
    """A ``/tokenize`` body's ids and pieces; RequestError where it names no prompt."""
    if isinstance(body.get("messages"), list):
        text = render_chat(
            body["messages"],
            continue_final=bool(body.get("continue_final_message", False)),
            add_generation_prompt=bool(body.get("add_generation_prompt", True)),
        )
    elif isinstance(body.get("prompt"), str):
        text = body["prompt"]
    else:
        raise RequestError(400, "give a prompt string or chat messages")
    pieces = tokenize(text)
    vocab = app[VOCAB_KEY]
    return [vocab.id_of(piece) for piece in pieces], pieces


async def tokenize_route(request: web.Request) -> web.Response:
    body = await request.json()
    try:
        ids, pieces = _tokenized(request.app, body)
    except RequestError as error:
        return _error(error.status, error.message)
    strs = pieces if body.get("return_token_strs") else None  # as vLLM: the pieces when asked
    answer = {"count": len(ids), "max_model_len": MAX_MODEL_LEN, "tokens": ids, "token_strs": strs}
    return web.json_response(answer, dumps=dumps)


def _side(app: web.Application, body: dict[str, Any]) -> Side:
    """One side of a spans pair, or its error entry."""
    try:
        ids, pieces = _tokenized(app, body)
    except RequestError as error:
        return error_entry(error.message, error.status)
    return ids, pieces, MAX_MODEL_LEN


async def spans_route(request: web.Request) -> web.Response:
    """cord-proxy's spans route, as the local teacher's vLLM plugin serves it."""
    try:
        pairs = pairs_of(await request.json())
    except (ValueError, OverflowError) as error:
        return _error(413 if isinstance(error, OverflowError) else 400, str(error))
    sides = [(_side(request.app, prefix), _side(request.app, full)) for prefix, full in pairs]
    entries = [pair_entry(prefix, full) for prefix, full in sides]
    return web.json_response({"spans": entries}, dumps=dumps)


async def detokenize_route(request: web.Request) -> web.Response:
    body = await request.json()
    try:
        text = request.app[VOCAB_KEY].decode([int(t) for t in body.get("tokens") or []])
    except (KeyError, TypeError, ValueError):
        return _error(400, "tokens must be token ids this server handed out")
    return web.json_response({"prompt": text}, dumps=dumps)


async def _completion_score(
    app: web.Application, spec: ModelSpec, prompt: str, body: dict[str, Any]
) -> web.Response:
    await _score_wait(app, spec, prompt)
    config = app[CONFIG_KEY]
    choice: dict[str, Any] = {
        "index": 0,
        "text": "",
        "logprobs": None,
        "finish_reason": "length",
        "stop_reason": None,
    }
    if body.get("echo"):
        choice["text"] = prompt
        choice["logprobs"] = _echo_logprobs(config, spec, prompt, app[VOCAB_KEY])
    if body.get("prompt_logprobs") is not None:
        choice["prompt_logprobs"] = _prompt_logprobs(config, spec, prompt, app[VOCAB_KEY])
    data = _envelope("text_completion", spec.name, [choice], _usage(count_tokens(prompt), 0))
    return web.json_response(data, dumps=dumps)


async def models(request: web.Request) -> web.Response:
    names = sorted(request.app[CONFIG_KEY].models)
    data = [{"id": n, "object": "model", "owned_by": "bench.simteacher"} for n in names]
    return web.json_response({"object": "list", "data": data}, dumps=dumps)


async def read_log(request: web.Request) -> web.Response:
    records = [asdict(r) for r in request.app[LOG_KEY]]
    return web.json_response({"records": records}, dumps=dumps)


async def reset_log(request: web.Request) -> web.Response:
    request.app[LOG_KEY].clear()
    return web.json_response({"ok": True})


def make_app(config: SimConfig) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[CONFIG_KEY] = config
    app[LOG_KEY] = []
    app[VOCAB_KEY] = Vocabulary()
    app.router.add_post("/tokenize", tokenize_route)
    app.router.add_post("/detokenize", detokenize_route)
    app.router.add_post(SPANS_ROUTE, spans_route)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/bench/log", read_log)
    app.router.add_post("/bench/reset", reset_log)
    return app


def load_config(text: str) -> SimConfig:
    raw = text if text.lstrip().startswith("{") else Path(text).read_text(encoding="utf-8")
    return SimConfig.from_dict(json.loads(raw))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.simteacher",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--config", required=True, help="JSON text or a JSON file")
    args = parser.parse_args(argv)
    app = make_app(load_config(args.config))
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None, backlog=4096)


if __name__ == "__main__":
    main()
