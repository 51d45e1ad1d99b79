"""/metrics counts and times a request on every route, by the route's pattern: every path
that no route matches is one label, so a client cannot grow the series."""

from __future__ import annotations

import re

from aiohttp.test_utils import TestClient, TestServer

from cord_proxy.api.app import create_app
from cord_proxy.config import parse_config
from cord_proxy.runtime import Runtime
from tests.support.fakes import ScriptedFakeTeacher

PATHS = ("/health", "/v1/models", "/v1/files/file-abc", "/v1/files/file-xyz", "/nope", "/x/y")


def _server() -> TestServer:
    config = parse_config(
        {
            "server": {"metrics_public": True},
            "teachers": [{"name": "t", "base_url": "http://127.0.0.1:9/v1", "model": "t"}],
            "ensembles": [{"name": "e", "teachers": ["t"]}],
        }
    )
    return TestServer(create_app(Runtime(config, {"t": ScriptedFakeTeacher("t")})))


def _series(text: str, name: str) -> dict[str, float]:
    """`name`'s values by route label."""
    pattern = rf'^{name}\{{route="([^"]*)"[^}}]*\}} (\S+)$'
    return {route: float(value) for route, value in re.findall(pattern, text, re.M)}


async def test_every_route_is_counted_and_timed_by_its_pattern() -> None:
    async with TestClient(_server()) as client:
        for path in PATHS:
            await client.get(path)
        text = await (await client.get("/metrics")).text()
    expected = {"/health": 1, "/v1/models": 1, "/v1/files/{file_id}": 2, "(unmatched)": 2}
    requests: dict[str, float] = {}
    for line in re.findall(
        r'^cord_requests_total\{route="([^"]*)",status="\d+"\} (\S+)$', text, re.M
    ):
        requests[line[0]] = requests.get(line[0], 0) + float(line[1])
    assert requests == expected
    assert _series(text, "cord_request_duration_seconds_count") == expected
    infinite = _series(text, "cord_request_duration_seconds_bucket")  # the last bucket, +Inf
    assert infinite == expected
    assert "/v1/files/file-abc" not in text and "/nope" not in text
