"""FAKE vLLM scoring routes over a character-level tokenizer, for fake teacher servers.

Each character is one token, its code point; ``<bos>`` is token 2. The routes answer what
vLLM 0.32 answers: ``/tokenize`` (a text prompt or chat messages), ``/detokenize``,
cord-proxy's spans route (``/cord/spans``, where a fake serves it), and
token-id ``/v1/completions`` with ``prompt_logprobs``, ``echo``, one-token completions
on a list of prompts asking for given tokens' values (``logprob_token_ids``), or forced
completions on a list of prompts, as a server with cord-proxy's logits processor writes
them (``vllm_xargs``; cord_proxy/local/vllm_plugin).
Log-probabilities come from a scripted function of the token and its position.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cord_proxy.local.vllm_plugin.cord_forced_key import prompt_key, read_field
from cord_proxy.local.vllm_plugin.cord_spans_wire import pair_entry, pairs_of

BOS = 2
Logprob = Callable[[int, int], float]


def render_ids(body: dict[str, Any]) -> list[int]:
    if "messages" in body:
        text = "".join(f"<{m['role']}>{m['content']}" for m in body["messages"])
    else:
        text = body["prompt"]
    return [BOS, *(ord(c) for c in text)]


def tokenize(body: dict[str, Any], max_model_len: int = 2048) -> dict[str, Any]:
    ids = render_ids(body)
    strs = ["<bos>", *(chr(i) for i in ids[1:])]
    return {"tokens": ids, "count": len(ids), "max_model_len": max_model_len, "token_strs": strs}


def spans(body: dict[str, Any], max_model_len: int = 2048) -> dict[str, Any]:
    """cord-proxy's spans route (cord_proxy/local/vllm_plugin/cord_spans_wire.py)."""
    entries = []
    for prefix, full in pairs_of(body):
        answer = tokenize(full, max_model_len)
        full_side = (answer["tokens"], answer["token_strs"], max_model_len)
        entries.append(pair_entry((render_ids(prefix), None, max_model_len), full_side))
    return {"spans": entries}


def detokenize(body: dict[str, Any]) -> dict[str, Any]:
    return {"prompt": "".join(chr(i) for i in body["tokens"] if i != BOS)}


def is_scoring(body: dict[str, Any]) -> bool:
    """A token-id completion the scoring methods send (proposals send text)."""
    return isinstance(body.get("prompt"), list)


def asked_values(body: dict[str, Any], logprob: Logprob, forced_zero: bool = False) -> Any:
    """A list of token-id prompts, each answered with the values of ``logprob_token_ids``.

    `forced_zero` reads every asked value as 0.0, as a server in ``processed_logprobs``
    mode does for a forced token.
    """
    prompts = body["prompt"] if isinstance(body["prompt"][0], list) else [body["prompt"]]
    choices = []
    for index, prompt in enumerate(prompts):
        asked = {
            f"token_id:{t}": 0.0 if forced_zero else logprob(t, len(prompt))
            for t in body["logprob_token_ids"]
        }
        logprobs = {"tokens": ["token_id:0"], "token_logprobs": [-1.0], "top_logprobs": [asked]}
        choices.append({"index": index, "text": "?", "logprobs": logprobs})
    return {"choices": choices}


def forced_values(
    body: dict[str, Any], logprob: Logprob, forced_zero: bool = False, forces: bool = True
) -> Any:
    """Each prompt continued by the tokens ``vllm_xargs`` names for it, with their values;
    without `forces` (a server without the logits processor), by tokens of its own."""
    table = read_field(body["vllm_xargs"]) or {}
    choices = []
    for index, prompt in enumerate(body["prompt"]):
        written = table.get(prompt_key(prompt)) if forces else None
        tokens = (written or [])[: body["max_tokens"]]
        tokens += [ord("?")] * (body["max_tokens"] - len(tokens))
        values = [0.0 if forced_zero else logprob(t, len(prompt) + i) for i, t in enumerate(tokens)]
        logprobs = {"tokens": [f"token_id:{t}" for t in tokens], "token_logprobs": values}
        choices.append({"index": index, "text": "?", "logprobs": logprobs})
    return {"choices": choices}


def score_completion(
    body: dict[str, Any], logprob: Logprob, forced_zero: bool = False, forces: bool = True
) -> Any:
    if body.get("vllm_xargs"):
        return forced_values(body, logprob, forced_zero, forces)
    if body.get("logprob_token_ids"):
        return asked_values(body, logprob, forced_zero)
    prompt: list[int] = body["prompt"]
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
