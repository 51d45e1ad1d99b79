"""The scoring capability probe: does the prefix-cached method read the model's own values?

It scores one known span by ``cached`` and by ``prompt_logprobs``. On a vLLM server in its
default ``raw_logprobs`` mode they agree to bf16 noise (up to about 0.08 nats a token, from
a cached against a fresh prefill). A server started with ``--logprobs-mode
processed_logprobs`` reports values after temperature and the other processors, and a
server without ``logprob_token_ids`` refuses the request: either way the teacher falls back
to ``prompt_logprobs``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cord_proxy.teachers.span_scoring import ReadMethod

PROBE_QUESTION = "What is 6 times 7?"
PROBE_PREFIX = "6 times 7 is"
PROBE_TARGET = " 42, so the final answer is 42."
MAX_MEAN_DIFFERENCE = 0.25


@dataclass(frozen=True)
class ScoringProbe:
    """Which method a teacher scores with, and why."""

    method: ReadMethod
    mean_abs_diff: float | None
    reason: str

    def describe(self) -> str:
        return f"{self.method} ({self.reason})"


def judge(
    cached: Sequence[float], reference: Sequence[float], forced: bool | None = None
) -> ScoringProbe:
    """The method to use, given one span read both ways; `forced`: whether the cached read
    was forced (teachers/forced_read.py), named in the reason when known."""
    if len(cached) != len(reference) or not reference:
        return ScoringProbe("prompt_logprobs", None, "the two methods read different spans")
    difference = float(np.mean(np.abs(np.asarray(cached) - np.asarray(reference))))
    if difference > MAX_MEAN_DIFFERENCE:
        return ScoringProbe(
            "prompt_logprobs",
            difference,
            f"cached log-probabilities differ from prompt_logprobs by {difference:.3f} "
            f"nats/token (limit {MAX_MEAN_DIFFERENCE}); is the server in processed_logprobs mode?",
        )
    reads = {True: "; forced reads", False: "; one-token reads", None: ""}[forced]
    return ScoringProbe(
        "cached",
        difference,
        f"agrees with prompt_logprobs within {difference:.3f} nats/token{reads}",
    )


def refused(error: str) -> ScoringProbe:
    return ScoringProbe("prompt_logprobs", None, f"cached scoring failed: {error}")
