"""The `[batches]` config, input checks and the store's line bookkeeping, without a server."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

import pytest

from cord_proxy.batches.routes import data_dir
from cord_proxy.batches.store import SCHEMA, Store
from cord_proxy.batches.validate import check_input
from cord_proxy.config import BatchesConfig, load_config, parse_config
from cord_proxy.errors import ConfigError
from tests.batches.conftest import jsonl, request_line

ROOT = Path(__file__).resolve().parents[2]
BASE = {
    "teachers": [{"name": "t", "base_url": "http://127.0.0.1:1/v1", "model": "m"}],
    "ensembles": [{"name": "cord", "teachers": ["t"]}],
}
BATCH = {
    "id": "batch_1",
    "owner": "",
    "input_file_id": "file-x",
    "endpoint": "/v1/chat/completions",
    "completion_window": "24h",
    "status": "validating",
    "created_at": 1,
}


def test_the_readme_batches_example_loads(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Batches API", 1)[1]
    example = section.split("```toml\n", 1)[1].split("\n```", 1)[0]
    path = tmp_path / "batches.toml"
    teachers = '[[teachers]]\nname = "t"\nbase_url = "http://127.0.0.1:1/v1"\nmodel = "m"\n'
    path.write_text(f'{example}\n{teachers}[[ensembles]]\nname = "cord"\nteachers = ["t"]\n')
    config = load_config(path).batches
    assert config.concurrency == 4 and config.owners["env:TEAM_A_KEY"] == "team-a"


def test_owner_keys_must_be_secret_references() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({**BASE, "batches": {"owners": {"sk-inline": "alice"}}})
    assert "batches.owners" in str(caught.value) and "env:NAME" in str(caught.value)


def test_the_data_dir_defaults_to_the_users_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", "/srv/data")
    assert data_dir(BatchesConfig()) == Path("/srv/data/cord-proxy")
    monkeypatch.delenv("XDG_DATA_HOME")
    assert data_dir(BatchesConfig()) == Path.home() / ".local" / "share" / "cord-proxy"
    assert data_dir(BatchesConfig(data_dir="/x/y")) == Path("/x/y")


def test_check_input_keeps_good_lines_and_names_bad_ones(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(jsonl([request_line(1), request_line(2)]) + b"\n" + jsonl([request_line(1)]))
    check = check_input(path, "/v1/chat/completions", 4096)
    assert [c for c, _ in check.lines] == ["q-1", "q-2"]
    assert [(e["code"], e["line"]) for e in check.errors] == [("duplicate_custom_id", 4)]
    assert json.loads(check.lines[0][1])["cord"]["reference_answer"] == "36"


async def test_a_line_is_finished_once_and_counted(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    try:
        await store.add_batch(dict(BATCH))
        await store.add_lines("batch_1", [("a", "{}"), ("b", "{}"), ("c", "{}")])
        assert await store.move("batch_1", "in_progress", ["validating"])
        assert not await store.move("batch_1", "in_progress", ["validating"])
        await store.finish_line("batch_1", 0, "done", "first", 1)
        await store.finish_line("batch_1", 0, "failed", "second", 2)
        await store.finish_line("batch_1", 2, "failed", "oops", 3)
        assert await store.counts("batch_1") == {"done": 1, "failed": 1, "pending": 1}
        assert [r["custom_id"] for r in await store.pending_lines("batch_1")] == ["b"]
        assert await store.outputs("batch_1", "done") == ["first"]
        row = await store.get_batch("batch_1")
        assert row is not None and row["total"] == 3 and row["in_progress_at"]
        assert await store.get_batch("batch_1", owner="someone-else") is None
    finally:
        await store.close()


@pytest.mark.parametrize("bad", [0, -5, "1h", 1.5, True, 10**9])
def test_the_completion_window_must_be_a_positive_whole_number_of_seconds(bad: object) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({**BASE, "batches": {"completion_window_s": bad}})
    assert "batches.completion_window_s" in str(caught.value)


def test_the_completion_window_defaults_to_24_hours() -> None:
    assert BatchesConfig().completion_window_s == 24 * 3600
    config = parse_config({**BASE, "batches": {"completion_window_s": 5}})
    assert config.batches.completion_window_s == 5


async def test_a_database_from_before_expiry_gains_expired_at(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(SCHEMA.replace(", expired_at INTEGER", ""))
        assert "expired_at" not in {r[1] for r in db.execute("PRAGMA table_info(batches)")}
    store = Store(path)
    try:
        await store.add_batch({**BATCH, "status": "in_progress"})
        await store.add_lines("batch_1", [("a", "{}"), ("b", "{}")])
        await store.finish_line("batch_1", 0, "done", "first", 1)
        assert await store.finish_batch(
            "batch_1", "expired", "in_progress", [], [(0, "x"), (1, "late")]
        )
        row = await store.get_batch("batch_1")
        assert row is not None and row["status"] == "expired" and row["expired_at"]
        assert await store.outputs("batch_1", "failed") == ["late"]
        assert await store.counts("batch_1") == {"done": 1, "failed": 1}
    finally:
        await store.close()
