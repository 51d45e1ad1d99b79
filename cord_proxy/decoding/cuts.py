"""The calls of one round that were cancelled: by the round deadline, or the client leaving."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from cord_proxy.decoding.failures import FailureLog


class Cuts:
    def __init__(self) -> None:
        self._calls: list[tuple[str, str]] = []

    @contextlib.contextmanager
    def watch(self, teacher: str, role: str) -> Iterator[None]:
        """Notes the call if it is cancelled."""
        try:
            yield
        except asyncio.CancelledError:
            self._calls.append((teacher, role))
            raise

    def record(self, log: FailureLog, step: int, deadline: float) -> list[str]:
        """Record the calls the round deadline cancelled; the teachers they belonged to."""
        cut = list(dict.fromkeys(self._calls))
        self._calls.clear()
        for teacher, role in cut:
            log.cut(step, teacher, role, deadline)
        return sorted({teacher for teacher, _ in cut})
