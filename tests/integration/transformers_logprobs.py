"""Independent span log-probabilities, computed with transformers (run by the teacher venv).

Reads JSON from stdin: ``{"model_dir": DIR, "dtype": "float32", "threads": 1, "items":
[{"text": T, "target_start": C}, ...]}``. For each item it tokenizes `text` with the BOS (as vLLM's
``/v1/completions`` does), runs one forward pass, and takes the log-probabilities of the
tokens that overlap the characters ``text[target_start:]`` (by ``offset_mapping``).
Prints JSON: ``{"items": [{"tokens", "ids", "logprobs", "count", "mean", "span_text",
"span_start", "prompt_tokens"}, ...]}``, where `span_text` is the text the span's tokens cover and
`span_start` the character where the first span token starts.

An item ``{"text": T, "prefix_text": P}`` instead picks the span by token ids: the ids of `T`
that follow their longest common prefix with the ids of `P` (both with the BOS). Its answer
is ``{"token_ids", "logprobs", "count", "mean", "context_tokens", "prefix_tokens",
"prompt_tokens"}``.

This file is a helper for tests/integration/test_teacher_client.py, not a test module; it
imports nothing from cord_proxy, so that it runs in the teacher's own virtualenv.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def span_logprobs(model: Any, tokenizer: Any, text: str, target_start: int) -> dict[str, Any]:
    import torch  # type: ignore[import-not-found]  # the teacher venv only

    encoded = tokenizer(
        text, add_special_tokens=True, return_offsets_mapping=True, return_tensors="pt"
    )
    ids = encoded["input_ids"]
    offsets = [tuple(pair) for pair in encoded["offset_mapping"][0].tolist()]
    token_ids = ids[0].tolist()
    first = next(i for i, (start, end) in enumerate(offsets) if i > 0 and end > target_start)
    # Position i - 1 predicts token i: keep only the logits from position first - 1 on.
    keep = len(token_ids) - first + 1
    with torch.no_grad():
        logits = model(input_ids=ids, logits_to_keep=keep).logits[0].float()
    logsoftmax = torch.log_softmax(logits, dim=-1)
    logprobs = [float(logsoftmax[j, token_ids[first + j]]) for j in range(keep - 1)]
    # Byte-fallback pieces of one character share its offsets; like vLLM's incremental
    # detokenizer, show "" for each piece and the character on the last one.
    tokens = [
        text[start:end] if i + 1 == len(offsets) or offsets[i + 1] != (start, end) else ""
        for i, (start, end) in enumerate(offsets)
    ][first:]
    span_start = offsets[first][0]
    return {
        "tokens": tokens,
        "ids": token_ids[first:],
        "logprobs": logprobs,
        "count": len(logprobs),
        "mean": sum(logprobs) / len(logprobs),
        "span_text": text[span_start:],
        "span_start": span_start,
        "prompt_tokens": len(token_ids),
    }


def id_span_logprobs(model: Any, tokenizer: Any, text: str, prefix_text: str) -> dict[str, Any]:
    import torch

    token_ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    before = tokenizer(prefix_text, add_special_tokens=True)["input_ids"]
    first = 0
    while first < min(len(before), len(token_ids)) and before[first] == token_ids[first]:
        first += 1
    keep = len(token_ids) - first + 1
    with torch.no_grad():
        ids = torch.tensor([token_ids])
        logits = model(input_ids=ids, logits_to_keep=keep).logits[0].float()
    logsoftmax = torch.log_softmax(logits, dim=-1)
    logprobs = [float(logsoftmax[j, token_ids[first + j]]) for j in range(keep - 1)]
    return {
        "token_ids": token_ids[first:],
        "logprobs": logprobs,
        "count": len(logprobs),
        "mean": sum(logprobs) / len(logprobs),
        "context_tokens": first,
        "prefix_tokens": len(before),
        "prompt_tokens": len(token_ids),
    }


def answer(model: Any, tokenizer: Any, item: dict[str, Any]) -> dict[str, Any]:
    if "prefix_text" in item:
        return id_span_logprobs(model, tokenizer, item["text"], item["prefix_text"])
    return span_logprobs(model, tokenizer, item["text"], int(item["target_start"]))


def main() -> None:
    import torch
    from transformers import (  # type: ignore[import-not-found]
        AutoModelForCausalLM,
        AutoTokenizer,
    )

    request = json.load(sys.stdin)
    # One thread: on a busy 2-core machine, OpenMP threads spin and run 10x slower.
    torch.set_num_threads(int(request.get("threads", 1)))
    dtype = getattr(torch, request.get("dtype", "float32"))
    tokenizer = AutoTokenizer.from_pretrained(request["model_dir"])
    model = AutoModelForCausalLM.from_pretrained(request["model_dir"], dtype=dtype)
    model.eval()
    items = [answer(model, tokenizer, item) for item in request["items"]]
    json.dump({"items": items}, sys.stdout)


if __name__ == "__main__":
    main()
