"""Every bad request gets an OpenAI error object with the right status, through the real proxy."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import openai
import pytest

from tests.api.conftest import API_KEY, whole_and_streamed
from tests.support.fake_teacher_http import CountingFakeTeacher
from tests.support.proxy_process import ProxyProcess

QUESTION = [{"role": "user", "content": "What is 2 + 3?"}]
HEADERS = {"Authorization": f"Bearer {API_KEY}"}


def sdk(proxy: ProxyProcess, key: str = API_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.base_url, api_key=key, max_retries=0, timeout=60)


def post(proxy: ProxyProcess, content: bytes | str, key: str = API_KEY) -> httpx.Response:
    return httpx.post(
        f"{proxy.base_url}/chat/completions",
        content=content,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        timeout=60,
    )


def assert_openai_error(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return dict(error)


def test_fake_ensemble_completes(fake_proxy: ProxyProcess) -> None:
    completion = sdk(fake_proxy).chat.completions.create(model="fast", messages=QUESTION)
    assert completion.choices[0].message.content
    assert completion.model_extra is not None
    assert completion.model_extra["cord"]["steps"]


def test_unknown_model_is_404(fake_proxy: ProxyProcess) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(fake_proxy).chat.completions.create(model="no-such-ensemble", messages=QUESTION)
    assert "no-such-ensemble" in str(caught.value)
    assert caught.value.code == "model_not_found"


def test_unsupported_field_is_400_naming_it(fake_proxy: ProxyProcess) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(fake_proxy).chat.completions.create(model="fast", messages=QUESTION, tools=tools)
    assert "tools" in str(caught.value)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(fake_proxy).chat.completions.create(
            model="fast", messages=QUESTION, modalities=["text", "audio"]
        )
    assert "modalities" in str(caught.value) and caught.value.code == "unsupported_parameter"


def test_bad_cord_option_is_400(fake_proxy: ProxyProcess) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(fake_proxy).chat.completions.create(
            model="fast", messages=QUESTION, extra_body={"cord": {"beam_width": 0}}
        )
    assert "cord.beam_width" in str(caught.value)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(fake_proxy).chat.completions.create(
            model="fast", messages=QUESTION, extra_body={"cord": {"no_such_option": 1}}
        )
    assert "no_such_option" in str(caught.value)


def test_n_over_beam_width_is_400(fake_proxy: ProxyProcess) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(fake_proxy).chat.completions.create(model="fast", messages=QUESTION, n=3)
    assert "beam_width" in str(caught.value)


def test_wrong_or_missing_key_is_401(fake_proxy: ProxyProcess) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        sdk(fake_proxy, key="sk-wrong").chat.completions.create(model="fast", messages=QUESTION)
    assert "API key" in str(caught.value)
    response = httpx.get(f"{fake_proxy.base_url}/models")
    assert_openai_error(response, 401)


def test_malformed_json_is_400(fake_proxy: ProxyProcess) -> None:
    error = assert_openai_error(post(fake_proxy, b'{"model": "fast", "messages": ['), 400)
    assert "JSON" in str(error["message"])


def test_body_over_limit_is_413(fake_proxy: ProxyProcess) -> None:
    huge = '{"model": "fast", "messages": [{"role": "user", "content": "' + "x" * 70000 + '"}]}'
    assert_openai_error(post(fake_proxy, huge), 413)


async def test_over_concurrency_limit_is_429(
    fake_proxy: ProxyProcess, fake_teacher: CountingFakeTeacher
) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        slow = asyncio.ensure_future(
            client.post(
                f"{fake_proxy.base_url}/chat/completions",
                json={"model": "slow", "messages": QUESTION},
                headers={"Authorization": f"Bearer {API_KEY}"},
            )
        )
        await _until(lambda: fake_teacher.in_flight > 0)
        with pytest.raises(openai.RateLimitError) as caught:
            await asyncio.to_thread(
                sdk(fake_proxy).chat.completions.create, model="fast", messages=QUESTION
            )
        assert "concurrent" in str(caught.value)
        slow.cancel()
        await asyncio.gather(slow, return_exceptions=True)
    await _until(lambda: fake_teacher.in_flight == 0)


async def test_disconnect_cancels_every_teacher_call(
    fake_proxy: ProxyProcess, fake_teacher: CountingFakeTeacher
) -> None:
    started_before = fake_teacher.started
    async with httpx.AsyncClient(timeout=60) as client:
        request = asyncio.ensure_future(
            client.post(
                f"{fake_proxy.base_url}/chat/completions",
                json={"model": "slow", "messages": QUESTION},
                headers={"Authorization": f"Bearer {API_KEY}"},
            )
        )
        await _until(lambda: fake_teacher.in_flight > 0)
        request.cancel()
        await asyncio.gather(request, return_exceptions=True)
    await asyncio.sleep(1.0)
    assert fake_teacher.started > started_before
    assert fake_teacher.in_flight == 0


def test_models_health_ready_metrics(fake_proxy: ProxyProcess) -> None:
    sdk(fake_proxy).chat.completions.create(model="fast", messages=QUESTION)  # counts calls
    headers = {"Authorization": f"Bearer {API_KEY}"}
    models = httpx.get(f"{fake_proxy.base_url}/models", headers=headers).json()
    assert {m["id"] for m in models["data"]} == {"fast", "slow", "broken"}
    root = fake_proxy.base_url.removesuffix("/v1")
    assert httpx.get(f"{root}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{root}/health/ready")
    assert ready.status_code == 200
    assert ready.json()["teachers"] == {"fast": True, "slow": True, "broken": True}
    text = httpx.get(f"{root}/metrics", headers=headers).text
    assert "cord_requests_total" in text and 'cord_teacher_calls_total{teacher="fast"}' in text


def test_the_sdk_lists_and_retrieves_the_ensembles(fake_proxy: ProxyProcess) -> None:
    client = sdk(fake_proxy)
    listed = {model.id for model in client.models.list()}
    retrieved = client.models.retrieve("fast")
    assert listed == {"fast", "slow", "broken"}
    assert (retrieved.id, retrieved.object, retrieved.owned_by) == ("fast", "model", "cord-proxy")
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-ensemble")
    assert caught.value.code == "model_not_found"
    assert "no-such-ensemble" in str(caught.value)


def test_unknown_route_is_openai_error(fake_proxy: ProxyProcess) -> None:
    response = httpx.get(fake_proxy.base_url.removesuffix("/v1") + "/nope")
    assert_openai_error(response, 404)


async def _until(condition: object, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def test_every_proposer_failing_is_a_502_error_object(fake_proxy: ProxyProcess) -> None:
    response = post(
        fake_proxy, '{"model": "broken", "messages": [{"role": "user", "content": "x"}]}'
    )
    error = assert_openai_error(response, 502)
    assert "broken" in str(error["message"]) and "HTTP 500" in str(error["message"])


def test_a_failure_mid_stream_is_an_error_event(fake_proxy: ProxyProcess) -> None:
    stream = sdk(fake_proxy).chat.completions.create(model="broken", messages=QUESTION, stream=True)
    with pytest.raises(openai.APIError) as caught:
        for _ in stream:
            pass
    assert "broken" in str(caught.value)


def test_a_failed_decode_logs_why_under_the_request_id(fake_proxy: ProxyProcess) -> None:
    """A decode that fails (the FAKE ``broken`` teacher) leaves a ``decode failed`` line with
    the status, code and reason the client got, whole or streamed."""
    body = {"model": "broken", "messages": [{"role": "user", "content": "x"}]}
    whole, stream = whole_and_streamed(fake_proxy, body, HEADERS)
    assert whole.status_code >= 500
    for request_id in (whole.headers["x-request-id"], stream.headers["x-request-id"]):
        lines = [json.loads(line) for line in fake_proxy.log().splitlines() if request_id in line]
        (failed,) = [line for line in lines if line["event"] == "decode failed"]
        assert failed["ensemble"] == "broken"
        assert (failed["status"], failed["code"]) == (
            whole.status_code,
            whole.json()["error"]["code"],
        )
        assert "broken" in failed["error"]


HALF_MALFORMED = """
[server]
host = "127.0.0.1"
port = PORT

[[teachers]]
name = "fast"
base_url = "FAKE_URL"
model = "fast"

[[teachers]]
name = "malformed"
base_url = "FAKE_URL"
model = "malformed"
max_retries = 0

[[ensembles]]
name = "half-malformed"
teachers = ["fast", "malformed"]
[ensembles.defaults]
beam_width = 1
max_steps = 2
"""


def test_a_teacher_answering_malformed_200s_degrades_the_answer(
    fake_teacher: CountingFakeTeacher, tmp_path: Path
) -> None:
    config = HALF_MALFORMED.replace("FAKE_URL", f"http://127.0.0.1:{fake_teacher.port}/v1")
    proxy = ProxyProcess(config, tmp_path).start()
    try:
        client = openai.OpenAI(base_url=proxy.base_url, api_key="none", max_retries=0)
        body = client.chat.completions.create(model="half-malformed", messages=QUESTION)
    finally:
        proxy.stop()
    cord = body.model_extra["cord"]  # type: ignore[index]
    assert body.choices[0].message.content
    assert {f["teacher"] for f in cord["failures"]} == {"malformed"}
    assert {f["code"] for f in cord["failures"]} == {"teacher_protocol_error"}
    assert "malformed answer" in cord["failures"][0]["error"]
