"""Prometheus counters of the proxy: requests, latency, per-teacher work, batch lines."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cord_proxy.decoding.trace import TeacherUsage

LATENCY_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0)
LATENCY_SAMPLES = 1000
REJECTED_ROUTE = "(rejected)"


@dataclass
class Histogram:
    """One route's latencies in the `LATENCY_BUCKETS` (each bucket counts what is <= it)."""

    buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    total: float = 0.0
    count: int = 0

    def observe(self, seconds: float) -> None:
        self.total += seconds
        self.count += 1
        for index, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.buckets[index] += 1


class Metrics:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()
        self.latency: dict[str, Histogram] = {}
        self.teacher_calls: Counter[str] = Counter()
        self.teacher_failures: Counter[str] = Counter()
        self.teacher_latency: dict[str, float] = {}
        self.teacher_selected: Counter[str] = Counter()
        self.teacher_proposals: Counter[str] = Counter()
        self.teacher_tokens: Counter[str] = Counter()
        self.teacher_cost: dict[str, float] = {}
        self.teacher_call_latency: dict[str, deque[float]] = {}
        self.in_flight = 0
        self.unhandled = 0
        self.rejected: Counter[str] = Counter()
        self.stream_errors: Counter[tuple[str, int]] = Counter()
        self.batch_requests: Counter[str] = Counter()
        self.detach_events: Counter[str] = Counter()

    def observe_request(self, route: str, status: int) -> None:
        """A request answered with `status`: the status its client received."""
        self.requests[(route, status)] += 1

    def observe_latency(self, route: str, seconds: float) -> None:
        """A request's latency on `route` (its pattern), whatever its status."""
        self.latency.setdefault(route, Histogram()).observe(seconds)

    def observe_unhandled(self) -> None:
        """An error only the catch-all handler caught: a bug, counted so it is seen."""
        self.unhandled += 1

    def observe_rejected(self, reason: str, status: int) -> None:
        """A request answered before any route (malformed HTTP, headers too slow): counted by
        reason, and with the other requests by the status sent, as route ``(rejected)``."""
        self.rejected[reason] += 1
        self.requests[(REJECTED_ROUTE, status)] += 1

    def observe_stream_error(self, route: str, status: int) -> None:
        """A stream that began with a 200 and ended with an error event of `status`."""
        self.stream_errors[(route, status)] += 1

    def observe_batch_requests(self, outcome: str, count: int = 1) -> None:
        """Batch requests (input lines) that ended: completed, failed or expired."""
        self.batch_requests[outcome] += count

    def observe_detach(self, event: str) -> None:
        """A chat decode's client left or came back (cord_proxy/api/attach.py): detached,
        attached, claimed, finished_unclaimed, cancelled_after_grace or dropped."""
        self.detach_events[event] += 1

    def observe_decode(self, usage: Iterable[TeacherUsage]) -> None:
        for teacher in usage:
            self.teacher_calls[teacher.name] += teacher.propose_calls + teacher.score_calls
            self.teacher_failures[teacher.name] += teacher.failures
            self.teacher_latency[teacher.name] = (
                self.teacher_latency.get(teacher.name, 0.0) + teacher.latency_s
            )
            self.teacher_selected[teacher.name] += teacher.selected
            self._observe_teacher_work(teacher)

    def _observe_teacher_work(self, teacher: TeacherUsage) -> None:
        name = teacher.name
        self.teacher_proposals[name] += teacher.proposals
        self.teacher_tokens[name] += (
            teacher.prompt_tokens + teacher.completion_tokens + teacher.score_tokens
        )
        self.teacher_cost[name] = self.teacher_cost.get(name, 0.0) + teacher.cost_usd
        if teacher.propose_calls:
            samples = self.teacher_call_latency.setdefault(name, deque(maxlen=LATENCY_SAMPLES))
            samples.append(teacher.latency_s / teacher.propose_calls)

    def teacher_stats(self, name: str) -> dict[str, Any]:
        """One teacher's counters; latency is a propose call's, averaged per decode."""
        samples = sorted(self.teacher_call_latency.get(name, ()))
        return {
            "calls": self.teacher_calls[name],
            "failures": self.teacher_failures[name],
            "latency_p50_s": _quantile(samples, 0.50),
            "latency_p99_s": _quantile(samples, 0.99),
            "proposals": self.teacher_proposals[name],
            "selected": self.teacher_selected[name],
            "tokens": self.teacher_tokens[name],
            "cost_usd": self.teacher_cost.get(name, 0.0),
        }

    def render(self) -> str:
        lines = [
            "# HELP cord_requests_total HTTP requests by route and the status the client received.",
            "# TYPE cord_requests_total counter",
            *(
                f'cord_requests_total{{route="{route}",status="{status}"}} {count}'
                for (route, status), count in sorted(self.requests.items())
            ),
            "# HELP cord_stream_errors_total Streams (counted as 200) ended by an error event.",
            "# TYPE cord_stream_errors_total counter",
            *(
                f'cord_stream_errors_total{{route="{route}",status="{status}"}} {count}'
                for (route, status), count in sorted(self.stream_errors.items())
            ),
            "# HELP cord_request_duration_seconds HTTP request latency by route.",
            "# TYPE cord_request_duration_seconds histogram",
            *(
                line
                for route, histogram in sorted(self.latency.items())
                for line in _histogram("cord_request_duration_seconds", route, histogram)
            ),
            "# HELP cord_requests_in_flight Chat completions being decoded now.",
            "# TYPE cord_requests_in_flight gauge",
            f"cord_requests_in_flight {self.in_flight}",
            "# HELP cord_unhandled_errors_total Errors that reached the catch-all handler.",
            "# TYPE cord_unhandled_errors_total counter",
            f"cord_unhandled_errors_total {self.unhandled}",
        ]
        lines += _counter(
            "cord_rejected_requests_total",
            "Requests refused before routing, by reason.",
            "reason",
            self.rejected,
        )
        lines += _counter(
            "cord_batch_requests_total",
            "Batch requests (input lines) ended, by outcome.",
            "outcome",
            self.batch_requests,
        )
        lines += _counter(
            "cord_detached_decodes_total",
            "Chat decodes whose clients left or came back, by event.",
            "event",
            self.detach_events,
        )
        lines += _per_teacher("cord_teacher_calls_total", "Teacher calls.", self.teacher_calls)
        lines += _per_teacher(
            "cord_teacher_failures_total", "Failed teacher calls.", self.teacher_failures
        )
        lines += _per_teacher(
            "cord_teacher_latency_seconds_total", "Time in propose calls.", self.teacher_latency
        )
        lines += _per_teacher(
            "cord_teacher_selected_steps_total", "Steps selected.", self.teacher_selected
        )
        return "\n".join(lines) + "\n"


BREAKER_STATES = ("closed", "half_open", "open")


def render_breakers(states: dict[str, str]) -> str:
    """Each teacher's circuit breaker as a one-hot gauge by state."""
    lines = [
        "# HELP cord_teacher_breaker_state The teacher endpoint's circuit breaker (1 = in state).",
        "# TYPE cord_teacher_breaker_state gauge",
    ]
    for name, current in sorted(states.items()):
        lines += [
            f'cord_teacher_breaker_state{{teacher="{_label(name)}",state="{state}"}} '
            f"{int(state == current)}"
            for state in BREAKER_STATES
        ]
    return "\n".join(lines) + "\n"


def _histogram(name: str, route: str, histogram: Histogram) -> list[str]:
    """One route's series of a histogram: its buckets, sum and count."""
    label = f'route="{_label(route)}"'
    bounds = [*map(str, LATENCY_BUCKETS), "+Inf"]
    counts = [*histogram.buckets, histogram.count]
    return [
        *(f'{name}_bucket{{{label},le="{b}"}} {c}' for b, c in zip(bounds, counts, strict=True)),
        f"{name}_sum{{{label}}} {histogram.total:.6f}",
        f"{name}_count{{{label}}} {histogram.count}",
    ]


def _quantile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _per_teacher(name: str, help_text: str, values: Mapping[str, float]) -> list[str]:
    return _counter(name, help_text, "teacher", values)


def _counter(name: str, help_text: str, label: str, values: Mapping[str, float]) -> list[str]:
    """A counter with one label, a line per value of the label."""
    header = [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
    return header + [f'{name}{{{label}="{_label(k)}"}} {v}' for k, v in sorted(values.items())]


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
