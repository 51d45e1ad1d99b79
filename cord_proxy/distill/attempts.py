"""One problem's attempts: engine errors as `ProblemFailed`, transient ones retried."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from cord_proxy.decoding.trace import DecodeResult
from cord_proxy.distill.errors import ProblemFailed
from cord_proxy.errors import CordError, DecodeError, DecodeTimeoutError, TeacherError
from cord_proxy.runtime import ChatJob, run_job

T = TypeVar("T")


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
