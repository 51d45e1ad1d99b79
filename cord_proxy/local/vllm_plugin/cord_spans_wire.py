"""What the proxy and a server's spans route agree on: ``POST /cord/spans``.

A request names the teacher's model and a list of (prefix, full) pairs, each side a
``/tokenize`` body without its ``model`` (chat ``messages`` with their template fields, or a
``prompt``). The server tokenizes both sides as ``/tokenize`` would, and answers, per pair in
order, either the full prompt's ids with ``start``, the length of their longest common prefix
with the prefix's ids, and the pieces of the ids from there on; or the error ``/tokenize``
would have given. A round's spans then cost one request, not two a candidate, and the answer
carries no piece the proxy does not read. Standard library only: the proxy imports this file,
and the teacher's vLLM and the benchmark's simulator serve it.

Request: ``{"model": str, "pairs": [{"prefix": {...}, "full": {...}}, ...]}``.
Answer: ``{"spans": [{"tokens": [int], "start": int, "token_strs": [str], "max_model_len":
int} | {"error": {"message": str, "code": int}}, ...]}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

ROUTE = "/cord/spans"
MAX_PAIRS = 256  # a request naming more is refused (413); the proxy sends at most 64
_TAIL = 32  # token ids that common_prefix_length compares one by one


def common_prefix_length(first: Sequence[int], second: Sequence[int]) -> int:
    """How many leading items the two sequences share: where a span's target starts.

    Slices are compared in C: the whole, then all but a short tail (a prefix and its
    continuation usually part at the prefix's last tokens), then halves of what is left.
    """
    first, second = tuple(first), tuple(second)
    shorter = min(len(first), len(second))
    if first[:shorter] == second[:shorter]:
        return shorter
    # first[:low] == second[:low], and they differ before `high`
    low, high = 0, shorter
    tail = max(0, shorter - _TAIL)
    if first[:tail] == second[:tail]:
        low = tail
    else:
        high = tail
    while high - low > _TAIL:
        middle = (low + high) // 2
        if first[low:middle] == second[low:middle]:
            low = middle
        else:
            high = middle
    while low < high and first[low] == second[low]:
        low += 1
    return low


def span_entry(
    prefix_ids: Sequence[int],
    full_ids: Sequence[int],
    full_pieces: Sequence[str] | None,
    max_model_len: int,
) -> dict[str, Any]:
    """A pair's answer: the full ids, where they leave the prefix's, the pieces from there."""
    start = common_prefix_length(prefix_ids, full_ids)
    pieces = list(full_pieces[start:]) if full_pieces is not None else None
    return {
        "tokens": list(full_ids),
        "start": start,
        "token_strs": pieces,
        "max_model_len": max_model_len,
    }


def error_entry(message: str, code: int) -> dict[str, Any]:
    return {"error": {"message": message, "code": code}}


# One side of a pair as its server tokenized it: ids, pieces and max_model_len; or the error
# entry `/tokenize` would have answered for it.
Side = tuple[Sequence[int], Sequence[str] | None, int] | dict[str, Any]


def pair_entry(prefix: Side, full: Side) -> dict[str, Any]:
    """A pair's answer from its two sides: the first side's error, else its span."""
    if isinstance(prefix, dict):
        return prefix
    if isinstance(full, dict):
        return full
    return span_entry(prefix[0], *full)


def pairs_of(body: Any) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The request's pairs; ValueError naming what is wrong with it, OverflowError where it
    names more than `MAX_PAIRS`."""
    pairs = body.get("pairs") if isinstance(body, dict) else None
    if not isinstance(pairs, list) or not pairs:
        raise ValueError("'pairs' must be a non-empty list of {prefix, full} objects")
    if len(pairs) > MAX_PAIRS:
        raise OverflowError(f"at most {MAX_PAIRS} pairs a request, not {len(pairs)}")
    found = []
    for pair in pairs:
        prefix = pair.get("prefix") if isinstance(pair, dict) else None
        full = pair.get("full") if isinstance(pair, dict) else None
        if not isinstance(prefix, dict) or not isinstance(full, dict):
            raise ValueError("each pair must be an object with 'prefix' and 'full' objects")
        found.append((prefix, full))
    return found
