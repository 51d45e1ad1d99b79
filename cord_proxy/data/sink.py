"""The dataset sink: one JSON line per finished decode, appended whole, never interleaved.

Appends from one process queue on an ``asyncio`` lock; appends from several processes on
the file's ``flock`` (``jsonl.append_line``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cord_proxy.config import DatasetConfig
from cord_proxy.data.jsonl import append_line, encode_line

TraceSink = Callable[[dict[str, Any]], Awaitable[None]]


class JsonlSink:
    """Appends one JSON line per trace with a single write; appends never interleave."""

    def __init__(self, path: str | Path, *, fsync: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self._lock = asyncio.Lock()

    async def __call__(self, record: dict[str, Any]) -> None:
        line = encode_line(record)
        async with self._lock:
            await asyncio.to_thread(append_line, self.path, line, fsync=self.fsync)


def sink_for(config: DatasetConfig) -> TraceSink | None:
    return JsonlSink(config.path) if config.path else None
