"""One unit of work's attempts: a distill problem, a batch line.

`decode_or_fail` turns the engine's errors into `ProblemFailed` (transient for teachers and
timeouts); `with_retries` retries transient failures with exponential backoff. Shared by
``distill`` (and ``ray``) and ``batches``, so that neither stands on the other.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from cord_proxy.decoding.trace import DecodeResult
from cord_proxy.errors import CordError, DecodeError, DecodeTimeoutError, TeacherError
from cord_proxy.runtime import ChatJob, run_job

T = TypeVar("T")


class ProblemFailed(Exception):
    """One unit of work failed; `transient` failures are retried. `status`: its HTTP status."""

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


async def decode_or_fail(job: ChatJob, timeout_s: float) -> DecodeResult:
    """The job's decode; a failure as `ProblemFailed`, transient for teachers and timeouts."""
    try:
        return await run_job(job, timeout_s)
    except DecodeTimeoutError as error:
        raise ProblemFailed(
            f"no trace within {timeout_s:g} s", "timeout", transient=True, status=error.status
        ) from None
    except (TeacherError, DecodeError) as error:
        raise ProblemFailed(
            error.message, type(error).__name__, transient=True, status=error.status
        ) from None
    except CordError as error:
        raise ProblemFailed(
            error.message, type(error).__name__, transient=False, status=error.status
        ) from None


async def with_retries(
    call: Callable[[], Awaitable[T]], retries: int, backoff_s: float
) -> tuple[T | None, ProblemFailed | None, int]:
    """``(result, None, attempts)``, or ``(None, failure, attempts)`` once a failure is not
    transient or `retries` retries are spent (exponential backoff between attempts)."""
    attempts = 0
    while True:
        attempts += 1
        try:
            return await call(), None, attempts
        except ProblemFailed as error:
            if not error.transient or attempts > retries:
                return None, error, attempts
        except Exception as error:  # a bug must not lose the run: record it as a failure
            failure = ProblemFailed(
                f"{type(error).__name__}: {error}"[:500], "internal", transient=False
            )
            return None, failure, attempts
        await asyncio.sleep(backoff_s * 2 ** (attempts - 1))
