"""Forced reads: every span of a round read in one generation that writes its targets.

A vLLM server that loads cord-proxy's logits processor (cord_proxy/local/vllm_plugin, which
the local teacher does) writes, after each prompt of a request, exactly the tokens the
request names for that prompt, and reports each one's log-probability as the model's own
(vLLM computes its ``raw_logprobs`` before any logits processor). So a span costs its
prompt up to the target, whose uncached tail is read once, then one decode step per further
target token, with every span of the request side by side; no prompt is sent twice.

The processor finds a prompt's tokens by a hash of the prompt, so spans that share a prompt
(siblings scored by their own step) go in different requests. A server without the
processor writes what it likes: its tokens differ from the targets, `forced_values` says so,
and the reader goes back to one-token reads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from cord_proxy.concurrency import gather_or_cancel
from cord_proxy.local.vllm_plugin.cord_forced_key import FORCED_TOKENS, forced_field, prompt_key
from cord_proxy.teachers.read_answers import finite_logprob, indexed_choices
from cord_proxy.teachers.read_plan import MAX_PROMPTS_PER_READ

Forced = tuple[Sequence[int], Sequence[int]]
"""A span to read: its prompt up to the target, and the target's token ids."""

Post = Callable[[str, dict[str, Any], Callable[[dict[str, Any]], Any]], Awaitable[Any]]
_TOKEN_ID = "token_id:"


async def read_forced(
    post: Post, base_url: str, model: str, teacher: str, spans: Sequence[Forced]
) -> list[list[float]] | None:
    """Each span's values, in order, read in `forced_groups`' requests; None when the server
    did not write the targets."""
    keys = [prompt_key(prompt) for prompt, _ in spans]
    groups = forced_groups(keys)

    async def one(group: list[int]) -> list[list[float]] | None:
        chunk = [spans[k] for k in group]
        read: list[list[float]] | None = await post(
            base_url + "/completions",
            forced_body(model, chunk, [keys[k] for k in group]),
            lambda data: forced_values(data, chunk, teacher),
        )
        return read

    found = await gather_or_cancel(*(one(group) for group in groups))
    values: dict[int, list[float]] = {}
    for group, read in zip(groups, found, strict=True):
        if read is None:
            return None
        values.update(zip(group, read, strict=True))
    return [values[k] for k in range(len(spans))]


def forced_groups(keys: Sequence[str]) -> list[list[int]]:
    """The spans' indices, by request, given each span's prompt key: as few requests as keep
    each one's prompts distinct."""
    groups: list[list[int]] = []
    taken: list[set[str]] = []
    for index, key in enumerate(keys):
        place = next(
            (
                g
                for g, keys_in in enumerate(taken)
                if key not in keys_in and len(groups[g]) < MAX_PROMPTS_PER_READ
            ),
            None,
        )
        if place is None:
            groups.append([])
            taken.append(set())
            place = len(groups) - 1
        groups[place].append(index)
        taken[place].add(key)
    return groups


def forced_body(model: str, spans: Sequence[Forced], keys: Sequence[str]) -> dict[str, Any]:
    """One greedy ``/completions`` request that writes each span's target after its prompt
    (`keys`: the prompts' keys, in order)."""
    table = {key: target for key, (_, target) in zip(keys, spans, strict=True)}
    return {
        "model": model,
        "prompt": [list(prompt) for prompt, _ in spans],
        "max_tokens": max(len(target) for _, target in spans),
        "temperature": 0.0,
        "ignore_eos": True,
        "logprobs": 0,
        "return_tokens_as_token_ids": True,
        "vllm_xargs": {FORCED_TOKENS: forced_field(table)},
    }


def forced_values(
    data: dict[str, Any], spans: Sequence[Forced], teacher: str
) -> list[list[float]] | None:
    """Each span's values, in order; None when the server wrote other tokens than asked."""
    values: list[list[float]] = []
    for choice, (_, target) in zip(indexed_choices(data, len(spans), teacher), spans, strict=True):
        logprobs = choice.get("logprobs")
        tokens = logprobs.get("tokens") if isinstance(logprobs, dict) else None
        numbers = logprobs.get("token_logprobs") if isinstance(logprobs, dict) else None
        if not isinstance(tokens, list) or not isinstance(numbers, list):
            return None
        if len(numbers) < len(target) or tokens[: len(target)] != _token_strings(target):
            return None
        values.append([finite_logprob(v, teacher) for v in numbers[: len(target)]])
    return values


def _token_strings(target: Sequence[int]) -> list[str]:
    return [f"{_TOKEN_ID}{token}" for token in target]
