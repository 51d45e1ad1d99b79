"""Where two token-id sequences part: a span's target starts where the rendered prefix's ids
and the rendered prefix-with-target's ids stop agreeing."""

from __future__ import annotations

from collections.abc import Sequence

_TAIL = 32  # token ids that common_prefix_length compares one by one


def common_prefix_length(first: Sequence[int], second: Sequence[int]) -> int:
    """How many leading items the two sequences share.

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
