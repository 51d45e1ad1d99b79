"""A circuit breaker per teacher endpoint, shared by every request and every teacher on it.

Closed, calls go through; open, they fail at once with `CircuitOpenError`, so requests go
on without that endpoint instead of waiting out its timeout.

**Failures are counted once per outage, not once per caller.** The breaker opens after
`threshold` failure events in a row. A failed call is a new event only if, since the call
began, the breaker did not change state and counted no failure of the same class (the
error's type; for an HTTP error, its status). Calls in flight together when an endpoint goes
down see one outage: 100 of them failing on one refused connection are one event, and calls
still in flight when the breaker opens count nothing. The calls of a serial caller each
count, for each began after the last one failed. A 4xx is the request's fault, not the
endpoint's: it never counts. A success resets the count.

**It learns fast that an endpoint is back.**
- While open, an endpoint whose client attached a check (`attach_probe`: vLLM's ``/health``,
  else ``/models``) is checked in the background every `probe_interval_s`; the first success
  closes the breaker, without waiting for a request to try it. litellm (hosted) teachers
  attach none: they have no call that is both cheap and free, so they rely on the trial below.
- After the cool-down one request's call is let through (half-open): its success closes the
  breaker, its failure reopens it. The cool-down starts at `first_cooldown_s` and doubles each
  time the endpoint is found still down (a failed trial or probe call, or an opening with no
  real success since the last one), up to `cooldown_s`; a real success resets it.
- A check that passed while calls went on failing (a server that answers ``/health`` and
  500s) is distrusted until the next real success: the background check then waits the
  cool-down, so such an endpoint costs one burst of failures a cool-down, not one per check.

**Never all at once by accident (panic mode, Envoy's term).** Breakers are grouped by
ensemble, one group per ensemble's proposers (`BreakerRegistry.group`). When every breaker
of a group is open, each lets one call at a time through as a probe; the other calls wait
for its verdict and go on if it closed the breaker, fail if it failed. A request whose every
proposer is open thus fails only when the probes fail.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from cord_proxy.errors import CircuitOpenError, TeacherError, TeacherHTTPError

State = Literal["closed", "open", "half_open"]
R = TypeVar("R")
Check = Callable[[], Awaitable[bool]]
Verdict = bool | None  # a probe call's outcome: closed, still down, or unknown (cancelled)
DEFAULT_THRESHOLD = 5
DEFAULT_COOLDOWN_S = 30.0
FIRST_COOLDOWN_S = 1.0
PROBE_INTERVAL_S = 0.5
log = logging.getLogger(__name__)


def counts_against_endpoint(error: BaseException) -> bool:
    if isinstance(error, TeacherHTTPError):
        return error.http_status >= 500
    return isinstance(error, TeacherError | TimeoutError)


def failure_class(error: BaseException) -> str:
    """Failures of one class in flight together are one event (an HTTP error: by status)."""
    if isinstance(error, TeacherHTTPError):
        return f"http_{error.http_status}"
    return type(error).__name__


class Admission(enum.Enum):
    CALL = "call"  # an ordinary call
    TRIAL = "trial"  # the half-open call after the cool-down
    PANIC = "panic"  # the probe call of an endpoint whose whole group is open


@dataclass(frozen=True)
class Ticket:
    """What the breaker knew when a call began, and the part the call plays."""

    role: Admission
    changes: int
    events: int
    verdict: asyncio.Future[Verdict] | None = None  # a panic probe's, awaited by the others


class PanicGroup:
    """The breakers of one ensemble's proposers: when all are open, each admits probes."""

    def __init__(self, breakers: Iterable[CircuitBreaker]):
        self.members = tuple(dict.fromkeys(breakers))

    @property
    def all_open(self) -> bool:
        return bool(self.members) and all(b.is_open for b in self.members)


class CircuitBreaker:
    def __init__(
        self,
        threshold: int = DEFAULT_THRESHOLD,
        cooldown_s: float = DEFAULT_COOLDOWN_S,
        clock: Callable[[], float] = time.monotonic,
        *,
        first_cooldown_s: float | None = None,
        probe_interval_s: float = PROBE_INTERVAL_S,
    ):
        self.threshold = threshold
        self.max_cooldown_s = cooldown_s
        self.first_cooldown_s = min(first_cooldown_s or FIRST_COOLDOWN_S, cooldown_s)
        self.cooldown_s = self.first_cooldown_s  # the current cool-down
        self._first_adopted = first_cooldown_s is not None  # given here: no teacher's wins
        self.probe_interval_s = probe_interval_s
        self.clock = clock
        self.label = ""  # a teacher on the endpoint, for log lines (never its URL)
        self.failures = 0  # failure events in a row
        self.opened_at: float | None = None
        self.level = 0  # openings and failed probe calls since the last real success
        self.times_opened = 0
        self.groups: list[PanicGroup] = []
        self._changes = 0
        self._events = 0
        self._last_event: dict[str, int] = {}
        self._ticket = Ticket(Admission.CALL, 0, 0)  # shared by the calls begun since (immutable)
        self._trial = False
        self._panic: asyncio.Future[Verdict] | None = None
        self._checks: dict[object, Check] = {}
        self._prober: asyncio.Task[None] | None = None
        self._prober_owner: object | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        self._closed_by_check = False  # closed by a background check, no real success since
        self._distrusted = False  # ... and opened again: the check is not believed

    def adopt_first_cooldown(self, seconds: float) -> None:
        """Take a teacher's ``breaker_first_cooldown``; the first teacher on the endpoint sets
        it, as the first one built sets the threshold and the cap (`BreakerRegistry`)."""
        if not self._first_adopted:
            self._first_adopted = True
            self.first_cooldown_s = min(seconds, self.max_cooldown_s)
            if self.opened_at is None:
                self.cooldown_s = self.first_cooldown_s

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None

    @property
    def state(self) -> State:
        if self.opened_at is None:
            return "closed"
        return "half_open" if self._trial or self._trial_due() else "open"

    @property
    def in_panic(self) -> bool:
        """Whether every breaker of one of this breaker's groups is open."""
        return any(group.all_open for group in self.groups)

    async def call(
        self, teacher: str, work: Callable[..., Awaitable[R]], *args: Any, auxiliary: bool = False
    ) -> R:
        """Run one call, `work(*args)`, through the breaker.

        An `auxiliary` call (tokenizing, say) passes where a trial or a probe would, but is
        never one; its failure counts, its success does not close the breaker: an endpoint
        that tokenizes and fails every generation must still open it.
        """
        self.label = self.label or teacher
        if self.opened_at is None:  # closed: an ordinary call, admitted without a wait
            ticket = self._ticket
            if ticket.changes != self._changes or ticket.events != self._events:
                ticket = self._ticket = Ticket(Admission.CALL, self._changes, self._events)
        else:
            ticket = await self._admit(teacher, auxiliary)
        try:
            result = await work(*args)
        except BaseException as error:
            self._failed(ticket, error)
            raise
        if not auxiliary:
            self._succeeded(ticket)
        return result

    async def _admit(self, teacher: str, auxiliary: bool) -> Ticket:
        """The call's ticket; raises `CircuitOpenError` while the breaker refuses it."""
        while True:
            role = self._role(teacher, auxiliary)
            if role is not None:
                probe = self._panic if role is Admission.PANIC else None
                return Ticket(role, self._changes, self._events, probe)
            assert self._panic is not None
            if await asyncio.shield(self._panic) is False:
                raise self._refusal(teacher, "every proposer is down and this one's probe failed")

    def _role(self, teacher: str, auxiliary: bool) -> Admission | None:
        """The part a call may play now; None: wait for the panic probe in flight."""
        if self.opened_at is None:
            return Admission.CALL
        if auxiliary:
            if self._trial_due() or self.in_panic:
                return Admission.CALL
            raise self._refusal(teacher)
        if self._trial_due() and not self._trial:
            self._trial = True
            return Admission.TRIAL
        if not self.in_panic:
            raise self._refusal(teacher)
        if self._panic is None:
            self._panic = asyncio.get_running_loop().create_future()
            return Admission.PANIC
        return None

    def _trial_due(self) -> bool:
        return self.opened_at is not None and self.clock() - self.opened_at >= self.cooldown_s

    def _refusal(self, teacher: str, why: str | None = None) -> CircuitOpenError:
        since = 0.0 if self.opened_at is None else self.clock() - self.opened_at
        left = max(0.0, self.cooldown_s - since)
        reason = why or f"next trial call in {left:.1f} s"
        return CircuitOpenError(
            teacher,
            f"circuit open after {self.failures} failures in a row; {reason}",
        )

    def _failed(self, ticket: Ticket, error: BaseException) -> None:
        counts = counts_against_endpoint(error)
        if ticket.role is Admission.CALL:
            if counts and self._is_news(ticket, error):
                self._count(error)
            return
        if counts and self.opened_at is not None and ticket.changes == self._changes:
            self._open_again()
        self._end_probe(ticket, False if counts else None)

    def _is_news(self, ticket: Ticket, error: BaseException) -> bool:
        """Whether a failed call tells more than the breaker knew: it is closed, it has not
        changed state since the call began, and it counted no failure of the class since."""
        if self.opened_at is not None or ticket.changes != self._changes:
            return False
        return self._last_event.get(failure_class(error), 0) <= ticket.events

    def _count(self, error: BaseException) -> None:
        self._events += 1
        self._last_event[failure_class(error)] = self._events
        self.failures += 1
        if self.failures >= self.threshold:
            self._open()

    def _succeeded(self, ticket: Ticket) -> None:
        """A success newer than all the breaker knows: the count and the cool-down start
        again, and an open breaker closes. An older one (the call began before the last
        counted failure or state change) tells nothing new and is ignored."""
        fresh = ticket.role is not Admission.CALL or (
            ticket.changes == self._changes and ticket.events == self._events
        )
        if fresh:
            self.failures = 0
            self.level = 0
            self.cooldown_s = self.first_cooldown_s
            self._closed_by_check = self._distrusted = False
            if self.opened_at is not None:
                self._close("call")
        self._end_probe(ticket, True)

    def _end_probe(self, ticket: Ticket, verdict: Verdict) -> None:
        if ticket.role is Admission.TRIAL:
            self._trial = False
        if ticket.verdict is not None:
            if not ticket.verdict.done():
                ticket.verdict.set_result(verdict if self.is_open else True)
            if self._panic is ticket.verdict:
                self._panic = None

    def _open(self) -> None:
        self.times_opened += 1
        self._distrusted = self._distrusted or self._closed_by_check
        self._set_open()
        log.warning(
            "circuit breaker opened",
            extra={"teacher": self.label, "failures": self.failures, "cooldown_s": self.cooldown_s},
        )
        if self.in_panic:
            log.warning(
                "every proposer of an ensemble is open: panic mode", extra={"teacher": self.label}
            )

    def _open_again(self) -> None:
        """A trial or probe call failed: open again, for a longer cool-down."""
        self._set_open()

    def _set_open(self) -> None:
        self.cooldown_s = min(self.max_cooldown_s, self.first_cooldown_s * 2**self.level)
        self.level += 1
        self.opened_at = self.clock()
        self._changes += 1
        self._start_probing()

    def _close(self, by: str) -> None:
        self.opened_at = None
        self.failures = 0
        self._changes += 1
        self._closed_by_check = by == "check"
        if self._panic is not None and not self._panic.done():
            self._panic.set_result(True)
        self._panic = None
        self._stop_probing()
        log.info("circuit breaker closed", extra={"teacher": self.label, "by": by})

    # -- the background check ---------------------------------------------------------

    def attach_probe(self, owner: object, check: Check, label: str = "") -> None:
        """Let `check` (cheap, True when the endpoint answers) be run while the breaker is
        open. Each client on the endpoint may attach one; the first attached is used."""
        self._checks.setdefault(owner, check)
        self.label = self.label or label
        self._start_probing()

    async def detach_probe(self, owner: object) -> None:
        """Forget `owner`'s check; a background check running with it is cancelled and
        awaited (call before the owner closes what its check uses)."""
        if self._checks.pop(owner, None) is None:
            return
        if self._prober_owner is owner:
            self._stop_probing()
            await self._stopped()
            self._start_probing()

    async def aclose(self) -> None:
        """Cancel and await the background check, whoever attached it."""
        self._checks.clear()
        self._stop_probing()
        await self._stopped()

    def _start_probing(self) -> None:
        if self._prober is not None or not self._checks or self.opened_at is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        owner, check = next(iter(self._checks.items()))
        self._prober_owner = owner
        self._prober = loop.create_task(self._probe_loop(check), name="breaker-probe")

    def _stop_probing(self) -> None:
        task, self._prober, self._prober_owner = self._prober, None, None
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    async def _stopped(self) -> None:
        """Wait for the cancelled background checks to end."""
        while pending := [task for task in self._stopping if not task.done()]:
            await asyncio.gather(*pending, return_exceptions=True)

    async def _probe_loop(self, check: Check) -> None:
        """Check the open endpoint until it answers, then close the breaker."""
        while self.opened_at is not None:
            await asyncio.sleep(self.cooldown_s if self._distrusted else self.probe_interval_s)
            if self.opened_at is None:
                return
            up = await _checked(check)
            log.debug("breaker check", extra={"teacher": self.label, "up": up})
            if up and self.opened_at is not None:
                self._close("check")


async def _checked(check: Check) -> bool:
    """The check's answer; a check that raises says the endpoint is not back."""
    try:
        return await check()
    except Exception as error:  # a broken check must not end the loop that runs it
        log.debug("breaker check failed", extra={"error": type(error).__name__})
        return False


class BreakerRegistry:
    """One breaker per endpoint key, for every teacher client built by one runtime."""

    def __init__(self) -> None:
        self.by_endpoint: dict[str, CircuitBreaker] = {}
        self.groups: list[PanicGroup] = []

    def get(self, endpoint: str, threshold: int, cooldown_s: float) -> CircuitBreaker:
        if endpoint not in self.by_endpoint:
            self.by_endpoint[endpoint] = CircuitBreaker(threshold, cooldown_s)
        return self.by_endpoint[endpoint]

    def group(self, breakers: Iterable[CircuitBreaker]) -> PanicGroup:
        """Group the breakers of one ensemble's proposers for panic mode."""
        group = PanicGroup(breakers)
        for breaker in group.members:
            breaker.groups.append(group)
        self.groups.append(group)
        return group
