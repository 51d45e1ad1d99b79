"""Error bodies name the client's field and say what is wrong in the API's terms: no Python
class or type names, no quoted request bytes (found from outside, through the real proxy)."""

from __future__ import annotations

import httpx
import pytest

from cord_proxy.redact import excerpt, without_echoed_bytes
from tests.api.conftest import API_KEY
from tests.api.rawhttp import exchange
from tests.support.proxy_process import ProxyProcess

HEADERS = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
USER = '{"role": "user", "content": "x"}'
PYTHON_WORDS = ("bytearray", "b'", "recursion", "sys.", "CordOptions", "None'", ".str")


def error_of(proxy: ProxyProcess, body: str) -> dict[str, object]:
    response = httpx.post(
        f"{proxy.base_url}/chat/completions", content=body, headers=HEADERS, timeout=60
    )
    assert response.status_code == 400, response.text
    error: dict[str, object] = response.json()["error"]
    assert not any(word in str(error) for word in PYTHON_WORDS), error
    return error


@pytest.mark.parametrize(
    ("body", "param", "said"),
    [
        (
            '{"model": "fast", "messages": [{"role": "user", "content": 5}]}',
            "messages.0.content",
            "string",
        ),
        (f'{{"model": "fast", "messages": [{USER}], "stop": [1, 2]}}', "stop", "string"),
        (f'{{"model": "fast", "messages": [{USER}], "cord": null}}', "cord", "an object"),
        (f'{{"model": "fast", "messages": [{USER}], "top_logprobs": 5}}', None, "logprobs"),
        ('{"model": "fast", "messages": ' + "[" * 20_000, None, "nests too deeply"),
        (f'{{"model": "fast", "messages": [{USER}], "max_tokens": {"9" * 5000}}}', None, "digits"),
    ],
    ids=["union-content", "union-stop", "object", "across-fields", "deep", "long-number"],
)
def test_a_bad_body_is_named_in_the_api_s_terms(
    fake_proxy: ProxyProcess, body: str, param: str | None, said: str
) -> None:
    error = error_of(fake_proxy, body)
    assert error["param"] == param
    assert said in str(error["message"])


def test_a_malformed_request_line_is_not_quoted_back(fake_proxy: ProxyProcess) -> None:
    response = exchange(fake_proxy.port, b"GARBAGE / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.status == 400
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "malformed_http")
    assert error["message"].startswith("malformed HTTP request")
    assert "GARBAGE" not in error["message"]


def test_a_long_target_is_not_quoted_back(fake_proxy: ProxyProcess) -> None:
    target = "/v1/responses/" + "a" * 10_000
    response = exchange(fake_proxy.port, f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert response.status == 400
    assert "aaaa" not in response.json()["error"]["message"]


def test_echoed_bytes_are_cut_from_a_parser_s_message() -> None:
    quoted = "Got more than 8190 bytes when reading: bytearray(b'/v1/x')."
    assert without_echoed_bytes(quoted) == "Got more than 8190 bytes when reading"
    assert without_echoed_bytes("Invalid method encountered:\n\n  b'X'\n    ^") == (
        "Invalid method encountered"
    )
    assert without_echoed_bytes("a verb's meaning") == "a verb's meaning"


def test_the_proxy_s_own_ids_are_not_taken_for_keys() -> None:
    for own in ("resp_e8b4bb3a5f43456a9eec36fb5e62724a", "req_0123456789abcdef0123456789abcdef"):
        assert excerpt(f"Response with id '{own}' not found.") == (
            f"Response with id '{own}' not found."
        )
