"""A FAKE vLLM server over a real byte-level BPE tokenizer, for exact-span tests.

The real local teacher is Gemma (SentencePiece with byte fallback); the paper's teachers
(Qwen, DeepSeek) use byte-level BPE, where a multi-byte first character of a target fuses
with the prefix's trailing space. No such model runs here, so this FAKE serves DeepSeek's
tokenizer (the copy litellm ships, loaded with `tokenizers`) behind vLLM 0.32's routes and
JSON shapes, with SCRIPTED log-probabilities: the token `t` at prompt position `p` always
reads `scripted_logprob(p, t)`, whichever route asks. It is never a stand-in for a model.

Routes: ``GET /v1/models``; ``POST /tokenize`` (text or chat messages), ``POST /detokenize``;
``POST /v1/completions`` with a text or token-id prompt, or a list of them (``prompt_logprobs``,
``echo`` with ``logprobs``, ``allowed_token_ids``, ``logprob_token_ids``,
``return_tokens_as_token_ids``); ``POST
/v1/chat/completions`` with ``prompt_logprobs`` (score) or without (a fixed proposal).
`FakeVllmBpe.fault` breaks the tokenizer on purpose (see `FAULTS`); `requests` records every
call as ``(path, body)``.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from tokenizers import Tokenizer

from tests.support.threaded_server import ThreadedServer

MODEL = "deepseek-bpe"
MAX_MODEL_LEN = 2048
BOS = "<\uff5cbegin\u2581of\u2581sentence\uff5c>"
EOS = "<\uff5cend\u2581of\u2581sentence\uff5c>"
USER = "<\uff5cUser\uff5c>"
ASSISTANT = "<\uff5cAssistant\uff5c>"
PROPOSAL = " Then we add them.\n\n"
# tokenize_drops_last_token: /tokenize disagrees with the model's tokenizer (one id short).
# detokenize_drops_last_char: /detokenize loses the last character of what it decodes.
FAULTS = ("tokenize_drops_last_token", "detokenize_drops_last_char")


def deepseek_tokenizer_path() -> Path:
    spec = importlib.util.find_spec("litellm")
    assert spec is not None and spec.origin is not None, "litellm is not installed"
    return (
        Path(spec.origin).parent / "litellm_core_utils" / "tokenizers" / "deepseek_tokenizer.json"
    )


def load_tokenizer() -> Tokenizer:
    return Tokenizer.from_file(str(deepseek_tokenizer_path()))


def scripted_logprob(position: int, token_id: int) -> float:
    """The FAKE model's log-probability of `token_id` at prompt position `position` (>= 1)."""
    return -0.05 - ((token_id * 31 + position * 17) % 200) / 50.0


class BpeModel:
    """The tokenizer side of the fake: ids, texts and vLLM-style token strings."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        bos = tokenizer.token_to_id(BOS)
        assert bos is not None
        self.bos_id = bos

    def encode(self, text: str, add_special_tokens: bool) -> list[int]:
        # DeepSeek's tokenizer config adds BOS; the bare tokenizer.json does not.
        ids = list(self.tokenizer.encode(text, add_special_tokens=False).ids)
        return [self.bos_id, *ids] if add_special_tokens else ids

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=False))

    def piece(self, token_id: int) -> str:
        """One token decoded alone, as vLLM's ``tokenizer.decode(token_id)``."""
        return self.decode([token_id])

    def incremental_pieces(self, ids: list[int]) -> list[str]:
        """Each token's text as vLLM's incremental detokenizer shows it in prompt logprobs.

        A token that ends inside a multi-byte character shows ""; the token that completes
        the character shows all of it.
        """
        pieces: list[str] = []
        start = 0
        done = ""
        for end in range(1, len(ids) + 1):
            text = self.decode(ids[start:end])
            if text.endswith("\ufffd"):
                pieces.append("")
                continue
            pieces.append(text[len(done) :])
            done = text
            if end - start > 8:
                start, done = end, ""
        return pieces


def render_chat(
    messages: list[dict[str, Any]], *, continue_final: bool, add_generation: bool
) -> str:
    """A DeepSeek-style chat template (the fake's own, used for chat routes)."""
    parts = [BOS]
    for index, message in enumerate(messages):
        role, content = message.get("role"), str(message.get("content") or "")
        last = index == len(messages) - 1
        if role == "user":
            parts.append(USER + content)
        elif role == "assistant":
            closed = not (last and continue_final)
            parts.append(ASSISTANT + content + (EOS if closed else ""))
        else:
            parts.append(content)
    if add_generation and not continue_final:
        parts.append(ASSISTANT)
    return "".join(parts)


class FakeVllmBpe(ThreadedServer):
    """Serves from its own thread and event loop (tests/support/threaded_server.py)."""

    thread_name = "fake-vllm-bpe"

    def __init__(self) -> None:
        super().__init__()
        self.model = BpeModel(load_tokenizer())
        self.fault: str | None = None
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def calls(self, path: str) -> list[dict[str, Any]]:
        return [body for p, body in self.requests if p == path]

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/tokenize", self._tokenize)
        app.router.add_post("/detokenize", self._detokenize)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/chat/completions", self._chat)
        return app

    async def _body(self, request: web.Request) -> dict[str, Any]:
        body: dict[str, Any] = await request.json()
        self.requests.append((request.path, body))
        return body

    async def _models(self, request: web.Request) -> web.Response:
        card = {
            "id": MODEL,
            "object": "model",
            "created": int(time.time()),
            "owned_by": "vllm",
            "root": MODEL,
            "parent": None,
            "max_model_len": MAX_MODEL_LEN,
        }
        return web.json_response({"object": "list", "data": [card]})

    async def _tokenize(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if "messages" in body:
            text = render_chat(
                body["messages"],
                continue_final=bool(body.get("continue_final_message", False)),
                add_generation=bool(body.get("add_generation_prompt", True)),
            )
            ids = self.model.encode(text, bool(body.get("add_special_tokens", False)))
        else:
            ids = self.model.encode(body["prompt"], bool(body.get("add_special_tokens", True)))
        if self.fault == "tokenize_drops_last_token":
            ids = ids[:-1]
        answer = {"count": len(ids), "max_model_len": MAX_MODEL_LEN, "tokens": ids}
        answer["token_strs"] = None
        return web.json_response(answer)

    async def _detokenize(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        text = self.model.decode([int(t) for t in body["tokens"]])
        if self.fault == "detokenize_drops_last_char":
            text = text[:-1]
        return web.json_response({"prompt": text})

    async def _completions(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        prompts = self._prompts(body.get("prompt"))
        if prompts is None:
            return _bad_request("prompt must be text, token ids, or a list of either")
        if any(len(ids) > MAX_MODEL_LEN for ids in prompts):
            return _bad_request(f"This model's maximum context length is {MAX_MODEL_LEN} tokens")
        choices, generated = [], 0
        for index, ids in enumerate(prompts):
            choice, count = self._completion_choice(ids, body, index)
            choices.append(choice)
            generated += count
        usage = _usage(sum(len(ids) for ids in prompts), generated)
        return web.json_response(_envelope("text_completion", choices, usage))

    def _prompts(self, prompt: Any) -> list[list[int]] | None:
        """vLLM's prompt forms: a text, token ids, or a list of texts or of token-id lists."""
        if isinstance(prompt, str):
            return [self.model.encode(prompt, True)]
        if not isinstance(prompt, list) or not prompt:
            return None
        if all(isinstance(t, int) for t in prompt):
            return [list(prompt)]
        if all(isinstance(p, list) and all(isinstance(t, int) for t in p) for p in prompt):
            return [list(p) for p in prompt]
        if all(isinstance(p, str) for p in prompt):
            return [self.model.encode(p, True) for p in prompt]
        return None

    def _completion_choice(
        self, ids: list[int], body: dict[str, Any], index: int
    ) -> tuple[dict[str, Any], int]:
        max_tokens = int(body.get("max_tokens", 16))
        generated = self._generate(ids, body, max_tokens)
        as_ids = bool(body.get("return_tokens_as_token_ids"))
        choice: dict[str, Any] = {
            "index": index,
            "text": self.model.decode(generated),
            "logprobs": None,
            "finish_reason": "length",
            "stop_reason": None,
            "token_ids": None,
            "prompt_logprobs": None,
            "prompt_token_ids": None,
            "routed_experts": None,
        }
        if body.get("logprobs") is not None:
            shown = [*ids, *generated] if body.get("echo") else generated
            first = 0 if body.get("echo") else len(ids)
            asked = [int(t) for t in body.get("logprob_token_ids") or []]
            choice["logprobs"] = self._logprobs(shown, first, as_ids, asked)
        if body.get("echo"):
            choice["text"] = self.model.decode(ids) + choice["text"]
        if body.get("prompt_logprobs") is not None or body.get("echo"):
            choice["prompt_logprobs"] = self._prompt_logprobs(ids)  # echo turns it on in vLLM
        return choice, len(generated)

    def _generate(self, ids: list[int], body: dict[str, Any], max_tokens: int) -> list[int]:
        """The forced token where ``allowed_token_ids`` names one; else a fixed text."""
        allowed = body.get("allowed_token_ids")
        if allowed:
            best = max(allowed, key=lambda t: scripted_logprob(len(ids), int(t)))
            return [int(best)][:max_tokens]
        return self.model.encode(PROPOSAL, False)[:max_tokens]

    def _logprobs(
        self, ids: list[int], first: int, as_ids: bool, asked: list[int]
    ) -> dict[str, Any]:
        """vLLM's `CompletionLogProbs` for tokens `ids` that start at prompt position `first`.

        Each token's ``top_logprobs`` holds the token, then every id in `asked`
        (``logprob_token_ids``), each read at that position.
        """
        tokens: list[str] = []
        values: list[float | None] = []
        top: list[dict[str, float] | None] = []
        offsets: list[int] = []
        for index, token_id in enumerate(ids):
            position = first + index
            token = f"token_id:{token_id}" if as_ids else self.model.piece(token_id)
            offsets.append(offsets[-1] + len(tokens[-1]) if tokens else 0)
            tokens.append(token)
            value = scripted_logprob(position, token_id) if position > 0 else None
            values.append(value)
            if value is None:
                top.append(None)
                continue
            shown = {token: value}
            for other in asked:
                name = f"token_id:{other}" if as_ids else self.model.piece(other)
                shown.setdefault(name, scripted_logprob(position, other))
            top.append(shown)
        return {
            "text_offset": offsets,
            "token_logprobs": values,
            "tokens": tokens,
            "top_logprobs": top,
        }

    def _prompt_logprobs(self, ids: list[int]) -> list[dict[str, dict[str, Any]] | None]:
        pieces = self.model.incremental_pieces(ids)
        entries: list[dict[str, dict[str, Any]] | None] = [None]
        for position in range(1, len(ids)):
            token_id = ids[position]
            info = {"logprob": scripted_logprob(position, token_id), "rank": 1}
            entries.append({str(token_id): {**info, "decoded_token": pieces[position]}})
        return entries

    async def _chat(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        text = render_chat(
            body["messages"],
            continue_final=bool(body.get("continue_final_message", False)),
            add_generation=bool(body.get("add_generation_prompt", True)),
        )
        ids = self.model.encode(text, bool(body.get("add_special_tokens", False)))
        generated = self.model.encode(PROPOSAL, False)[: int(body.get("max_tokens", 16))]
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": self.model.decode(generated)},
            "logprobs": None,
            "finish_reason": "length",
            "stop_reason": None,
        }
        data = _envelope("chat.completion", [choice], _usage(len(ids), len(generated)))
        if body.get("prompt_logprobs") is not None:
            data["prompt_logprobs"] = self._prompt_logprobs(ids)
        return web.json_response(data)


def _envelope(kind: str, choices: list[dict[str, Any]], usage: dict[str, int]) -> dict[str, Any]:
    return {
        "id": f"cmpl-fake-{time.perf_counter_ns()}",
        "object": kind,
        "created": int(time.time()),
        "model": MODEL,
        "choices": choices,
        "service_tier": None,
        "system_fingerprint": "vllm-0.32.0-fake",
        "usage": usage,
        "kv_transfer_params": None,
        "ec_transfer_params": None,
        "metrics": None,
    }


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "total_tokens": prompt + completion,
        "completion_tokens": completion,
        "prompt_tokens_details": None,
        "completion_tokens_details": None,
    }


def _bad_request(message: str) -> web.Response:
    error = {"message": message, "type": "BadRequestError", "param": None, "code": 400}
    return web.json_response({"error": error}, status=400)
