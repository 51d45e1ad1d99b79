"""Client retries attach instead of starting over, at the real proxy and the real local
teacher (Gemma 3 270M on vLLM's CPU backend), measured by the teacher's own counter of
generated tokens (``vllm:generation_tokens_total``, at the teacher's root ``/metrics``).

One patient decode sets the measure: its duration and its generated tokens (the teacher is
greedy, so every decode of the body generates the same). The openai SDK, with a timeout a
fraction of that duration and its stock retries, then gets its completion for about one
decode's worth of tokens (at most 1.2), where each retry used to start over. Two clients that
send the same body without a retry marker get a decode each.

The proxy reaches the teacher through a recording pass-through (`UsageTap`), which notes each
call's generated tokens (its ``usage``) and whether it was aborted. When the teacher serves
nobody else, its counter and the tap agree; when other tests share it (a suite running in
parallel), the counter also holds their tokens, so the tap's count (complete, since no call of
ours is aborted: asserted) is the measure, and the counter bounds it from above.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import openai
import pytest

from cord_proxy.local import LOCAL_MODEL_NAME
from tests.batches.teacher_tap import TeacherTap
from tests.support.proxy_process import ProxyProcess

pytestmark = pytest.mark.integration

CONFIG = """
[server]
host = "127.0.0.1"
port = PORT
detach_grace_s = 30

[[teachers]]
name = "t"
base_url = "TEACHER"
model = "MODEL"
temperature = 0.0
seed = 7
timeout = 120

[[ensembles]]
name = "cord"
teachers = ["t"]
[ensembles.defaults]
beam_width = 1
proposals_per_teacher = 1
max_steps = 3
max_step_tokens = 20
thinking_budget = 256
answer_budget = 12
"""
MESSAGES = [
    {
        "role": "user",
        "content": "A train leaves at 9:40 and arrives at 13:15. How long is the trip? "
        "Think it through step by step.",
    }
]
COUNTER = re.compile(r"^vllm:generation_tokens_total\{[^}]*\} (\S+)$", re.MULTILINE)


@dataclass
class UsageTap(TeacherTap):
    """The batches' tap, also noting each answered call's generated tokens."""

    tokens: float = 0.0

    def _answered(self, payload: bytes) -> None:
        self.tokens += _completion_tokens(payload)


def _completion_tokens(payload: bytes) -> float:
    try:
        usage = json.loads(payload).get("usage") or {}
    except (ValueError, AttributeError):
        return 0.0
    return float(usage.get("completion_tokens") or 0)


def generated(teacher: str) -> float:
    """The teacher's generated tokens so far (its own counter)."""
    root = teacher.removesuffix("/").removesuffix("/v1")
    text = httpx.get(f"{root}/metrics", timeout=10).text
    return sum(float(v) for v in COUNTER.findall(text))


def ask(proxy: ProxyProcess, timeout: float, retries: int, **extra: object) -> str:
    """One completion through the openai SDK: its id."""
    client = openai.OpenAI(
        base_url=proxy.base_url, api_key="none", timeout=timeout, max_retries=retries
    )
    completion = client.chat.completions.create(
        model="cord",
        messages=MESSAGES,  # type: ignore[arg-type]
        extra_body=extra or None,
    )
    assert completion.choices[0].message.content is not None
    return completion.id


def finished(proxy: ProxyProcess) -> int:
    return proxy.log().count('"event": "decode finished"')


def settled(tap: UsageTap) -> None:
    """Wait until our calls are answered, and the teacher's counter has counted them."""
    while tap.in_flight():
        time.sleep(0.1)
    time.sleep(0.5)


@pytest.fixture(scope="module")
def tap(local_teacher: str) -> Iterator[UsageTap]:
    recorder = UsageTap(local_teacher).start()
    yield recorder
    recorder.stop()


@pytest.fixture(scope="module")
def proxy(tap: UsageTap, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    config = CONFIG.replace("TEACHER", tap.base_url).replace("MODEL", LOCAL_MODEL_NAME)
    process = ProxyProcess(config, tmp_path_factory.mktemp("detach")).start()
    yield process
    process.stop()


@dataclass
class Work:
    """What the teacher generated over a stretch: by its own counter, and for our proxy."""

    counter: float
    ours: float
    calls: int
    aborted: int


class Measure:
    def __init__(self, teacher: str, tap: UsageTap):
        self.teacher, self.tap = teacher, tap
        settled(tap)
        self.counter, self.tokens, self.calls = generated(teacher), tap.tokens, len(tap.calls)

    def done(self) -> Work:
        settled(self.tap)
        calls = self.tap.calls[self.calls :]
        assert all(c.ended is not None for c in calls)
        return Work(
            generated(self.teacher) - self.counter,
            self.tap.tokens - self.tokens,
            len(calls),
            sum(c.aborted for c in calls),
        )


def test_sdk_retries_attach_to_one_decode_and_clients_without_markers_get_two(
    proxy: ProxyProcess, tap: UsageTap, local_teacher: str
) -> None:
    # the first decode probes the teacher's scoring method, once: a short one does it
    ask(proxy, timeout=120, retries=0, cord={"max_steps": 1, "answer_budget": 4})
    measure, started = Measure(local_teacher, tap), time.monotonic()
    ask(proxy, timeout=120, retries=0)
    patient_s = time.monotonic() - started
    one = measure.done()
    assert one.ours > 0 and one.aborted == 0 and one.counter >= one.ours

    # the SDK gives up on each try after a fifth of the decode, and retries 5 times: a timeout
    # of 8 s against a decode of 40 s, with max_retries=5
    timeout = max(1.0, patient_s / 5)
    measure, started = Measure(local_teacher, tap), time.monotonic()
    decodes_before = finished(proxy)
    ask(proxy, timeout=timeout, retries=5)
    retried_s = time.monotonic() - started
    retried = measure.done()
    print(
        f"\npatient decode: {patient_s:.1f} s, {one}\n"
        f"SDK timeout {timeout:.1f} s and retries: {retried_s:.1f} s, {retried} "
        f"({retried.ours / one.ours:.2f} decodes; by the counter {retried.counter / one.ours:.2f})"
    )
    assert retried_s > 2 * timeout  # it did time out and retry
    assert finished(proxy) == decodes_before + 1
    assert '"event": "decode attached"' in proxy.log()
    assert retried.aborted == 0  # no call of ours was cut: the tap saw all our tokens
    assert retried.ours <= 1.2 * one.ours
    assert retried.counter >= retried.ours  # the teacher's own count holds ours
    if retried.counter == retried.ours and one.counter == one.ours:  # nobody else used it
        assert retried.counter <= 1.2 * one.counter

    # the same body from two clients, no retry marker: two decodes
    measure = Measure(local_teacher, tap)
    decodes_before = finished(proxy)
    ids: list[str] = []
    clients = [
        threading.Thread(target=lambda: ids.append(ask(proxy, timeout=120, retries=0)))
        for _ in range(2)
    ]
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    both = measure.done()
    print(f"two clients without a marker: {both} ({both.ours / one.ours:.2f} decodes)")
    assert len(set(ids)) == 2
    assert finished(proxy) == decodes_before + 2
    assert both.aborted == 0 and both.ours >= 1.8 * one.ours
    assert both.counter >= both.ours


SHORT_GRACE_S = 2.0


def test_a_client_that_never_returns_leaves_no_teacher_call_after_the_grace(
    tap: UsageTap, tmp_path_factory: pytest.TempPathFactory
) -> None:
    config = CONFIG.replace("TEACHER", tap.base_url).replace("MODEL", LOCAL_MODEL_NAME)
    config = config.replace("detach_grace_s = 30", f"detach_grace_s = {SHORT_GRACE_S}")
    process = ProxyProcess(config, tmp_path_factory.mktemp("detach-short")).start()
    try:
        settled(tap)
        first = len(tap.calls)
        with pytest.raises(openai.APITimeoutError):
            ask(process, timeout=2.0, retries=0)
        left = time.time()
        time.sleep(SHORT_GRACE_S + 2.0)
        settled(tap)
        calls = tap.calls[first:]
        assert calls and all(c.ended is not None for c in calls)
        assert max(c.started for c in calls) <= left + SHORT_GRACE_S + 0.5
        assert '"event": "decode cancelled after grace"' in process.log()
        assert '"event": "decode finished"' not in process.log()
    finally:
        process.stop()


def test_the_log_says_what_happened(proxy: ProxyProcess) -> None:
    """The structured lines of a detach and an attach name the completion."""
    lines = [line for line in proxy.log().splitlines() if '"event": "decode detached"' in line]
    assert lines and all('"completion_id": "chatcmpl-' in line for line in lines)


def test_nothing_is_left_in_the_registry(proxy: ProxyProcess) -> None:
    text = httpx.get(proxy.base_url.removesuffix("/v1") + "/metrics", timeout=10).text
    assert "cord_requests_in_flight 0" in text
