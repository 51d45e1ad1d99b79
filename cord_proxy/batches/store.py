"""SQLite (WAL) metadata of files, batches and each batch line's progress.

All access goes through one thread, so the event loop never blocks on the database and no
two statements race. A line's result and its status are written in one transaction: a line
marked done is never decoded again, whatever kills the process afterwards.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cord_proxy.sqlite_store import SqliteStore

Row = dict[str, Any]

ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")
SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, filename TEXT NOT NULL, purpose TEXT NOT NULL,
    bytes INTEGER NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, input_file_id TEXT NOT NULL,
    endpoint TEXT NOT NULL, completion_window TEXT NOT NULL, metadata TEXT,
    status TEXT NOT NULL, errors TEXT, output_file_id TEXT, error_file_id TEXT,
    total INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL, in_progress_at INTEGER,
    expires_at INTEGER, finalizing_at INTEGER, completed_at INTEGER, failed_at INTEGER,
    cancelling_at INTEGER, cancelled_at INTEGER, expired_at INTEGER);
CREATE TABLE IF NOT EXISTS lines (
    batch_id TEXT NOT NULL, idx INTEGER NOT NULL, custom_id TEXT NOT NULL, body TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending', output TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (batch_id, idx));
"""
STAMPED = (
    "in_progress",
    "finalizing",
    "completed",
    "failed",
    "cancelling",
    "cancelled",
    "expired",
)
BATCH_FIELDS = ("errors", "output_file_id", "error_file_id", "total")


class Store(SqliteStore):
    """The metadata database at `path`, opened on first use."""

    def __init__(self, path: Path):
        super().__init__(path, SCHEMA, "cord-batches-db")

    def _migrate(self, db: sqlite3.Connection) -> None:
        _add_missing_columns(db)

    # --- files -------------------------------------------------------------------------------

    async def add_file(self, row: Row) -> None:
        await self._run(lambda db: _insert(db, "files", row))

    async def get_file(self, file_id: str, owner: str | None) -> Row | None:
        return await self._run(lambda db: _one(db, "files", file_id, owner))

    async def list_files(
        self, owner: str | None, purpose: str | None, after: str | None, limit: int, order: str
    ) -> list[Row]:
        where = {"purpose": purpose} if purpose else {}
        return await self._run(lambda db: _page(db, "files", owner, where, after, limit, order))

    async def delete_file(self, file_id: str) -> None:
        await self._run(lambda db: db.execute("DELETE FROM files WHERE id = ?", (file_id,)))

    # --- batches -----------------------------------------------------------------------------

    async def add_batch(self, row: Row) -> None:
        await self._run(lambda db: _insert(db, "batches", row))

    async def get_batch(self, batch_id: str, owner: str | None = None) -> Row | None:
        return await self._run(lambda db: _one(db, "batches", batch_id, owner))

    async def list_batches(self, owner: str | None, after: str | None, limit: int) -> list[Row]:
        return await self._run(lambda db: _page(db, "batches", owner, {}, after, limit, "desc"))

    async def active_batches(self) -> list[Row]:
        marks = ",".join("?" * len(ACTIVE))
        query = f"SELECT * FROM batches WHERE status IN ({marks}) ORDER BY rowid"
        return await self._run(lambda db: [dict(r) for r in db.execute(query, ACTIVE)])

    async def move(self, batch_id: str, to: str, since: Iterable[str], **fields: Any) -> bool:
        """Set the status (and its ``<status>_at``) if the batch is in one of `since`."""
        sources = tuple(since)
        return await self._run(lambda db: _move(db, batch_id, to, sources, fields))

    # --- lines -------------------------------------------------------------------------------

    async def add_lines(self, batch_id: str, lines: Sequence[tuple[str, str]]) -> None:
        """The validated lines ``(custom_id, body)``, and the batch's total, at once."""
        await self._run(lambda db: _add_lines(db, batch_id, lines))

    async def pending_lines(self, batch_id: str) -> list[Row]:
        query = "SELECT idx, custom_id, body FROM lines WHERE batch_id = ? AND status = 'pending'"
        return await self._run(
            lambda db: [dict(r) for r in db.execute(query + " ORDER BY idx", (batch_id,))]
        )

    async def finish_line(
        self, batch_id: str, idx: int, status: str, output: str, attempts: int
    ) -> None:
        query = (
            "UPDATE lines SET status = ?, output = ?, attempts = ? "
            "WHERE batch_id = ? AND idx = ? AND status = 'pending'"
        )
        await self._run(lambda db: db.execute(query, (status, output, attempts, batch_id, idx)))

    async def counts(self, batch_id: str) -> dict[str, int]:
        query = "SELECT status, COUNT(*) FROM lines WHERE batch_id = ? GROUP BY status"
        return await self._run(lambda db: dict(db.execute(query, (batch_id,)).fetchall()))

    async def outputs(self, batch_id: str, status: str) -> list[str]:
        query = "SELECT output FROM lines WHERE batch_id = ? AND status = ? ORDER BY idx"
        return await self._run(
            lambda db: [r[0] for r in db.execute(query, (batch_id, status)).fetchall()]
        )

    async def finish_batch(
        self,
        batch_id: str,
        to: str,
        since: str,
        files: Sequence[Row],
        expired: Sequence[tuple[int, str]] = (),
        **fields: Any,
    ) -> bool:
        """Register the output files and close the batch in one transaction; the `expired`
        lines ``(idx, output)`` still pending become failed with that output in it too."""
        return await self._run(lambda db: _finish(db, batch_id, to, since, files, expired, fields))


def _insert(db: sqlite3.Connection, table: str, row: Row) -> None:
    names = ", ".join(row)
    marks = ", ".join("?" * len(row))
    db.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", tuple(row.values()))


def _one(db: sqlite3.Connection, table: str, key: str, owner: str | None) -> Row | None:
    query, args = f"SELECT * FROM {table} WHERE id = ?", [key]
    if owner is not None:
        query, args = query + " AND owner = ?", [key, owner]
    found = db.execute(query, args).fetchone()
    return dict(found) if found is not None else None


def _page(
    db: sqlite3.Connection,
    table: str,
    owner: str | None,
    where: dict[str, Any],
    after: str | None,
    limit: int,
    order: str,
) -> list[Row]:
    """One page, newest first (or oldest first); `after` is the last id of the page before."""
    conditions, args = ["1 = 1"], []
    if owner is not None:
        conditions.append("owner = ?")
        args.append(owner)
    for name, value in where.items():
        conditions.append(f"{name} = ?")
        args.append(value)
    direction, compare = ("DESC", "<") if order == "desc" else ("ASC", ">")
    if after is not None:
        conditions.append(f"rowid {compare} COALESCE((SELECT rowid FROM {table} WHERE id = ?), 0)")
        args.append(after)
    query = f"SELECT * FROM {table} WHERE {' AND '.join(conditions)} ORDER BY rowid {direction}"
    return [dict(r) for r in db.execute(query + " LIMIT ?", [*args, limit])]


def _move(
    db: sqlite3.Connection, batch_id: str, to: str, since: tuple[str, ...], fields: dict[str, Any]
) -> bool:
    updates = {"status": to, **{k: v for k, v in fields.items() if k in BATCH_FIELDS}}
    if to in STAMPED:
        updates[f"{to}_at"] = int(time.time())
    assignments = ", ".join(f"{name} = ?" for name in updates)
    marks = ",".join("?" * len(since))
    cursor = db.execute(
        f"UPDATE batches SET {assignments} WHERE id = ? AND status IN ({marks})",
        (*updates.values(), batch_id, *since),
    )
    return cursor.rowcount == 1


def _add_lines(db: sqlite3.Connection, batch_id: str, lines: Sequence[tuple[str, str]]) -> None:
    db.execute("BEGIN")
    try:
        db.execute("DELETE FROM lines WHERE batch_id = ?", (batch_id,))
        db.executemany(
            "INSERT INTO lines (batch_id, idx, custom_id, body) VALUES (?, ?, ?, ?)",
            ((batch_id, idx, cid, body) for idx, (cid, body) in enumerate(lines)),
        )
        db.execute("UPDATE batches SET total = ? WHERE id = ?", (len(lines), batch_id))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Columns added since a database was made (``expired_at``)."""
    have = {r[1] for r in db.execute("PRAGMA table_info(batches)")}
    if "expired_at" not in have:
        try:
            db.execute("ALTER TABLE batches ADD COLUMN expired_at INTEGER")
        except sqlite3.OperationalError as error:  # another process sharing the directory
            if "duplicate column" not in str(error):
                raise


def _finish(
    db: sqlite3.Connection,
    batch_id: str,
    to: str,
    since: str,
    files: Sequence[Row],
    expired: Sequence[tuple[int, str]],
    fields: dict[str, Any],
) -> bool:
    db.execute("BEGIN")
    try:
        for row in files:
            _insert(db, "files", row)
        db.executemany(
            "UPDATE lines SET status = 'failed', output = ? "
            "WHERE batch_id = ? AND idx = ? AND status = 'pending'",
            ((output, batch_id, idx) for idx, output in expired),
        )
        moved = _move(db, batch_id, to, (since,), fields)
        db.execute("COMMIT" if moved else "ROLLBACK")
        return moved
    except BaseException:
        db.execute("ROLLBACK")
        raise
