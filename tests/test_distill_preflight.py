"""`distill --url` checks the proxy first: a proxy that wants a key it did not get, or got
wrong, is named as such, with the variable distill reads the key from."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from cord_proxy.api.app import create_app
from cord_proxy.cli import build_parser
from cord_proxy.config import parse_config
from cord_proxy.distill.arguments import settings_of
from cord_proxy.distill.command import engine_of
from cord_proxy.distill.engines import ProxyEngine
from cord_proxy.distill.errors import DistillError
from cord_proxy.distill.preflight import check_proxy
from cord_proxy.runtime import Runtime
from tests.support.fakes import ScriptedFakeTeacher

KEY = "preflight-key-123"
KEY_ENV = "DISTILL_TEST_KEY"


@pytest.fixture
async def proxy(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TestServer]:
    monkeypatch.setenv("PREFLIGHT_SERVER_KEY", KEY)
    config = parse_config(
        {
            "server": {"api_keys": ["env:PREFLIGHT_SERVER_KEY"]},
            "teachers": [{"name": "t", "base_url": "http://127.0.0.1:9/v1", "model": "t"}],
            "ensembles": [{"name": "e", "teachers": ["t"]}],
        }
    )
    server = TestServer(create_app(Runtime(config, {"t": ScriptedFakeTeacher("t")})))
    await server.start_server()
    yield server
    await server.close()


@pytest.mark.parametrize(("key", "problem"), [(None, "is not set"), ("wrong", "is wrong")])
async def test_a_missing_or_wrong_key_names_the_variable(
    proxy: TestServer, key: str | None, problem: str
) -> None:
    base_url = str(proxy.make_url("/v1"))
    with pytest.raises(DistillError) as refused:
        await check_proxy(base_url, None, key, KEY_ENV)
    message = str(refused.value)
    assert f"${KEY_ENV} {problem}" in message and f"set {KEY_ENV}" in message
    assert "unreachable" not in message and "cord-proxy serve" not in message


async def test_the_right_key_passes(proxy: TestServer) -> None:
    assert await check_proxy(str(proxy.make_url("/v1")), None, KEY, KEY_ENV) == "e"


def distill_args(*extra: str) -> argparse.Namespace:
    return build_parser().parse_args(
        ["distill", "--input", "p.jsonl", "--output", "t.jsonl", *extra]
    )


def test_distill_reads_the_one_documented_key_variable() -> None:
    """CORD_API_KEY: the variable the clients in clients/ read, and the README names."""
    assert distill_args().api_key_env == "CORD_API_KEY"


async def test_distill_url_sends_the_key_from_cord_api_key(
    proxy: TestServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for other in ("CORD_PROXY_API_KEY", "CORD_PROXY_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setenv("CORD_API_KEY", KEY)
    args = distill_args("--url", str(proxy.make_url("/v1")))
    engine = await engine_of(args, settings_of(args))
    assert isinstance(engine, ProxyEngine) and engine.model == "e"
    assert engine.client.headers["Authorization"] == f"Bearer {KEY}"
    await engine.client.aclose()


async def test_without_cord_api_key_the_refusal_names_it(
    proxy: TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CORD_API_KEY", raising=False)
    monkeypatch.setenv("CORD_PROXY_API_KEY", KEY)  # the old name is read no more
    args = distill_args("--url", str(proxy.make_url("/v1")))
    with pytest.raises(DistillError, match=r"\$CORD_API_KEY is not set"):
        await engine_of(args, settings_of(args))
