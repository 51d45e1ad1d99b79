"""Stored responses: SQLite (WAL) in the batches' data directory (``responses.sqlite``).

A row holds a response's request, the conversation it decoded (so that a later
``previous_response_id`` goes on from it), its input items, the Response object as it stands
and, once it is final, the events of its stream. Each row has the owner of the key that made
it (``[batches] owners``), as files and batches do.

Retention is bounded: a final response is deleted `MAX_AGE_S` seconds (30 days, as OpenAI
keeps them) after it was created, and beyond `MAX_STORED` responses the oldest final ones go
first. All access goes through one thread, so the event loop never blocks on the database.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from cord_proxy.sqlite_store import SqliteStore

Row = dict[str, Any]

MAX_AGE_S = 30 * 86_400
MAX_STORED = 10_000
ACTIVE = ("queued", "in_progress")
SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, status TEXT NOT NULL,
    background INTEGER NOT NULL, created_at INTEGER NOT NULL, body TEXT NOT NULL,
    turns TEXT NOT NULL, input_items TEXT NOT NULL, response TEXT NOT NULL, events TEXT,
    runner_pid INTEGER);
CREATE INDEX IF NOT EXISTS responses_created ON responses (created_at);
"""


class ResponseStore(SqliteStore):
    """The stored responses' database at `path`, opened on first use."""

    def __init__(self, path: Path, max_age_s: int = MAX_AGE_S, max_stored: int = MAX_STORED):
        self.max_age_s = max_age_s
        self.max_stored = max_stored
        super().__init__(path, SCHEMA, "cord-responses-db")

    async def add(self, row: Row) -> None:
        """A new response; the retention bounds are applied first."""
        await self._run(lambda db: _add(db, row, self.max_age_s, self.max_stored))

    async def get(self, response_id: str, owner: str | None) -> Row | None:
        def one(db: sqlite3.Connection) -> Row | None:
            query, args = "SELECT * FROM responses WHERE id = ?", [response_id]
            if owner is not None:
                query, args = query + " AND owner = ?", [response_id, owner]
            found = db.execute(query, args).fetchone()
            return dict(found) if found is not None else None

        return await self._run(one)

    async def update(
        self, response_id: str, status: str, response: str, events: str | None = None
    ) -> bool:
        """Set a response that is not final yet; False when it was final (or gone) already."""
        marks = ",".join("?" * len(ACTIVE))
        query = (
            "UPDATE responses SET status = ?, response = ?, events = COALESCE(?, events) "
            f"WHERE id = ? AND status IN ({marks})"
        )
        args = (status, response, events, response_id, *ACTIVE)
        return await self._run(lambda db: db.execute(query, args).rowcount == 1)

    async def delete(self, response_id: str) -> None:
        await self._run(lambda db: db.execute("DELETE FROM responses WHERE id = ?", (response_id,)))

    async def active(self) -> list[Row]:
        marks = ",".join("?" * len(ACTIVE))
        query = f"SELECT * FROM responses WHERE status IN ({marks}) ORDER BY rowid"
        return await self._run(lambda db: [dict(r) for r in db.execute(query, ACTIVE)])

    async def claim(self, response_id: str, pid: int) -> None:
        """This process runs the response now."""
        query = "UPDATE responses SET runner_pid = ? WHERE id = ?"
        await self._run(lambda db: db.execute(query, (pid, response_id)))


def _add(db: sqlite3.Connection, row: Row, max_age_s: int, max_stored: int) -> None:
    marks = ",".join("?" * len(ACTIVE))
    db.execute(
        f"DELETE FROM responses WHERE created_at < ? AND status NOT IN ({marks})",
        (int(time.time()) - max_age_s, *ACTIVE),
    )
    db.execute(
        f"DELETE FROM responses WHERE status NOT IN ({marks}) AND id IN ("
        f"SELECT id FROM responses WHERE status NOT IN ({marks}) "
        "ORDER BY created_at DESC, rowid DESC LIMIT -1 OFFSET ?)",
        (*ACTIVE, *ACTIVE, max(max_stored - 1, 0)),
    )
    names = ", ".join(row)
    db.execute(
        f"INSERT INTO responses ({names}) VALUES ({', '.join('?' * len(row))})", tuple(row.values())
    )
