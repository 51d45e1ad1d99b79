"""The redactor, the logging filter, the dataset's failures and the config's base_url check."""

from __future__ import annotations

import io
import json
import logging
import random
import string

import pytest

from cord_proxy.config import parse_config
from cord_proxy.errors import ConfigError
from cord_proxy.logs import JsonFormatter, RedactFilter
from cord_proxy.redact import clean, excerpt, remember_endpoint
from cord_proxy.secret_refs import resolve_secret


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("cannot reach http://user:sk-abcdef123456@gpu-box:8000/v1: refused", "sk-abcdef123456"),
        ("cannot reach http://user:sk-abcdef123456@gpu-box:8000/v1: refused", "gpu-box"),
        ("Cannot connect to host 10.1.2.3:8401 ssl:default", "10.1.2.3"),
        ("Cannot connect to host inference.internal:8000", "inference.internal"),
        ('{"auth": "Bearer abcdefgh12345"}', "abcdefgh12345"),
        ("invalid key sk-proj-AbC123dEf456", "AbC123dEf456"),
        ("api_key=hunter22hunter", "hunter22hunter"),
        ('"password": "correct-horse"', "correct-horse"),
        ("token 0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef"),
        ("key AIzaSyD3xAmPle0123456789abcdefGHIJ here", "AIzaSyD3xAmPle0123456789abcdefGHIJ"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA"),
        ("at [fe80::1ff:fe23:4567:890a]:8000", "fe80::1ff"),
        ("apikeysk-ant-api03-AbCdEf0123456789xyz", "AbCdEf0123456789"),
        ("tokensk-12345678abcdefgh", "12345678abcdefgh"),
    ],
)
def test_excerpt_removes_endpoints_and_keys(text: str, leak: str) -> None:
    assert leak not in excerpt(text)


def test_excerpt_keeps_what_is_not_secret_and_is_short() -> None:
    text = "teacher 'qwq': HTTP 400: model DeepSeek-R1-Distill-Qwen-32B has max_model_len 2048"
    assert excerpt(text) == text
    assert excerpt("Incorrect API key: send 'Authorization: Bearer <key>'").endswith("<key>'")
    assert excerpt("chatcmpl-0123456789abcdef0123456789abcdef").startswith("chatcmpl-0123")
    assert len(excerpt("x" * 5000)) == 300
    assert excerpt("a\x00b\n\n  c") == "a b c"


def test_a_glued_prefix_needs_a_long_mixed_tail_to_be_a_key() -> None:
    for text in ("task-queue-worker-12 failed", "disk-benchmark failed", "risk-averse-v2"):
        assert excerpt(text) == text


@pytest.mark.parametrize("limit", [None, 8, 12, 20, 300])
def test_an_excerpt_of_an_excerpt_is_the_excerpt(limit: int | None) -> None:
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + " :/@.-_=<>[]\"'"
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(4, 60)))
        once = excerpt(text, limit)
        assert excerpt(once, limit) == once, text
        assert limit is None or len(once) <= limit


def test_resolved_secrets_and_configured_hosts_are_removed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDACT_TEST_SECRET", "plain words are secret")
    assert resolve_secret("env:REDACT_TEST_SECRET") == "plain words are secret"
    remember_endpoint("http://my-gpu-node:9000/v1")
    text = "they said plain words are secret from my-gpu-node"
    assert excerpt(text) == "they said <redacted> from <host>"
    assert clean({"a": [text, 3]}) == {"a": ["they said <redacted> from <host>", 3]}


def test_the_logging_filter_cleans_messages_fields_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactFilter())
    logger = logging.getLogger("cord_proxy.test_redact")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        raise RuntimeError("failed at http://admin:pw@db:5432/x with Bearer abcdefgh12345")
    except RuntimeError:
        logger.exception(
            "call to %s failed", "http://10.0.0.9:8000/v1", extra={"errors": ["sk-live-123456789"]}
        )
    finally:
        logger.removeHandler(handler)
    line = stream.getvalue()
    entry = json.loads(line)
    for leak in ("10.0.0.9", "sk-live-123456789", "admin:pw", "abcdefgh12345"):
        assert leak not in line
    assert entry["event"] == "call to <url> failed"
    assert "RuntimeError" in entry["exception"]


def _config(base_url: str) -> dict[str, object]:
    return {
        "teachers": [{"name": "t", "base_url": base_url, "model": "m"}],
        "ensembles": [{"name": "e", "teachers": ["t"]}],
    }


@pytest.mark.parametrize(
    "url",
    ["http://user:sk-secret@host:8000/v1", "https://sk-secret@host/v1", "http://:pw@host/v1"],
)
def test_credentials_in_a_base_url_are_refused_at_load(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_config(url))
    message = str(caught.value)
    assert 'api_key = "env:' in message
    assert "sk-secret" not in message and "pw@" not in message
    parse_config(_config("http://host:8000/v1"))
