"""Pick out exactly the tokens of a target span that ends a scored prompt."""

from __future__ import annotations

from collections.abc import Sequence

from cord_proxy.teachers.base import SpanScore


def span_from_offsets(
    tokens: Sequence[str],
    logprobs: Sequence[float | None],
    offsets: Sequence[int],
    target_chars: int,
) -> SpanScore:
    """The tokens overlapping the last `target_chars` characters of the prompt.

    Offsets may be shifted by a leading ``<bos>`` string; only differences matter. A token
    that straddles the boundary carries target characters, so it belongs to the span.
    """
    if not tokens:
        return SpanScore(tokens=(), logprobs=())
    prompt_end = offsets[-1] + len(tokens[-1])
    span_start = prompt_end - target_chars
    first = len(tokens)
    while first > 0 and offsets[first - 1] + len(tokens[first - 1]) > span_start:
        first -= 1
    # Byte-fallback pieces of a character decode to "" and sit where it starts: the empty
    # tokens at the boundary are the target's first character (token 0 never is).
    while first > 1 and not tokens[first - 1] and offsets[first - 1] >= span_start:
        first -= 1
    return _span(tokens, logprobs, first)


def span_from_lengths(
    tokens: Sequence[str], logprobs: Sequence[float | None], target_chars: int
) -> SpanScore:
    """As `span_from_offsets`, with offsets rebuilt from the decoded token lengths."""
    offsets: list[int] = []
    position = 0
    for token in tokens:
        offsets.append(position)
        position += len(token)
    return span_from_offsets(tokens, logprobs, offsets, target_chars)


def _span(tokens: Sequence[str], logprobs: Sequence[float | None], first: int) -> SpanScore:
    picked = [lp for lp in logprobs[first:]]
    if any(lp is None for lp in picked):
        raise ValueError("the span reaches the first prompt token, which has no log-probability")
    return SpanScore(
        tokens=tuple(tokens[first:]),
        logprobs=tuple(float(lp) for lp in picked if lp is not None),
        context_tokens=first,
    )
