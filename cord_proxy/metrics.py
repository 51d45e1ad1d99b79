"""Prometheus counters of the proxy: requests, latency, and per-teacher work."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from cord_proxy.decoding.trace import TeacherUsage

LATENCY_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0)


class Metrics:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()
        self.latency_sum = 0.0
        self.latency_count = 0
        self.latency_buckets = [0] * len(LATENCY_BUCKETS)
        self.teacher_calls: Counter[str] = Counter()
        self.teacher_failures: Counter[str] = Counter()
        self.teacher_latency: dict[str, float] = {}
        self.teacher_selected: Counter[str] = Counter()
        self.in_flight = 0
        self.unhandled = 0
        self.rejected: Counter[str] = Counter()

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.requests[(route, status)] += 1
        self.latency_sum += seconds
        self.latency_count += 1
        for index, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.latency_buckets[index] += 1

    def observe_unhandled(self) -> None:
        """An error only the catch-all handler caught: a bug, counted so it is seen."""
        self.unhandled += 1

    def observe_rejected(self, reason: str) -> None:
        """A connection answered before any route: malformed HTTP, headers too slow."""
        self.rejected[reason] += 1

    def observe_decode(self, usage: Iterable[TeacherUsage]) -> None:
        for teacher in usage:
            self.teacher_calls[teacher.name] += teacher.propose_calls + teacher.score_calls
            self.teacher_failures[teacher.name] += teacher.failures
            self.teacher_latency[teacher.name] = (
                self.teacher_latency.get(teacher.name, 0.0) + teacher.latency_s
            )
            self.teacher_selected[teacher.name] += teacher.selected

    def render(self) -> str:
        lines = [
            "# HELP cord_requests_total HTTP requests by route and status.",
            "# TYPE cord_requests_total counter",
            *(
                f'cord_requests_total{{route="{route}",status="{status}"}} {count}'
                for (route, status), count in sorted(self.requests.items())
            ),
            "# HELP cord_request_duration_seconds Request latency.",
            "# TYPE cord_request_duration_seconds histogram",
            *(
                f'cord_request_duration_seconds_bucket{{le="{bound}"}} {count}'
                for bound, count in zip(LATENCY_BUCKETS, self.latency_buckets, strict=True)
            ),
            f'cord_request_duration_seconds_bucket{{le="+Inf"}} {self.latency_count}',
            f"cord_request_duration_seconds_sum {self.latency_sum:.6f}",
            f"cord_request_duration_seconds_count {self.latency_count}",
            "# HELP cord_requests_in_flight Chat completions being decoded now.",
            "# TYPE cord_requests_in_flight gauge",
            f"cord_requests_in_flight {self.in_flight}",
            "# HELP cord_unhandled_errors_total Errors that reached the catch-all handler.",
            "# TYPE cord_unhandled_errors_total counter",
            f"cord_unhandled_errors_total {self.unhandled}",
            "# HELP cord_rejected_requests_total Requests refused before routing, by reason.",
            "# TYPE cord_rejected_requests_total counter",
            *(
                f'cord_rejected_requests_total{{reason="{_label(reason)}"}} {count}'
                for reason, count in sorted(self.rejected.items())
            ),
        ]
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


def _per_teacher(name: str, help_text: str, values: Mapping[str, float]) -> list[str]:
    header = [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
    return header + [f'{name}{{teacher="{_label(k)}"}} {v}' for k, v in sorted(values.items())]


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
