"""The garbage collector as a long-running cord-proxy process runs it (`serve`, `distill`).

What start-up made (modules, config, the app) lives as long as the process: frozen, it is
out of every full collection's way. Young objects are collected after `YOUNG_THRESHOLD` net
allocations instead of Python's 700: nearly all of a decode's objects are freed by reference
counting long before that. In the fan-out bench's 16 decodes the collector ran 538 times at
700 (0.26 s of 2.74 s of CPU) and 5 times at 10,000 (0.04 s); bench/README.md.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000


def settle_start_up() -> None:
    """End a process's start-up: free its garbage, freeze the rest, raise the young threshold."""
    gc.collect()  # start-up's garbage goes first: frozen, it would never be freed
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
