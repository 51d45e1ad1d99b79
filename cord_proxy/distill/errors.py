"""How distill fails: the whole run (it cannot start) or one problem (recorded, maybe retried)."""

from __future__ import annotations

import time
from typing import Any


class DistillError(Exception):
    """The run cannot start (bad options, unreachable teacher or proxy); exit status 2."""


class ProblemFailed(Exception):
    """One problem failed; `transient` failures are retried. `status`: its HTTP status."""

    def __init__(self, message: str, kind: str, transient: bool, status: int = 500):
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.transient = transient
        self.status = status

    def record(self, problem_id: Any, line: int | None, attempts: int) -> dict[str, Any]:
        """The failure as a line of the failures file."""
        return {
            "id": problem_id,
            "line": line,
            "error": self.message,
            "kind": self.kind,
            "attempts": attempts,
            "at": round(time.time(), 3),
        }
