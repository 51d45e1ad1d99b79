"""A SQLite database (WAL) reached through one thread: the base of the proxy's stores.

All access goes through that thread, so the event loop never blocks on the database and no
two statements race. The database is opened on first use, its schema made if missing.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class SqliteStore:
    """The database at `path` with `schema` (SQL run on open; ``CREATE ... IF NOT EXISTS``)."""

    def __init__(self, path: Path, schema: str, thread_name: str):
        self.path = path
        self._schema = schema
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=thread_name)
        self._db: sqlite3.Connection | None = None

    def exists(self) -> bool:
        return self.path.exists()

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, lambda: work(self._connect())
        )

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=10000")
            db.executescript(self._schema)
            self._migrate(db)
            self._db = db
        return self._db

    def _migrate(self, db: sqlite3.Connection) -> None:
        """Bring an older database's tables up to the schema (nothing by default)."""

    async def close(self) -> None:
        def shut(_: sqlite3.Connection) -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        if self._db is not None:
            await self._run(shut)
        self._executor.shutdown(wait=True)
