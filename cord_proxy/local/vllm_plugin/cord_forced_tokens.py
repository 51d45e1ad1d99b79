"""A vLLM logits processor: each request row writes the tokens its request names for it.

Runs inside vLLM (``--logits-processors cord_forced_tokens:ForcedTokens``, with this folder
on ``PYTHONPATH``), never in the proxy. vLLM computes the log-probabilities it reports
(``logprobs_mode = raw_logprobs``, the default) before any logits processor, so a forced
token's reported value is the model's own. A row whose request names no tokens for its
prompt is left alone.
"""

from __future__ import annotations

from typing import Any

import torch  # type: ignore[import-not-found, unused-ignore]
from cord_forced_key import prompt_key, read_field  # type: ignore[import-not-found, unused-ignore]
from vllm.v1.sample.logits_processor import (  # type: ignore[import-not-found, unused-ignore]
    BatchUpdate,
    LogitsProcessor,
    MoveDirectionality,
)

Row = tuple[list[int], list[int]]  # the tokens to write, and the row's output so far


class ForcedTokens(LogitsProcessor):  # type: ignore[misc, unused-ignore]
    def __init__(self, vllm_config: Any, device: Any, is_pin_memory: bool) -> None:
        self._rows: dict[int, Row] = {}

    @classmethod
    def validate_params(cls, sampling_params: Any) -> None:
        read_field(sampling_params.extra_args)

    def is_argmax_invariant(self) -> bool:
        return False

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if batch_update is None:
            return
        for index in batch_update.removed:
            self._rows.pop(index, None)
        for index, params, prompt, output in batch_update.added:
            forced = _forced(params, prompt)
            if forced:
                self._rows[index] = (forced, output)
            else:
                self._rows.pop(index, None)
        for source, destination, direction in batch_update.moved:
            moving = self._rows.pop(source, None)
            replaced = self._rows.pop(destination, None)
            if moving is not None:
                self._rows[destination] = moving
            if replaced is not None and direction == MoveDirectionality.SWAP:
                self._rows[source] = replaced

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        vocabulary = logits.shape[-1]
        for index, (forced, output) in self._rows.items():
            step = len(output)
            if step < len(forced) and forced[step] < vocabulary:  # else the row writes freely
                logits[index].fill_(float("-inf"))
                logits[index, forced[step]] = 0.0
        return logits


def _forced(params: Any, prompt: list[int] | None) -> list[int] | None:
    """The row's tokens to write; none for a field `validate_params` would refuse (it runs
    first, but an exception here would stop the engine)."""
    try:
        table = read_field(params.extra_args)
    except ValueError:
        return None
    if not table or prompt is None:
        return None
    forced: list[int] | None = table.get(prompt_key(prompt))
    return forced
