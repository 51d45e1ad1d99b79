"""One API-key check (cord_proxy/auth.py) behind the OpenAI routes, the Files and Batches
routes and the page's APIs: the same header rules and the same 401 error object on each,
and a file belongs to the key that sent it whatever the case of the scheme."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer

from cord_proxy.api.app import create_app
from cord_proxy.config import parse_config
from cord_proxy.runtime import Runtime
from tests.support.fakes import ScriptedFakeTeacher

KEY_A, KEY_B = "sk-auth-alice-123", "sk-auth-bob-456"
GUARDED = ("/v1/models", "/v1/files", "/v1/batches", "/ui/api/info", "/ui/api/traces")
REFUSED = {
    "error": {
        "message": "Incorrect or missing API key: send 'Authorization: Bearer <key>'",
        "type": "authentication_error",
        "param": None,
        "code": "invalid_api_key",
    }
}


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_TEST_KEY_A", KEY_A)
    monkeypatch.setenv("AUTH_TEST_KEY_B", KEY_B)


def _server(data_dir: Path) -> TestServer:
    config = parse_config(
        {
            "server": {"api_keys": ["env:AUTH_TEST_KEY_A", "env:AUTH_TEST_KEY_B"]},
            "teachers": [{"name": "t", "base_url": "http://127.0.0.1:9/v1", "model": "t"}],
            "ensembles": [{"name": "e", "teachers": ["t"]}],
            "dataset": {"path": str(data_dir / "traces.jsonl")},
            "batches": {
                "data_dir": str(data_dir),
                "owners": {"env:AUTH_TEST_KEY_A": "alice", "env:AUTH_TEST_KEY_B": "bob"},
            },
        }
    )
    (data_dir / "traces.jsonl").write_text("")
    return TestServer(create_app(Runtime(config, {"t": ScriptedFakeTeacher("t")})))


async def test_every_guarded_route_refuses_a_bad_key_with_the_same_401(tmp_path: Path) -> None:
    bad = [None, "Bearer wrong", f"Basic {KEY_A}", "Bearer", "Bearer ", f"Bearer {KEY_A} extra"]
    async with TestClient(_server(tmp_path)) as client:
        for path in GUARDED:
            for header in bad:
                headers = {"Authorization": header} if header is not None else {}
                response = await client.get(path, headers=headers)
                assert (path, header, response.status) == (path, header, 401)
                assert await response.json() == REFUSED
        auth = await client.get("/ui/api/auth", headers={"Authorization": "Bearer wrong"})
        assert auth.status == 200
        assert await auth.json() == {"auth_required": True, "authorized": False}


async def test_every_guarded_route_takes_the_scheme_in_any_case(tmp_path: Path) -> None:
    async with TestClient(_server(tmp_path)) as client:
        for header in (f"Bearer {KEY_A}", f"bearer {KEY_B}", f"BEARER  {KEY_A} "):
            for path in GUARDED:
                response = await client.get(path, headers={"Authorization": header})
                assert (path, header, response.status) == (path, header, 200)
            auth = await client.get("/ui/api/auth", headers={"Authorization": header})
            assert await auth.json() == {"auth_required": True, "authorized": True}


async def test_a_file_belongs_to_the_key_that_sent_it(tmp_path: Path) -> None:
    form = FormData()
    form.add_field("purpose", "batch")
    form.add_field("file", b'{"custom_id": "a"}\n', filename="in.jsonl")
    async with TestClient(_server(tmp_path)) as client:
        sent = await client.post(
            "/v1/files", data=form, headers={"Authorization": f"bearer {KEY_A}"}
        )
        assert sent.status == 200
        file_id = (await sent.json())["id"]

        async def listed(key: str) -> list[str]:
            response = await client.get("/v1/files", headers={"Authorization": f"Bearer {key}"})
            return [f["id"] for f in (await response.json())["data"]]

        assert await listed(KEY_A) == [file_id]
        assert await listed(KEY_B) == []
        other = await client.get(
            f"/v1/files/{file_id}", headers={"Authorization": f"Bearer {KEY_B}"}
        )
        assert other.status == 404
