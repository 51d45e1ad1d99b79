"""The circuit breaker: alone with a fake clock and FAKE calls (exact counts and orders), in a
teacher client against a FAKE server, and in a runtime's ensemble (panic mode)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from bench.faultteacher import FakeSpec, build_app
from cord_proxy.config import TeacherConfig, parse_config
from cord_proxy.errors import (
    CircuitOpenError,
    DecodeError,
    TeacherHTTPError,
    TeacherProtocolError,
    TeacherUnreachableError,
)
from cord_proxy.runtime import Runtime, run_job
from cord_proxy.teachers._client import TeacherClient
from cord_proxy.teachers.base import Message
from cord_proxy.teachers.breaker import BreakerRegistry, CircuitBreaker
from cord_proxy.teachers.factory import build_teacher
from cord_proxy.teachers.openai_compat import OpenAICompatTeacher
from cord_proxy.teachers.retry import Retryable, RetryPolicy, call_with_retries
from tests.support.fake_teacher_http import CountingFakeTeacher

QUESTION: list[Any] = []


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def fail() -> None:
    raise TeacherUnreachableError("t", "connection refused")


async def server_error() -> None:
    raise TeacherHTTPError("t", "HTTP 500", http_status=500)


async def succeed() -> str:
    return "ok"


async def open_by_serial_failures(breaker: CircuitBreaker) -> None:
    """One failure after another: each call begins after the last failed, each counts."""
    while not breaker.is_open:
        with pytest.raises(TeacherUnreachableError):
            await breaker.call("t", fail)


class FakeOutage:
    """A FAKE endpoint that fails every call once `down` is set, as a refused connection does
    for every call in flight; `calls` counts the calls that reached it."""

    def __init__(self) -> None:
        self.down = asyncio.Event()
        self.calls = 0

    async def call(self) -> None:
        self.calls += 1
        await self.down.wait()
        raise TeacherUnreachableError("t", "connection refused")


# -- counting: once per outage, not once per caller ---------------------------------------


async def test_100_concurrent_calls_failing_on_one_refused_connection_are_one_event() -> None:
    breaker = CircuitBreaker(threshold=2, cooldown_s=30.0)
    outage = FakeOutage()
    calls = [asyncio.ensure_future(breaker.call("t", outage.call)) for _ in range(100)]
    await asyncio.sleep(0)
    outage.down.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, TeacherUnreachableError) for r in results)
    assert outage.calls == 100
    assert breaker.failures == 1 and breaker.state == "closed"
    with pytest.raises(TeacherUnreachableError):
        await breaker.call("t", fail)  # begun after the outage was counted: news
    assert breaker.state == "open" and breaker.times_opened == 1


async def test_a_failure_of_another_class_in_flight_is_its_own_event() -> None:
    breaker = CircuitBreaker(threshold=5, cooldown_s=30.0)
    gate = asyncio.Event()

    async def after(work: Callable[[], Awaitable[None]]) -> None:
        await gate.wait()
        await work()

    calls = [
        asyncio.ensure_future(breaker.call("t", lambda w=w: after(w)))
        for w in (fail, fail, server_error, server_error, fail)
    ]
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(*calls, return_exceptions=True)
    assert breaker.failures == 2  # one refused connection, one 500 storm


async def test_calls_in_flight_when_it_opens_count_nothing_and_tell_nothing() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=2, cooldown_s=30.0, clock=clock)
    gate = asyncio.Event()

    async def late(work: Callable[[], Awaitable[Any]]) -> Any:
        await gate.wait()
        return await work()

    failing = asyncio.ensure_future(breaker.call("t", lambda: late(fail)))
    answering = asyncio.ensure_future(breaker.call("t", lambda: late(succeed)))
    await asyncio.sleep(0)
    await open_by_serial_failures(breaker)
    opened_at, cooldown = breaker.opened_at, breaker.cooldown_s
    clock.now += 0.5
    gate.set()
    with pytest.raises(TeacherUnreachableError):
        await failing
    assert await answering == "ok"  # an answer older than the outage does not close it
    assert breaker.state == "open"
    assert (breaker.opened_at, breaker.cooldown_s) == (opened_at, cooldown)


async def test_client_errors_and_interleaved_successes_do_not_open_it() -> None:
    breaker = CircuitBreaker(threshold=2, cooldown_s=10.0)

    async def bad_request() -> None:
        raise TeacherHTTPError("t", "HTTP 400", http_status=400)

    for _ in range(5):
        with pytest.raises(TeacherHTTPError):
            await breaker.call("t", bad_request)
        with pytest.raises(TeacherUnreachableError):
            await breaker.call("t", fail)
        await breaker.call("t", succeed)
    assert breaker.state == "closed"


# -- the cool-down: short, growing while down, reset by a success -------------------------


async def test_the_cool_down_starts_short_doubles_to_its_cap_and_resets_on_success() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=3, cooldown_s=5.0, clock=clock, first_cooldown_s=1.0)
    await open_by_serial_failures(breaker)
    seen = [breaker.cooldown_s]
    for _ in range(4):
        with pytest.raises(CircuitOpenError, match="circuit open"):
            await breaker.call("t", succeed)  # refused before its cool-down ends
        clock.now += breaker.cooldown_s
        assert breaker.state == "half_open"
        with pytest.raises(TeacherUnreachableError):
            await breaker.call("t", fail)  # the trial fails: open again, for longer
        seen.append(breaker.cooldown_s)
    assert seen == [1.0, 2.0, 4.0, 5.0, 5.0]
    clock.now += breaker.cooldown_s
    assert await breaker.call("t", succeed) == "ok"  # the trial succeeds: closed
    assert breaker.state == "closed" and breaker.failures == 0
    await open_by_serial_failures(breaker)
    assert breaker.cooldown_s == 1.0 and breaker.times_opened == 2


async def test_one_trial_at_a_time_after_the_cool_down() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=1, cooldown_s=30.0, clock=clock)
    await open_by_serial_failures(breaker)
    clock.now += breaker.cooldown_s
    gate = asyncio.Event()

    async def slow_success() -> str:
        await gate.wait()
        return "ok"

    trial = asyncio.ensure_future(breaker.call("t", slow_success))
    await asyncio.sleep(0)
    with pytest.raises(CircuitOpenError):
        await breaker.call("t", succeed)
    gate.set()
    assert await trial == "ok" and breaker.state == "closed"


# -- the background check -----------------------------------------------------------------


async def test_an_open_endpoint_is_checked_in_the_background_and_closes_on_its_first_success() -> (
    None
):
    breaker = CircuitBreaker(threshold=1, cooldown_s=30.0, probe_interval_s=0.01)
    answers = [False, False, True]
    checks: list[bool] = []

    async def check() -> bool:
        checks.append(answers[len(checks)])
        return checks[-1]

    owner = object()
    breaker.attach_probe(owner, check, "t")
    await open_by_serial_failures(breaker)
    for _ in range(500):
        if not breaker.is_open:
            break
        await asyncio.sleep(0.01)
    assert breaker.state == "closed" and checks == [False, False, True]
    assert breaker.level == 1  # no request call has succeeded yet: the level is kept
    await breaker.detach_probe(owner)


async def test_a_check_that_passes_while_calls_fail_is_distrusted_until_a_real_success() -> None:
    breaker = CircuitBreaker(
        threshold=1, cooldown_s=60.0, first_cooldown_s=5.0, probe_interval_s=0.01
    )
    checks = 0

    async def always_healthy() -> bool:
        nonlocal checks
        checks += 1
        return True

    owner = object()
    breaker.attach_probe(owner, always_healthy, "t")
    await open_by_serial_failures(breaker)
    for _ in range(500):
        if not breaker.is_open:
            break
        await asyncio.sleep(0.01)
    assert not breaker.is_open and checks == 1
    await open_by_serial_failures(breaker)  # "healthy", and its calls fail again
    assert breaker.cooldown_s == 10.0  # doubled: no real success since the last opening
    await asyncio.sleep(0.3)
    assert breaker.is_open and checks == 1  # the check now waits the cool-down, not 0.01 s
    await breaker.detach_probe(owner)


async def test_detaching_cancels_and_awaits_the_check_and_hands_it_to_another_client() -> None:
    breaker = CircuitBreaker(threshold=1, cooldown_s=30.0, probe_interval_s=0.01)
    running: list[str] = []

    def never_back(name: str) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            running.append(name)
            return False

        return check

    first, second = object(), object()
    breaker.attach_probe(first, never_back("first"), "t")
    breaker.attach_probe(second, never_back("second"), "t")
    await open_by_serial_failures(breaker)
    task = breaker._prober
    assert task is not None
    await asyncio.sleep(0.05)
    await breaker.detach_probe(first)
    assert task.done() and task.cancelled()
    running.clear()
    await asyncio.sleep(0.05)
    assert running and set(running) == {"second"}
    await breaker.aclose()
    assert breaker._prober is None


# -- panic mode ---------------------------------------------------------------------------


async def test_panic_lets_one_probe_through_and_the_others_wait_for_its_verdict() -> None:
    registry = BreakerRegistry()
    a, b = (registry.get(key, 1, 30.0) for key in ("a", "b"))
    registry.group([a, b])
    await open_by_serial_failures(a)
    with pytest.raises(CircuitOpenError):
        await a.call("t", succeed)  # b is closed: no panic, refused at once
    await open_by_serial_failures(b)
    assert a.in_panic and b.in_panic
    gate = asyncio.Event()
    started = 0

    async def answer_once_let_through() -> str:
        nonlocal started
        started += 1
        await gate.wait()
        return "ok"

    calls = [asyncio.ensure_future(a.call("t", answer_once_let_through)) for _ in range(10)]
    await asyncio.sleep(0.01)
    assert started == 1  # the probe; nine calls wait for its verdict
    gate.set()
    assert await asyncio.gather(*calls) == ["ok"] * 10
    assert a.state == "closed" and b.is_open and not b.in_panic
    with pytest.raises(CircuitOpenError):
        await b.call("t", succeed)  # a is back: b refuses at once again


async def test_panic_fails_the_waiting_calls_when_the_probe_fails() -> None:
    registry = BreakerRegistry()
    a = registry.get("a", 1, 30.0)
    registry.group([a])
    await open_by_serial_failures(a)
    outage = FakeOutage()
    calls = [asyncio.ensure_future(a.call("t", outage.call)) for _ in range(5)]
    await asyncio.sleep(0.01)
    outage.down.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert outage.calls == 1
    assert isinstance(results[0], TeacherUnreachableError)  # the probe's own error
    assert all(isinstance(r, CircuitOpenError) for r in results[1:])
    assert "probe failed" in str(results[1])
    assert a.is_open and a.cooldown_s == 2.0


# -- retries ------------------------------------------------------------------------------


async def test_retries_stop_once_the_endpoint_is_known_to_be_down() -> None:
    attempts = 0

    async def refused(_left: float) -> None:
        nonlocal attempts
        attempts += 1
        raise Retryable(TeacherUnreachableError("t", "connection refused"))

    policy = RetryPolicy(max_retries=5, deadline_s=30.0, base_delay_s=0.0)
    with pytest.raises(TeacherUnreachableError):
        await call_with_retries(refused, policy, give_up=lambda: attempts >= 2)
    assert attempts == 2


# -- in a teacher client, against a FAKE server -------------------------------------------


def test_teachers_on_one_endpoint_share_a_breaker() -> None:
    registry = BreakerRegistry()
    configs = [
        TeacherConfig(name=n, base_url="http://127.0.0.1:9/v1", model="m") for n in ("a", "b")
    ]
    other = TeacherConfig(name="c", base_url="http://127.0.0.1:10/v1", model="m")
    a, b, c = (build_teacher(t, registry) for t in (*configs, other))
    assert isinstance(a, OpenAICompatTeacher) and isinstance(b, OpenAICompatTeacher)
    assert isinstance(c, OpenAICompatTeacher)
    assert a.breaker is b.breaker and a.breaker is not c.breaker


async def test_an_open_breaker_fails_calls_at_once_without_the_network() -> None:
    fake = CountingFakeTeacher()
    base_url = fake.start_in_thread()
    config = TeacherConfig(
        name="broken-teacher",
        base_url=base_url,
        model="broken",
        max_retries=0,
        breaker_threshold=2,
        breaker_cooldown=60.0,
        breaker_first_cooldown=60.0,
    )
    teacher = OpenAICompatTeacher(config)
    try:
        for _ in range(2):
            with pytest.raises(TeacherHTTPError):
                await teacher.propose(QUESTION, "x", n=1, stop=[], max_tokens=4)
        started = time.perf_counter()
        with pytest.raises(CircuitOpenError) as caught:
            await teacher.propose(QUESTION, "x", n=1, stop=[], max_tokens=4)
        assert time.perf_counter() - started < 0.05
        assert caught.value.teacher == "broken-teacher"
        assert teacher.breaker.state == "open"
    finally:
        await teacher.aclose()
        fake.stop_thread()


async def test_without_a_health_route_the_check_reads_the_model_list() -> None:
    """The FAKE has no /health: its /v1/models answers, so the endpoint is back (its
    generations still fail: the next openings make the check wait the cool-down)."""
    fake = CountingFakeTeacher()
    base_url = fake.start_in_thread()
    config = TeacherConfig(
        name="broken-teacher", base_url=base_url, model="broken", max_retries=0,
        breaker_threshold=1, breaker_first_cooldown=60.0,
    )  # fmt: skip
    teacher = OpenAICompatTeacher(config)
    try:
        with pytest.raises(TeacherHTTPError):
            await teacher.propose(QUESTION, "x", n=1, stop=[], max_tokens=4)
        assert teacher.breaker.is_open
        for _ in range(100):
            if not teacher.breaker.is_open:
                break
            await asyncio.sleep(0.05)
        assert teacher.breaker.state == "closed" and fake.models_calls >= 1
    finally:
        await teacher.aclose()
        fake.stop_thread()


@pytest.fixture
async def fault_server() -> AsyncIterator[TestServer]:
    server = TestServer(build_app(FakeSpec(propose_s=0.0, tokenize_s=0.0)), host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


async def set_fault(teacher: OpenAICompatTeacher, server: TestServer, fault: str) -> None:
    async with teacher._client().post(str(server.make_url("/fake/fault")), json={"fault": fault}):
        pass


def fault_teacher(
    server: TestServer, name: str = "fault-teacher", **settings: Any
) -> TeacherConfig:
    return TeacherConfig(
        name=name,
        base_url=str(server.make_url("/v1")),
        model=name,
        max_retries=0,
        context_length=4096,
        **{
            "breaker_threshold": 2,
            "breaker_first_cooldown": 60.0,
            "breaker_cooldown": 600.0,
            **settings,
        },
    )


async def test_malformed_answers_open_the_breaker(fault_server: TestServer) -> None:
    """A 200 of the wrong shape is a failure of the endpoint, not a success (bench/faults.py)."""
    teacher = OpenAICompatTeacher(fault_teacher(fault_server))
    try:
        assert len(await teacher.propose(QUESTION, "x", n=1, stop=[], max_tokens=4)) == 1
        await set_fault(teacher, fault_server, "malformed")
        for _ in range(2):
            with pytest.raises(TeacherProtocolError):
                await teacher.propose(QUESTION, "x", n=1, stop=[], max_tokens=4)
        assert teacher.breaker.state == "open"
        with pytest.raises(CircuitOpenError):
            await teacher.propose(QUESTION, "x", n=1, stop=[], max_tokens=4)
    finally:
        await teacher.aclose()


async def test_a_teacher_that_comes_back_is_used_again_without_a_request_trying_it(
    fault_server: TestServer,
) -> None:
    teacher = OpenAICompatTeacher(fault_teacher(fault_server))
    try:
        await set_fault(teacher, fault_server, "error500")  # /health answers 500 as well
        for _ in range(2):
            with pytest.raises(TeacherHTTPError):
                await teacher.propose(QUESTION, "x", n=1, stop=[], max_tokens=4)
        assert teacher.breaker.is_open
        await asyncio.sleep(1.2)  # two checks at least: still down
        assert teacher.breaker.is_open
        await set_fault(teacher, fault_server, "none")
        for _ in range(100):
            if not teacher.breaker.is_open:
                break
            await asyncio.sleep(0.05)
        assert teacher.breaker.state == "closed"
        assert len(await teacher.propose(QUESTION, "x", n=1, stop=[], max_tokens=4)) == 1
    finally:
        await teacher.aclose()


async def test_closing_the_client_cancels_and_awaits_its_background_check(
    fault_server: TestServer,
) -> None:
    teacher = OpenAICompatTeacher(fault_teacher(fault_server))
    await set_fault(teacher, fault_server, "error500")
    for _ in range(2):
        with pytest.raises(TeacherHTTPError):
            await teacher.propose(QUESTION, "x", n=1, stop=[], max_tokens=4)
    task = teacher.breaker._prober
    assert task is not None and not task.done()
    await teacher.aclose()
    assert task.done() and teacher.breaker._prober is None
    assert teacher._session is None


# -- panic mode in a runtime: an ensemble whose every proposer is open --------------------


@pytest.fixture
async def two_fault_servers() -> AsyncIterator[tuple[TestServer, TestServer]]:
    servers = [
        TestServer(build_app(FakeSpec(propose_s=0.0, tokenize_s=0.0)), host="127.0.0.1")
        for _ in range(2)
    ]
    for server in servers:
        await server.start_server()
    yield servers[0], servers[1]
    for server in servers:
        await server.close()


def ensemble_runtime(servers: tuple[TestServer, TestServer]) -> Runtime:
    teachers = [fault_teacher(s, f"t{i}").model_dump() for i, s in enumerate(servers, 1)]
    defaults = {"beam_width": 2, "max_steps": 2, "max_step_tokens": 64, "answer_budget": 16}
    ensemble = {"name": "e", "teachers": ["t1", "t2"], "defaults": defaults}
    return Runtime(parse_config({"teachers": teachers, "ensembles": [ensemble]}))


async def open_every_proposer(runtime: Runtime) -> list[CircuitBreaker]:
    """Open both breakers, with their background checks detached: here only a request's probe
    call can close them."""
    breakers = []
    for teacher in runtime.teachers.values():
        assert isinstance(teacher, TeacherClient)
        await teacher.breaker.detach_probe(teacher)
        await open_by_serial_failures(teacher.breaker)
        breakers.append(teacher.breaker)
    return breakers


def job(runtime: Runtime) -> Any:
    return runtime.job("e", [Message(role="user", content="What is 6 x 7?")])


async def test_a_request_to_an_ensemble_whose_proposers_are_all_open_is_answered_by_probes(
    two_fault_servers: tuple[TestServer, TestServer],
) -> None:
    runtime = ensemble_runtime(two_fault_servers)
    try:
        breakers = await open_every_proposer(runtime)
        result = await run_job(job(runtime), timeout=30.0)
        assert result.best.answer
        assert all(b.state == "closed" for b in breakers)
    finally:
        await runtime.aclose()


async def test_it_fails_only_when_the_probes_fail(
    two_fault_servers: tuple[TestServer, TestServer],
) -> None:
    runtime = ensemble_runtime(two_fault_servers)
    try:
        breakers = await open_every_proposer(runtime)
        for teacher, server in zip(runtime.teachers.values(), two_fault_servers, strict=True):
            assert isinstance(teacher, OpenAICompatTeacher)
            await set_fault(teacher, server, "error500")
        with pytest.raises(DecodeError, match="no candidate survived"):
            await run_job(job(runtime), timeout=30.0)
        assert all(b.is_open for b in breakers)
        assert [b.cooldown_s for b in breakers] == [120.0, 120.0]  # one failed probe each
    finally:
        await runtime.aclose()
