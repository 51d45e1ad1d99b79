"""Failed teacher calls of one decode, and the teachers and scorers retired because of them.

A proposer whose calls fail `DROP_AFTER_FAILURES` times in a row (each call after its own
retries, teachers/retry.py) is dropped for the rest of the request: it is sent no more
calls, and `DecodeResult.dropped` names it. A failed scoring call counts once, against the
endpoint and model that failed (the scorer's `score_identity`), and never drops a proposer;
an endpoint whose scoring calls fail that often in a row scores no more in this decode.
"""

from __future__ import annotations

from collections.abc import Mapping

from cord_proxy.decoding.trace import StepFailure, TeacherUsage
from cord_proxy.errors import TEACHER_TIMEOUT, TeacherError
from cord_proxy.teachers.base import Teacher

DROP_AFTER_FAILURES = 2
ROUND_TIMEOUT = "round_timeout"
EMPTY_PROPOSAL = "empty_proposal"
ANSWER_FORMAT = "answer_format"
TIMEOUT_CODES = frozenset({TEACHER_TIMEOUT, ROUND_TIMEOUT})


class FailureLog:
    def __init__(self, usage: Mapping[str, TeacherUsage]):
        self.usage = usage
        self.records: list[StepFailure] = []
        self.dropped: list[str] = []
        self._strikes: dict[str, int] = {}
        self._score_strikes: dict[str, int] = {}

    def is_dropped(self, name: str) -> bool:
        return name in self.dropped

    def can_score(self, scorer: Teacher) -> bool:
        """Scoring is retired by scoring failures only: a dropped proposer may still score."""
        return self._score_strikes.get(scorer.score_identity, 0) < DROP_AFTER_FAILURES

    def proposer_failed(self, step: int, teacher: str, role: str, error: TeacherError) -> None:
        self._record(step, teacher, role, error.message, error.code)
        self._strikes[teacher] = self._strikes.get(teacher, 0) + 1
        if self._strikes[teacher] >= DROP_AFTER_FAILURES and teacher not in self.dropped:
            self.dropped.append(teacher)

    def proposer_succeeded(self, teacher: str) -> None:
        self._strikes[teacher] = 0

    def scorer_failed(self, step: int, scorer: Teacher, error: TeacherError) -> None:
        self._record(step, scorer.name, "score", error.message, error.code)
        identity = scorer.score_identity
        self._score_strikes[identity] = self._score_strikes.get(identity, 0) + 1

    def scorer_succeeded(self, scorer: Teacher) -> None:
        self._score_strikes[scorer.score_identity] = 0

    def empty_proposal(self, step: int, teacher: str) -> None:
        """A proposal with no text that does not close the thinking: recorded, not a strike."""
        message = f"teacher '{teacher}': proposed an empty step"
        self._record(step, teacher, "propose", message, EMPTY_PROPOSAL)

    def answer_rejected(self, step: int, teacher: str, problem: str) -> None:
        """An answer that does not match the request's response_format: that teacher's failure
        for this trace (the next answer teacher tries), recorded but not a strike: the call
        itself worked."""
        message = f"teacher '{teacher}': the answer does not match the response_format: {problem}"
        self._record(step, teacher, "answer", message, ANSWER_FORMAT)

    def cut(self, step: int, teacher: str, role: str, deadline: float) -> None:
        """A call cancelled at the round deadline: a failure of that teacher, as a timeout."""
        message = f"teacher '{teacher}': cut at the round deadline ({deadline:g} s)"
        self._record(step, teacher, role, message, ROUND_TIMEOUT)

    def step_errors(self, step: int) -> str:
        return "; ".join(f.error for f in self.records if f.step == step) or "no proposal"

    def only_timeouts(self, step: int) -> bool:
        return self.only_codes(step, TIMEOUT_CODES)

    def only_codes(self, step: int, wanted: frozenset[str]) -> bool:
        """Whether the step failed, and every one of its failures has a code in `wanted`."""
        codes = [f.code for f in self.records if f.step == step]
        return bool(codes) and all(code in wanted for code in codes)

    def role_errors(self, role: str) -> str:
        return "; ".join(f.error for f in self.records if f.role == role) or "no error recorded"

    def _record(self, step: int, teacher: str, role: str, message: str, code: str | None) -> None:
        self.usage[teacher].failures += 1
        self.records.append(
            StepFailure.model_validate(
                {"step": step, "teacher": teacher, "role": role, "error": message, "code": code}
            )
        )
