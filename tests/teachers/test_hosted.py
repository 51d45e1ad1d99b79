"""The litellm teacher kind (teachers/hosted.py): propose-only, checked capabilities, failures.

HTTP goes to `FakeHostedProvider`, a FAKE OpenAI-compatible provider served by aiohttp in
the test process (``hosted_vllm/<model>`` or ``openai/<model>`` with ``api_base`` at it);
it records every request. Local teachers in decodes are in-process `ScriptedFakeTeacher`s.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from cord_proxy.config import TeacherConfig, parse_config
from cord_proxy.decoding import DecodeJob, DecodeOptions, decode
from cord_proxy.decoding.failures import DROP_AFTER_FAILURES
from cord_proxy.errors import ConfigError, DecodeError, TeacherCapabilityError
from cord_proxy.runtime import Runtime
from cord_proxy.teachers.base import Message
from cord_proxy.teachers.capabilities import HostedCapabilities, litellm_capabilities
from cord_proxy.teachers.emulation import instruction, provider_stops, shape_reply, step_marker
from cord_proxy.teachers.factory import build_teacher
from cord_proxy.teachers.hosted import HostedTeacher, stop_litellm_worker
from tests.support.fakes import ScriptedFakeTeacher

QUESTION = [Message(role="user", content="What is 2 + 3?")]
STOP = ("### Step", "</think>")

Reply = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]


def ok_reply(content: str, stop_reason: str | None = "### Step") -> Reply:
    def reply(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        n = int(body.get("n") or 1)
        return 200, {
            "id": "fake",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", "fake"),
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                    "stop_reason": stop_reason,
                }
                for i in range(n)
            ],
            "usage": {"prompt_tokens": 40, "completion_tokens": 6 * n, "total_tokens": 46},
        }

    return reply


def failing_reply(status: int) -> Reply:
    return lambda _body: (status, {"error": {"message": "the fake provider is down"}})


class FakeHostedProvider:
    """A FAKE provider: every request is recorded and answered by `reply`."""

    def __init__(self, reply: Reply, delay: float = 0.0):
        self.reply = reply
        self.delay = delay
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    @property
    def scoring_requests(self) -> list[dict[str, Any]]:
        """Anything that asks for log-probabilities, or uses the completions endpoint."""
        return [
            body
            for path, body in self.requests
            if (path.endswith("/completions") and not path.endswith("/chat/completions"))
            or "prompt_logprobs" in body
            or body.get("echo")
            or body.get("logprobs")
        ]

    async def start(self) -> FakeHostedProvider:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._any)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/v1"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _any(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        self.requests.append((request.path, body))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        status, payload = self.reply(body)
        return web.json_response(payload, status=status, headers={"Retry-After": "0"})


@pytest.fixture(autouse=True)
async def _no_litellm_task_left() -> AsyncIterator[None]:
    """litellm logs from a background task; stop it so that no test leaves a task behind."""
    yield
    await stop_litellm_worker()


@pytest.fixture
async def providers() -> AsyncIterator[Callable[[Reply], Any]]:
    started: list[FakeHostedProvider] = []

    async def make(reply: Reply, delay: float = 0.0) -> FakeHostedProvider:
        provider = await FakeHostedProvider(reply, delay).start()
        started.append(provider)
        return provider

    yield make
    for provider in started:
        await provider.stop()


def hosted(base_url: str, **overrides: Any) -> HostedTeacher:
    fields: dict[str, Any] = {
        "name": "hosted",
        "kind": "litellm",
        "model": "hosted_vllm/fake-model",
        "base_url": base_url,
        "max_retries": 1,
        "timeout": 20.0,
    }
    fields.update(overrides)
    teacher = build_teacher(TeacherConfig.model_validate(fields))
    assert isinstance(teacher, HostedTeacher)
    return teacher


def local_fake(name: str = "local", **kwargs: Any) -> ScriptedFakeTeacher:
    steps = iter(range(1, 1000))
    return ScriptedFakeTeacher(
        name,
        proposals=lambda prefix: (
            "The answer is 5." if prefix.rstrip().endswith("</think>") else f" local {next(steps)}"
        ),
        logprobs=[-0.5, -0.5],
        **kwargs,
    )


# --- a litellm teacher never scores: refused when the teachers are built, before serving ------


def config_with(teacher: dict[str, Any], ensemble: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "teachers": [
            {"name": "local", "base_url": "http://127.0.0.1:8401/v1", "model": "gemma3-270m"},
            teacher,
        ],
        "ensembles": [ensemble or {"name": "mixed", "teachers": ["local", teacher["name"]]}],
    }


def test_a_litellm_scorer_is_rejected_when_the_runtime_builds_it_naming_the_teacher() -> None:
    gpt = {
        "name": "gpt",
        "kind": "litellm",
        "model": "openai/gpt-4o-mini",
        "api_key": "env:OPENAI_API_KEY",
        "roles": ["propose", "score"],
    }
    config = parse_config(config_with(gpt))
    with pytest.raises(ConfigError) as raised:
        Runtime(config)

    message = str(raised.value)
    assert "teacher 'gpt'" in message
    assert "cannot score" in message
    assert "prompt log-probabilities" in message
    assert raised.value.problems == [message]


def test_a_vllm_server_through_litellm_cannot_score_either_and_is_told_the_way() -> None:
    qwq = TeacherConfig.model_validate(
        {
            "name": "qwq",
            "kind": "litellm",
            "model": "hosted_vllm/QwQ-32B",
            "base_url": "http://gpu-1:8000/v1",
            "roles": ["score"],
        }
    )
    with pytest.raises(ConfigError) as raised:
        build_teacher(qwq)
    assert "teacher 'qwq'" in str(raised.value)
    assert "kind 'openai'" in str(raised.value)


def test_a_litellm_teacher_proposes_only_by_default_and_cannot_be_listed_as_scorer() -> None:
    gpt = {"name": "gpt", "kind": "litellm", "model": "openai/gpt-4o-mini"}
    config = parse_config(config_with(gpt))
    assert config.teacher("gpt").roles == frozenset({"propose"})

    ensemble = {"name": "mixed", "teachers": ["local", "gpt"], "scorers": ["gpt"]}
    with pytest.raises(ConfigError) as raised:
        parse_config(config_with(gpt, ensemble))
    assert "teacher 'gpt' does not have the score role" in str(raised.value)


def test_assistant_prefill_is_a_litellm_setting() -> None:
    local = {"name": "x", "base_url": "http://h/v1", "model": "m", "assistant_prefill": True}
    with pytest.raises(ConfigError, match="assistant_prefill applies to kind 'litellm'"):
        parse_config({"teachers": [local], "ensembles": [{"name": "e", "teachers": ["x"]}]})


# --- no scoring call ever reaches a hosted teacher --------------------------------------------


async def test_score_raises_without_any_request(providers: Any) -> None:
    fake = await providers(ok_reply(" x"))
    teacher = hosted(fake.base_url)

    assert teacher.can_propose and not teacher.can_score
    with pytest.raises(TeacherCapabilityError) as raised:
        await teacher.score(QUESTION, "<think>\n### Step 1. x", "5")

    assert raised.value.teacher == "hosted"
    assert raised.value.status == 400
    assert fake.requests == []
    assert fake.scoring_requests == []


async def test_a_decode_refuses_a_hosted_scorer_up_front(providers: Any) -> None:
    fake = await providers(ok_reply(" x"))
    teacher = hosted(fake.base_url)

    with pytest.raises(TeacherCapabilityError, match="'hosted'"):
        await decode(DecodeJob.create("What is 2 + 3?", [teacher, local_fake()], scorers=[teacher]))
    assert fake.requests == []


async def test_a_mixed_decode_never_sends_a_scoring_call_to_the_hosted_teacher(
    providers: Any,
) -> None:
    fake = await providers(ok_reply(" hosted step\n"))
    teacher = hosted(fake.base_url)
    local = local_fake()

    result = await decode(
        DecodeJob.create(
            "What is 2 + 3?",
            [teacher, local],
            DecodeOptions(beam_width=2, max_steps=3, max_step_tokens=16, include_candidates=True),
            reference_answer="5",
        )
    )

    assert fake.requests  # it proposed
    assert fake.scoring_requests == []
    assert all(path.endswith("/chat/completions") for path, _ in fake.requests)
    assert local.score_calls()  # scoring went to the local teacher only
    proposers = {
        name
        for step in result.best.steps
        for candidate in step.candidates or []
        for name in candidate.proposers
    }
    assert proposers == {"hosted", "local"}
    usage = {u.name: u for u in result.teachers}
    assert usage["hosted"].score_calls == 0
    assert usage["hosted"].prompt_tokens > 0
    assert usage["hosted"].completion_tokens > 0


# --- failures: degraded, not failed; all proposers failing is a 502 ---------------------------


async def test_a_hosted_teacher_that_always_fails_is_dropped_and_the_answer_is_degraded(
    providers: Any,
) -> None:
    fake = await providers(failing_reply(503))
    teacher = hosted(fake.base_url, max_retries=1)
    local = local_fake()

    result = await decode(
        DecodeJob.create(
            "What is 2 + 3?",
            [teacher, local],
            DecodeOptions(beam_width=2, max_steps=3, max_step_tokens=16),
            reference_answer="5",
        )
    )

    assert result.best.answer == "The answer is 5."
    assert all(step.proposers == ["local"] for step in result.best.steps)
    assert result.dropped == ["hosted"]
    failed = [f for f in result.failures if f.teacher == "hosted"]
    assert len(failed) == DROP_AFTER_FAILURES
    assert all(f.role == "propose" and "HTTP 503" in f.error for f in failed)
    # two failed calls, each the first try and one retry; then no call at all
    assert len(fake.requests) == DROP_AFTER_FAILURES * 2
    assert teacher.retries == DROP_AFTER_FAILURES
    usage = {u.name: u for u in result.teachers}
    assert usage["hosted"].failures == DROP_AFTER_FAILURES
    assert usage["hosted"].propose_calls == DROP_AFTER_FAILURES


async def test_every_proposer_failing_is_a_502_decode_error(providers: Any) -> None:
    fake = await providers(failing_reply(500))
    teacher = hosted(fake.base_url, max_retries=0)
    scorer = ScriptedFakeTeacher("scorer", logprobs=[-0.1], can_propose=False)

    with pytest.raises(DecodeError) as raised:
        await decode(
            DecodeJob.create(
                "What is 2 + 3?",
                [teacher, scorer],
                DecodeOptions(beam_width=2, max_steps=3, max_step_tokens=16),
                reference_answer="5",
            )
        )

    error = raised.value.to_openai()["error"]
    assert raised.value.status == 502
    assert error["type"] == "decode_error"
    assert "hosted" in error["message"] and "HTTP 500" in error["message"]
    assert scorer.score_calls() == []


# --- proposing: prefill (vLLM), instruction (hosted APIs), usage and cost ---------------------


async def test_vllm_through_litellm_continues_the_assistant_message(providers: Any) -> None:
    fake = await providers(ok_reply(" Add 2 and 3.\n"))
    teacher = hosted(fake.base_url, temperature=0.6, seed=11, extra_body={"top_k": 20})
    prefix = "<think>\n### Step 1."

    proposals = await teacher.propose(QUESTION, prefix, n=2, stop=STOP, max_tokens=32)

    ((path, body),) = fake.requests
    assert path == "/v1/chat/completions"
    assert body["messages"][-1] == {"role": "assistant", "content": prefix}
    assert body["continue_final_message"] is True
    assert body["add_generation_prompt"] is False
    assert body["stop"] == list(STOP)
    assert (body["n"], body["max_tokens"], body["temperature"], body["seed"]) == (2, 32, 0.6, 11)
    assert body["top_k"] == 20
    assert [p.text for p in proposals] == [" Add 2 and 3.\n"] * 2
    assert all(p.finish_reason == "stop" and p.stop_string == "### Step" for p in proposals)
    assert [p.prompt_tokens for p in proposals] == [40, 0]  # the prompt is counted once
    assert all(p.tokens > 0 for p in proposals)
    assert teacher.capabilities.prefill_source == "vLLM continue_final_message"


async def test_vllm_end_of_sequence_closes_the_trace(providers: Any) -> None:
    fake = await providers(ok_reply(" So it is 5.", stop_reason=None))
    teacher = hosted(fake.base_url)

    (proposal,) = await teacher.propose(
        QUESTION, "<think>\n### Step 4.", n=1, stop=STOP, max_tokens=32
    )

    assert proposal.finish_reason == "closed"
    assert len(fake.requests) == 1


async def test_a_hosted_api_is_asked_by_instruction_and_priced_by_litellm(
    providers: Any,
) -> None:
    fake = await providers(ok_reply("### Step 2. Add 2 and 3 to get 5.", stop_reason=None))
    teacher = hosted(fake.base_url, model="openai/gpt-4o-mini", api_key="env:FAKE_KEY_FOR_TEST")
    prefix = "<think>\n### Step 1. Read the question.\n\n### Step 2."

    proposals = await teacher.propose(QUESTION, prefix, n=2, stop=STOP, max_tokens=32)

    ((path, body),) = fake.requests
    assert path == "/v1/chat/completions"
    assert [m["role"] for m in body["messages"]] == ["user", "user"]
    ask = body["messages"][-1]["content"]
    assert "### Step 1. Read the question." in ask
    assert 'Start your reply with "### Step 2."' in ask
    assert "continue_final_message" not in body
    assert body["stop"] == ["\n### Step"]  # not at the reply's own marker; no </think>
    assert [p.text for p in proposals] == [" Add 2 and 3 to get 5."] * 2
    # a plain "stop" does not say which stop string, if any, ended the reply
    assert all(p.finish_reason == "stop" and p.stop_string is None for p in proposals)
    assert all(p.cost_usd > 0 for p in proposals)  # gpt-4o-mini is in litellm's cost map
    assert proposals[0].cost_usd == pytest.approx(proposals[1].cost_usd)
    import litellm  # loaded, after its settings, when the teacher was built

    # the call's price by litellm's map, from the usage the provider reported, split evenly
    price = sum(litellm.cost_per_token(model="gpt-4o-mini", prompt_tokens=40, completion_tokens=12))
    assert sum(p.cost_usd for p in proposals) == pytest.approx(price)
    assert not teacher.capabilities.assistant_prefill


@pytest.fixture(autouse=True)
def _fake_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY_FOR_TEST", "sk-fake")


async def test_other_providers_prefill_with_litellm_prefix_flag(providers: Any) -> None:
    fake = await providers(ok_reply("\n\n5", stop_reason=None))
    teacher = hosted(
        fake.base_url,
        model="openai/gpt-4o-mini",
        api_key="env:FAKE_KEY_FOR_TEST",
        assistant_prefill=True,
    )

    (answer,) = await teacher.propose(
        QUESTION, "<think>\n### Step 1. 2 + 3 = 5.\n</think>\n\n", n=1, stop=(), max_tokens=8
    )

    last = fake.requests[0][1]["messages"][-1]
    assert last["role"] == "assistant" and last.get("prefix") is True
    assert last["content"] == "<think>\n### Step 1. 2 + 3 = 5.\n</think>"  # no trailing space
    assert "continue_final_message" not in fake.requests[0][1]
    assert answer.text == "5"  # the whitespace the prefill lost is not written twice
    assert teacher.capabilities.prefill_source == "config (assistant_prefill)"


async def test_the_final_answer_is_asked_for_after_the_trace(providers: Any) -> None:
    fake = await providers(ok_reply("5", stop_reason=None))
    teacher = hosted(fake.base_url, model="openai/gpt-4o-mini", api_key="env:FAKE_KEY_FOR_TEST")

    (answer,) = await teacher.propose(
        QUESTION, "<think>\n### Step 1. 2 + 3 = 5.\n</think>\n\n", n=1, stop=(), max_tokens=8
    )

    ask = fake.requests[0][1]["messages"][-1]["content"]
    assert "final answer" in ask and "2 + 3 = 5." in ask and "</think>" not in ask
    assert answer.text == "5"


async def test_max_concurrency_limits_calls_in_flight(providers: Any) -> None:
    fake = await providers(ok_reply(" x\n"), delay=0.2)
    teacher = hosted(fake.base_url, max_concurrency=2)

    results = await asyncio.gather(
        *(
            teacher.propose(QUESTION, "<think>\n### Step 1.", n=1, stop=STOP, max_tokens=8)
            for _ in range(6)
        )
    )

    assert len(results) == 6 and len(fake.requests) == 6
    assert fake.max_in_flight == 2


async def test_without_n_support_one_call_per_proposal(providers: Any) -> None:
    fake = await providers(ok_reply(" x\n"))
    config = TeacherConfig.model_validate(
        {"name": "h", "kind": "litellm", "model": "hosted_vllm/m", "base_url": fake.base_url}
    )
    caps = litellm_capabilities(config.model, base_url=config.base_url)
    no_n = HostedCapabilities(
        **{**caps.__dict__, "supported_params": caps.supported_params - {"n"}}
    )
    teacher = HostedTeacher(config, capabilities=no_n)

    proposals = await teacher.propose(
        QUESTION, "<think>\n### Step 1.", n=3, stop=STOP, max_tokens=8
    )

    assert len(proposals) == 3
    assert len(fake.requests) == 3
    assert all("n" not in body for _, body in fake.requests)


def test_capabilities_come_from_litellm() -> None:
    def caps(model: str, **extra: Any) -> HostedCapabilities:
        return litellm_capabilities(model, **extra)

    vllm = caps("hosted_vllm/QwQ-32B", base_url="http://gpu:8000/v1")
    assert vllm.assistant_prefill and vllm.reports_stop_reason and vllm.supports("n")
    claude = caps("anthropic/claude-sonnet-4-5")
    assert claude.assistant_prefill and not claude.supports("n")
    gpt = caps("openai/gpt-4o-mini")
    assert not gpt.assistant_prefill
    assert caps("openai/gpt-4o-mini", assistant_prefill=True).assistant_prefill
    assert not any(c.can_score for c in (vllm, claude, gpt))
    assert gpt.describe()["propose"] == "instruction"


# --- reply shaping ----------------------------------------------------------------------------


def test_step_marker() -> None:
    assert step_marker("<think>\n### Step 1. a\n\n### Step 2.", STOP) == "### Step 2."
    assert step_marker("<think>\nx. Wait", ("Wait", "Alternatively", "</think>")) == "Wait"
    assert step_marker("<think>\na\n\n", ("\n\n", "</think>")) == ""
    assert step_marker("<think>\n", STOP) == ""


def test_provider_stops() -> None:
    assert provider_stops(STOP, "### Step 2.", exact=False) == {"\n### Step": "### Step"}
    assert provider_stops(STOP, "", exact=True) == {"### Step": "### Step", "</think>": "</think>"}


def test_shape_reply() -> None:
    sent = {"\n### Step": "### Step"}
    kw: dict[str, Any] = {"stops": STOP, "sent": sent, "marker": "### Step 2.", "exact": False}
    assert shape_reply("### Step 2. a\n### Step 3. b", "stop", None, **kw) == (
        " a\n",
        "stop",
        "### Step",
    )
    assert shape_reply("a", "stop", None, **kw) == (" a", "stop", None)
    assert shape_reply("a", "stop", "\n### Step", **kw) == (" a", "stop", "### Step")
    assert shape_reply(" a</think>5", "stop", None, **kw) == (" a", "stop", "</think>")
    assert shape_reply(" a", "length", None, **kw) == (" a", "length", None)
    exact: dict[str, Any] = {
        "stops": STOP,
        "sent": {s: s for s in STOP},
        "marker": "",
        "exact": True,
    }
    assert shape_reply(" a", "stop", None, **exact) == (" a", "closed", None)
    assert shape_reply(" a", "stop", "</think>", **exact) == (" a", "stop", "</think>")


def test_instruction_shows_the_trace_without_tags() -> None:
    ask = instruction("<think>\n### Step 1. a\n\n### Step 2.", "### Step 2.", answering=False)
    assert "<trace>\n### Step 1. a\n</trace>" in ask
    assert "<think>" not in ask.split("<trace>")[1]
    first = instruction("<think>\n### Step 1.", "### Step 1.", answering=False)
    assert "(empty: write the first step)" in first


# --- emulation through a provider (issue 19, finding 6) ---------------------------------------

NEWLINE_STOP = ("\n\n", "</think>")
MARKER_STOP = ("Wait", "Alternatively", "Let me check", "</think>")


def prefill_teacher(base_url: str) -> HostedTeacher:
    """A provider that continues an assistant message but drops its trailing whitespace."""
    return hosted(
        base_url,
        model="openai/gpt-4o-mini",
        api_key="env:FAKE_KEY_FOR_TEST",
        assistant_prefill=True,
    )


async def test_a_newline_step_of_a_prefill_provider_is_not_stopped_at_once(
    providers: Any,
) -> None:
    fake = await providers(ok_reply("So 2 + 3 = 5.", stop_reason=None))
    prefix = "<think>\nFirst, 2 + 2 = 4.\n\n"

    (step,) = await prefill_teacher(fake.base_url).propose(
        QUESTION, prefix, n=1, stop=NEWLINE_STOP, max_tokens=32
    )

    body = fake.requests[0][1]
    last = body["messages"][-1]
    lost = prefix[len(last["content"]) :] if last["role"] == "assistant" else ""
    # the teacher's reply would start by writing the lost "\n\n" again: that must not stop it
    assert not (lost and any(s[:1].isspace() for s in body.get("stop", [])))
    assert "First, 2 + 2 = 4." in str(body["messages"])
    assert "\n\n" in body["stop"]
    assert (step.text, step.finish_reason, step.stop_string) == ("So 2 + 3 = 5.", "stop", None)


async def test_an_empty_reply_is_a_proposal_with_empty_text(providers: Any) -> None:
    fake = await providers(ok_reply("", stop_reason=None))

    proposals = await prefill_teacher(fake.base_url).propose(
        QUESTION, "<think>\nFirst, 2 + 2 = 4.\n\n", n=1, stop=NEWLINE_STOP, max_tokens=32
    )

    assert [(p.text, p.finish_reason, p.stop_string) for p in proposals] == [("", "stop", None)]


async def test_a_marker_step_is_joined_as_written_and_claims_no_unknown_stop(
    providers: Any,
) -> None:
    fake = await providers(ok_reply("Alternatively, count up: 3, 4, 5.", stop_reason=None))
    teacher = hosted(fake.base_url, model="openai/gpt-4o-mini", api_key="env:FAKE_KEY_FOR_TEST")
    prefix = "<think>\n2 + 3 looks like 6. Alternatively"

    (step,) = await teacher.propose(QUESTION, prefix, n=1, stop=MARKER_STOP, max_tokens=32)

    assert prefix + step.text == "<think>\n2 + 3 looks like 6. Alternatively, count up: 3, 4, 5."
    assert (step.finish_reason, step.stop_string) == ("stop", None)
