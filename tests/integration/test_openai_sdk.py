"""The official openai SDK against the real proxy and the real local vLLM teacher."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from openai.types.chat import ChatCompletion

from tests.support.proxy_process import ProxyProcess

ROOT = Path(__file__).resolve().parents[2]
QUESTION = [{"role": "user", "content": "What is 12 + 30?"}]
SMALL = {"max_steps": 2, "max_step_tokens": 24, "answer_budget": 16}

CONFIG = """
[server]
host = "127.0.0.1"
port = PORT

[[teachers]]
name = "t0.5"
base_url = "TEACHER"
model = "gemma3-270m"
temperature = 0.5
timeout = 300

[[teachers]]
name = "t0.7"
base_url = "TEACHER"
model = "gemma3-270m"
temperature = 0.7
timeout = 300

[[ensembles]]
name = "cord"
teachers = ["t0.5", "t0.7"]
[ensembles.defaults]
beam_width = 2
max_steps = 2
max_step_tokens = 24
answer_budget = 16
"""


@pytest.fixture(scope="module")
def real_proxy(
    local_teacher: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyProcess]:
    proxy = ProxyProcess(
        CONFIG.replace("TEACHER", local_teacher), tmp_path_factory.mktemp("real-proxy")
    ).start()
    yield proxy
    proxy.stop()


def client(proxy: ProxyProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.base_url, api_key="none", max_retries=0, timeout=300)


def test_sdk_gets_a_chat_completion(real_proxy: ProxyProcess) -> None:
    completion = client(real_proxy).chat.completions.create(
        model="cord", messages=QUESTION, extra_body={"cord": {**SMALL, "reference_answer": "42"}}
    )
    assert isinstance(completion, ChatCompletion)
    message = completion.choices[0].message
    assert message.content
    extra = message.model_extra or {}
    assert extra["reasoning_content"] and extra["reasoning"] == extra["reasoning_content"]
    assert extra["reasoning_content"].startswith("### Step 1.")
    cord = (completion.model_extra or {})["cord"]
    assert cord["steps"] and cord["reference_used"] is True
    for step in cord["steps"]:
        assert step["proposers"][0] in {"t0.5", "t0.7"}
        assert 0.0 < step["score"] <= 1.0
    usage = completion.usage
    assert usage is not None and usage.completion_tokens_details is not None
    reasoning = usage.completion_tokens_details.reasoning_tokens or 0
    assert 0 < reasoning < usage.completion_tokens
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_sdk_streams_role_reasoning_content_finish_usage(real_proxy: ProxyProcess) -> None:
    stream = client(real_proxy).chat.completions.create(
        model="cord",
        messages=QUESTION,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"cord": SMALL},
    )
    events: list[str] = []
    reasoning = ""
    for chunk in stream:
        if chunk.usage is not None:
            events.append("usage")
        for choice in chunk.choices:
            extra = choice.delta.model_extra or {}
            if choice.delta.role:
                events.append("role")
            if extra.get("reasoning_content"):
                events.append("reasoning")
                reasoning += extra["reasoning_content"]
            if choice.delta.content:
                events.append("content")
            if choice.finish_reason:
                events.append("finish")
    order = [e for i, e in enumerate(events) if i == 0 or events[i - 1] != e]
    assert order == ["role", "reasoning", "content", "finish", "usage"], events
    assert reasoning.startswith("### Step 1.")


def test_a_logit_bias_the_teacher_refuses_is_a_400_naming_it(real_proxy: ProxyProcess) -> None:
    """vLLM refuses a logit_bias id past its vocabulary (Gemma 3's has 262,144 ids): the
    client gets a 400 with vLLM's reason, which the SDK does not retry, not a 502."""
    with pytest.raises(openai.BadRequestError) as caught:
        client(real_proxy).chat.completions.create(
            model="cord", messages=QUESTION, logit_bias={"262144": 5}, extra_body={"cord": SMALL}
        )
    assert caught.value.code == "teacher_refused_request"
    assert "logit_bias" in str(caught.value)


def test_inline_reasoning_format(real_proxy: ProxyProcess) -> None:
    completion = client(real_proxy).chat.completions.create(
        model="cord",
        messages=QUESTION,
        extra_body={"cord": {**SMALL, "max_steps": 1, "reasoning_format": "inline"}},
    )
    content = completion.choices[0].message.content or ""
    assert content.startswith("<think>\n### Step 1.") and "</think>" in content


@pytest.mark.parametrize("script", ["openai_chat.py", "openai_stream.py", "curl.sh"])
def test_client_examples_run(real_proxy: ProxyProcess, script: str) -> None:
    path = ROOT / "clients" / script
    command = (
        ["bash", str(path), real_proxy.base_url]
        if script.endswith(".sh")
        else [sys.executable, str(path), "--base-url", real_proxy.base_url]
    )
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    if script == "curl.sh":
        body = json.loads(done.stdout)
        assert body["object"] == "chat.completion" and body["cord"]["steps"]
    elif script == "openai_chat.py":
        assert "answer:" in done.stdout and "steps:" in done.stdout
    else:
        assert "[reasoning]" in done.stdout and "[finish_reason]" in done.stdout
