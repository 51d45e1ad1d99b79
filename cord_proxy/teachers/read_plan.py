"""Which target positions go in which ``cached`` read request.

A cached read sends one prompt per target position (the prompt up to that token) and asks
for the values of a set of token ids, which the server returns for every prompt. A round's
candidates go together: every first position in one request, then every other position in
one more; a request is split only where it would pass `MAX_PROMPTS_PER_READ` prompts or
`MAX_VALUES_PER_READ` values (prompts times asked ids).
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_PROMPTS_PER_READ = 512
MAX_VALUES_PER_READ = 65536

Position = tuple[int, int]
"""(index of the span among those read together, offset of the token in its target)."""


def first_positions(targets: Sequence[Sequence[int]]) -> list[Position]:
    return [(span, 0) for span in range(len(targets))]


def later_positions(targets: Sequence[Sequence[int]]) -> list[Position]:
    return [
        (span, offset) for span, target in enumerate(targets) for offset in range(1, len(target))
    ]


def read_chunks(
    targets: Sequence[Sequence[int]], positions: Sequence[Position]
) -> list[list[Position]]:
    """`positions` in order, split into requests within both bounds."""
    chunks: list[list[Position]] = []
    chunk: list[Position] = []
    asked: set[int] = set()
    for span, offset in positions:
        token = targets[span][offset]
        ids = len(asked) + (token not in asked)
        if chunk and (
            len(chunk) + 1 > MAX_PROMPTS_PER_READ or (len(chunk) + 1) * ids > MAX_VALUES_PER_READ
        ):
            chunks.append(chunk)
            chunk, asked = [], set()
        chunk.append((span, offset))
        asked.add(token)
    if chunk:
        chunks.append(chunk)
    return chunks
