"""FAKE vLLM scoring routes over a character-level tokenizer, for fake teacher servers.

Each character is one token, its code point; ``<bos>`` is token 2. The routes answer what
vLLM 0.32 answers: ``/tokenize`` (a text prompt or chat messages), ``/detokenize``, and
token-id ``/v1/completions`` with ``prompt_logprobs``, ``echo`` or a forced one-token
completion (``allowed_token_ids``). Log-probabilities come from a scripted function of the
token and its position.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

BOS = 2
Logprob = Callable[[int, int], float]


def render_ids(body: dict[str, Any]) -> list[int]:
    if "messages" in body:
        text = "".join(f"<{m['role']}>{m['content']}" for m in body["messages"])
    else:
        text = body["prompt"]
    return [BOS, *(ord(c) for c in text)]


def tokenize(body: dict[str, Any]) -> dict[str, Any]:
    ids = render_ids(body)
    strs = ["<bos>", *(chr(i) for i in ids[1:])]
    return {"tokens": ids, "count": len(ids), "max_model_len": 2048, "token_strs": strs}


def detokenize(body: dict[str, Any]) -> dict[str, Any]:
    return {"prompt": "".join(chr(i) for i in body["tokens"] if i != BOS)}


def is_scoring(body: dict[str, Any]) -> bool:
    """A token-id completion the scoring methods send (proposals send text)."""
    return isinstance(body.get("prompt"), list)


def score_completion(body: dict[str, Any], logprob: Logprob, forced_zero: bool = False) -> Any:
    prompt: list[int] = body["prompt"]
    if body.get("allowed_token_ids"):
        (token,) = body["allowed_token_ids"]
        value = 0.0 if forced_zero else logprob(token, len(prompt))
        logprobs = {"tokens": [f"token_id:{token}"], "token_logprobs": [value]}
        return {"choices": [{"index": 0, "text": chr(token), "logprobs": logprobs}]}
    values = [None] + [logprob(t, p) for p, t in enumerate(prompt) if p > 0]
    if body.get("echo"):
        tokens = [f"token_id:{t}" for t in prompt]
        logprobs = {"tokens": tokens, "token_logprobs": values}
        return {"choices": [{"index": 0, "text": "", "logprobs": logprobs}]}
    entries = [None] + [
        {str(t): {"logprob": values[p], "rank": 1, "decoded_token": chr(t)}}
        for p, t in enumerate(prompt)
        if p > 0
    ]
    return {"choices": [{"index": 0, "text": "x", "prompt_logprobs": entries}]}
