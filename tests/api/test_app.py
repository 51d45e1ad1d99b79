"""The aiohttp app in-process: the catch-all handler is counted, `metrics_public` opens
/metrics, and teacher failures in a 200 are cleaned."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from aiohttp.test_utils import TestClient, TestServer

from cord_proxy.api.app import create_app
from cord_proxy.api.state import RUNTIME
from cord_proxy.config import parse_config
from cord_proxy.errors import TeacherHTTPError, TeacherUnreachableError
from cord_proxy.runtime import Runtime
from cord_proxy.teachers.base import Teacher
from tests.support.fakes import ScriptedFakeTeacher

BODY = {"model": "e", "messages": [{"role": "user", "content": "2+3?"}]}
KEY = "app-test-key-123"


def _app(teachers: Mapping[str, Teacher], *, metrics_public: bool = False) -> TestServer:
    config = parse_config(
        {
            "server": {"api_keys": ["env:APP_TEST_KEY"], "metrics_public": metrics_public},
            "teachers": [
                {"name": n, "base_url": "http://127.0.0.1:9/v1", "model": n} for n in teachers
            ],
            "ensembles": [
                {
                    "name": "e",
                    "teachers": list(teachers),
                    "defaults": {"beam_width": 1, "max_steps": 1},
                }
            ],
        }
    )
    return TestServer(create_app(Runtime(config, teachers)))


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_TEST_KEY", KEY)


async def test_an_error_only_the_catch_all_handles_is_a_500_object_and_is_counted() -> None:
    crashing = ScriptedFakeTeacher("t", proposals=[RuntimeError("bug at http://10.9.8.7:1/x")])
    headers = {"Authorization": f"Bearer {KEY}"}
    async with TestClient(_app({"t": crashing})) as client:
        response = await client.post("/v1/chat/completions", json=BODY, headers=headers)
        body = await response.json()
        metrics = await (await client.get("/metrics", headers=headers)).text()
    assert response.status == 500
    assert body["error"]["type"] == "server_error" and "10.9.8.7" not in str(body)
    assert "cord_unhandled_errors_total 1" in metrics
    assert 'status="500"' in metrics


async def test_metrics_public_opens_metrics_only() -> None:
    async with TestClient(_app({"t": ScriptedFakeTeacher("t")}, metrics_public=True)) as client:
        assert (await client.get("/metrics")).status == 200
        assert (await client.get("/v1/models")).status == 401
    async with TestClient(_app({"t": ScriptedFakeTeacher("t")})) as client:
        assert (await client.get("/metrics")).status == 401


async def test_an_open_breaker_shows_in_ready_and_metrics() -> None:
    server = _app({"t": ScriptedFakeTeacher("t")}, metrics_public=True)
    runtime = server.app[RUNTIME]
    breaker = runtime.breakers.get("http://127.0.0.1:9/v1|t", 5, 30.0)
    breaker.adopt_first_cooldown(30.0)  # open for the whole test, however slow the machine

    async def refused() -> None:
        raise TeacherUnreachableError("t", "connection refused")

    for _ in range(5):  # one after another: five failures, five events
        with pytest.raises(TeacherUnreachableError):
            await breaker.call("t", refused)
    async with TestClient(server) as client:
        ready = await client.get("/health/ready")
        readiness = await ready.json()
        metrics = await (await client.get("/metrics")).text()
    assert ready.status == 503
    assert readiness["breakers"] == {"t": "open"}
    assert 'cord_teacher_breaker_state{teacher="t",state="open"} 1' in metrics
    assert 'cord_teacher_breaker_state{teacher="t",state="closed"} 0' in metrics


@pytest.mark.parametrize(("status", "expected"), [(400, 400), (422, 400), (500, 502)])
async def test_a_request_every_teacher_refuses_is_the_client_s_400(
    status: int, expected: int
) -> None:
    """A teacher's 400 or 422 to step 1 (a logit_bias id past its vocabulary) is the request's
    fault: a 400 the SDKs do not retry, with the teacher's reason; its 500 stays a 502."""
    refusal = TeacherHTTPError(
        "t", f"HTTP {status}: token_id 262144 is out of vocabulary", http_status=status
    )
    headers = {"Authorization": f"Bearer {KEY}"}
    async with TestClient(_app({"t": ScriptedFakeTeacher("t", proposals=[refusal])})) as client:
        response = await client.post("/v1/chat/completions", json=BODY, headers=headers)
        error = (await response.json())["error"]
    assert response.status == expected
    assert "out of vocabulary" in error["message"]
    if expected == 400:
        assert (error["type"], error["code"]) == (
            "invalid_request_error",
            "teacher_refused_request",
        )
