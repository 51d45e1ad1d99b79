"""In-process fakes for the decoding engine's tests.

`ScriptedFakeTeacher` implements the `Teacher` protocol with no network: what it proposes
and the log-probabilities it gives are scripted by the test, every call can be delayed
(``asyncio.sleep``), and every call is recorded with its start and end time and the way it
ended, next to a live in-flight counter. A `ConcurrencyMeter` shared between several fakes
counts their calls together (for example "all B x K proposals of a step were in flight at
once").

Scripts:

- ``proposals``: either a function ``prefix -> result`` or a sequence used as a queue, one
  item per `propose` call. A result is a `Proposal`, a string (turned into a `Proposal`,
  see `as_proposal`), a list of those, or an exception (raised). The function may also raise.
- ``logprobs``: either a function ``(prefix, target) -> list of floats`` or a fixed list.
  The function may raise (for example `TeacherUnreachableError`).
- ``propose_delay`` / ``score_delay``: seconds, or a function of ``prefix`` (propose) or
  ``(prefix, target)`` (score) giving seconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from cord_proxy.decoding.trace import CandidateRecord, DecodeResult
from cord_proxy.teachers.base import Message, Proposal, SpanScore

CallKind = Literal["propose", "score"]
Outcome = Literal["running", "ok", "error", "cancelled"]

ProposalItem = Proposal | str | BaseException | Sequence[Proposal | str]
ProposeScript = Callable[[str], ProposalItem] | Sequence[ProposalItem]
LogprobScript = Callable[[str, str], Sequence[float]] | Sequence[float]
ProposeDelay = float | Callable[[str], float]
ScoreDelay = float | Callable[[str, str], float]

_identities = itertools.count()
R = TypeVar("R")


def clock() -> float:
    """The clock of every call record (shared by all fakes, so their records compare)."""
    return time.perf_counter()


@dataclass
class CallRecord:
    """One call to a fake teacher, as it happened."""

    teacher: str
    kind: CallKind
    conversation: list[Message]
    prefix: str
    target: str | None = None
    n: int | None = None
    stop: tuple[str, ...] | None = None
    max_tokens: int | None = None
    seed: int | None = None
    temperature: float | None = None
    extra: dict[str, object] = field(default_factory=dict)
    started: float = 0.0
    ended: float | None = None
    outcome: Outcome = "running"
    error: BaseException | None = None
    result: object = None

    @property
    def is_answer(self) -> bool:
        """A `propose` call asking for the final answer (after ``</think>``)."""
        return self.kind == "propose" and is_answer_prefix(self.prefix)


@dataclass
class ConcurrencyMeter:
    """Counts calls in flight over several fakes together, per kind and in total."""

    in_flight: int = 0
    max_in_flight: int = 0
    by_kind: dict[str, int] = field(default_factory=lambda: {"propose": 0, "score": 0})
    max_by_kind: dict[str, int] = field(default_factory=lambda: {"propose": 0, "score": 0})

    def enter(self, kind: CallKind) -> None:
        self.in_flight += 1
        self.by_kind[kind] += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.max_by_kind[kind] = max(self.max_by_kind[kind], self.by_kind[kind])

    def leave(self, kind: CallKind) -> None:
        self.in_flight -= 1
        self.by_kind[kind] -= 1


def as_proposal(item: Proposal | str, stop: Sequence[str], max_tokens: int) -> Proposal:
    """A scripted string as a teacher would return it.

    Tokens are whitespace-separated words. A text longer than `max_tokens` words is cut to
    `max_tokens` words with ``finish_reason="length"``; otherwise it ends with
    ``finish_reason="stop"`` at the first of `stop` (``stop_string``; None when there is none).
    A `Proposal` is returned as scripted.
    """
    if isinstance(item, Proposal):
        return item
    words = item.split()
    if len(words) > max_tokens:
        lead = item[: len(item) - len(item.lstrip())]
        cut = lead + " ".join(words[:max_tokens])
        return Proposal(text=cut, finish_reason="length", tokens=max_tokens)
    return Proposal(
        text=item, finish_reason="stop", tokens=len(words), stop_string=stop[0] if stop else None
    )


class ScriptedFakeTeacher:
    """A `Teacher` with scripted proposals and log-probabilities, delays and a call log."""

    def __init__(
        self,
        name: str,
        *,
        proposals: ProposeScript | None = None,
        logprobs: LogprobScript | None = None,
        propose_delay: ProposeDelay = 0.0,
        score_delay: ScoreDelay = 0.0,
        can_propose: bool = True,
        can_score: bool = True,
        score_identity: str | None = None,
        meter: ConcurrencyMeter | None = None,
    ):
        self._name = name
        self._proposals = proposals
        self._queue: list[ProposalItem] | None = (
            None if proposals is None or callable(proposals) else list(proposals)
        )
        self._logprobs = logprobs
        self._propose_delay = propose_delay
        self._score_delay = score_delay
        self._can_propose = can_propose
        self._can_score = can_score
        self._identity = score_identity or f"scripted-fake:{name}:{next(_identities)}"
        self.meter = meter
        self.calls: list[CallRecord] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.in_flight_by_kind: dict[str, int] = {"propose": 0, "score": 0}
        self.max_in_flight_by_kind: dict[str, int] = {"propose": 0, "score": 0}
        self.closed = False

    # --- the Teacher protocol -------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def can_propose(self) -> bool:
        return self._can_propose

    @property
    def can_score(self) -> bool:
        return self._can_score

    @property
    def score_identity(self) -> str:
        return self._identity

    async def propose(
        self,
        conversation: Sequence[Message],
        prefix: str,
        *,
        n: int,
        stop: Sequence[str],
        max_tokens: int,
        seed: int | None = None,
        temperature: float | None = None,
        **extra: object,
    ) -> list[Proposal]:
        record = CallRecord(
            teacher=self._name,
            kind="propose",
            conversation=list(conversation),
            prefix=prefix,
            n=n,
            stop=tuple(stop),
            max_tokens=max_tokens,
            seed=seed,
            temperature=temperature,
            extra=dict(extra),
        )
        delay = (
            self._propose_delay(prefix) if callable(self._propose_delay) else self._propose_delay
        )

        async def body() -> list[Proposal]:
            await asyncio.sleep(delay)
            item = self._next_proposal(prefix)
            if isinstance(item, BaseException):
                raise item
            items = [item] if isinstance(item, Proposal | str) else list(item)
            return [as_proposal(i, stop, max_tokens) for i in items]

        return await self._track(record, body())

    async def score(self, conversation: Sequence[Message], prefix: str, target: str) -> SpanScore:
        record = CallRecord(
            teacher=self._name,
            kind="score",
            conversation=list(conversation),
            prefix=prefix,
            target=target,
        )
        delay = (
            self._score_delay(prefix, target) if callable(self._score_delay) else self._score_delay
        )

        async def body() -> SpanScore:
            await asyncio.sleep(delay)
            values = self.logprobs_for(prefix, target)
            return SpanScore(
                tokens=tuple(f"<tok{i}>" for i in range(len(values))),
                logprobs=tuple(values),
                context_tokens=len(prefix.split()),
            )

        return await self._track(record, body())

    async def aclose(self) -> None:
        self.closed = True

    # --- scripts and bookkeeping ------------------------------------------------------------

    def logprobs_for(self, prefix: str, target: str) -> list[float]:
        """What `score(…, prefix, target)` returns (also for tests computing by hand)."""
        if self._logprobs is None:
            raise AssertionError(f"fake teacher {self._name!r} has no scripted log-probabilities")
        if callable(self._logprobs):
            return [float(v) for v in self._logprobs(prefix, target)]
        return [float(v) for v in self._logprobs]

    def _next_proposal(self, prefix: str) -> ProposalItem:
        if self._proposals is None:
            raise AssertionError(f"fake teacher {self._name!r} has no scripted proposals")
        if self._queue is not None:
            if not self._queue:
                raise AssertionError(f"fake teacher {self._name!r} ran out of scripted proposals")
            return self._queue.pop(0)
        assert callable(self._proposals)
        return self._proposals(prefix)

    async def _track(self, record: CallRecord, work: Coroutine[object, object, R]) -> R:
        kind = record.kind
        self.calls.append(record)
        self.in_flight += 1
        self.in_flight_by_kind[kind] += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.max_in_flight_by_kind[kind] = max(
            self.max_in_flight_by_kind[kind], self.in_flight_by_kind[kind]
        )
        if self.meter is not None:
            self.meter.enter(kind)
        record.started = clock()
        try:
            result = await work
        except asyncio.CancelledError:
            record.outcome = "cancelled"
            raise
        except BaseException as error:
            record.outcome = "error"
            record.error = error
            raise
        finally:
            record.ended = clock()
            self.in_flight -= 1
            self.in_flight_by_kind[kind] -= 1
            if self.meter is not None:
                self.meter.leave(kind)
        record.outcome = "ok"
        record.result = result
        return result

    # --- views for assertions ---------------------------------------------------------------

    def proposals_calls(self) -> list[CallRecord]:
        """`propose` calls for reasoning steps (not for the final answer)."""
        return [c for c in self.calls if c.kind == "propose" and not c.is_answer]

    def answer_calls(self) -> list[CallRecord]:
        return [c for c in self.calls if c.is_answer]

    def score_calls(self) -> list[CallRecord]:
        return [c for c in self.calls if c.kind == "score"]


# --- helpers for scripts and for waiting ------------------------------------------------------


def hashed_logprobs(
    salt: str, *, min_tokens: int = 1, max_tokens: int = 4
) -> Callable[[str, str], list[float]]:
    """A deterministic log-probability script: pseudo-random values from (salt, prefix, target).

    Different prefixes (and different salts, e.g. scorer names) give unrelated values, so
    ties between candidates practically never happen.
    """

    def script(prefix: str, target: str) -> list[float]:
        digest = hashlib.sha256(f"{salt}\x00{prefix}\x00{target}".encode()).digest()
        rng = random.Random(digest)
        return [-rng.uniform(0.01, 3.0) for _ in range(rng.randint(min_tokens, max_tokens))]

    return script


def digest(text: str, size: int = 8) -> str:
    """A short stable fingerprint of `text` (for scripted proposals that depend on the prefix)."""
    return hashlib.sha256(text.encode()).hexdigest()[:size]


def is_answer_prefix(prefix: str) -> bool:
    """Whether a `propose` prefix asks for the final answer (the thinking block is closed)."""
    return prefix.rstrip().endswith("</think>")


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Yield to the event loop until `predicate()` holds; fail after `timeout` seconds."""
    deadline = clock() + timeout
    while not predicate():
        if clock() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.001)


def answered(teachers: Sequence[ScriptedFakeTeacher]) -> list[str]:
    """The answers that were written: every answer call that returned."""
    return [
        call.result[0].text.strip()  # type: ignore[index]
        for teacher in teachers
        for call in teacher.answer_calls()
        if call.outcome == "ok"
    ]


def round_records(result: DecodeResult) -> dict[int, list[CandidateRecord]]:
    """Every round's candidate records (each step record of a round holds the same list)."""
    rounds: dict[int, list[CandidateRecord]] = {}
    for trace in result.traces:
        for step in trace.steps:
            assert step.candidates is not None
            rounds.setdefault(step.index, step.candidates)
    return rounds
