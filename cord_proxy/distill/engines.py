"""What solves a problem: the decoding engine in this process, or a running cord-proxy.

Either returns the problem's trace record (``data.records``), or raises `ProblemFailed`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

import httpx
from pydantic import ValidationError

from cord_proxy.attempts import ProblemFailed, decode_or_fail
from cord_proxy.completion import completion_id
from cord_proxy.config import CordConfig
from cord_proxy.data.records import record_from_completion, trace_record
from cord_proxy.distill.problems import Problem
from cord_proxy.errors import CordError, format_validation_error
from cord_proxy.protocol import CordOptions
from cord_proxy.runtime import ChatJob, Runtime
from cord_proxy.teachers.base import Message, Teacher
from cord_proxy.teachers.endpoint import bearer_headers

RETRY_STATUSES = (429, 500, 502, 503, 504)
CONNECT_TIMEOUT_S = 10.0


class Engine(Protocol):
    async def solve(self, problem: Problem) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...


def problem_cord(base: dict[str, Any], problem: Problem) -> dict[str, Any]:
    """The run's `cord` options, the problem's own on top, and its reference answer."""
    cord = {**base, **problem.cord}
    if problem.answer is not None:
        cord["reference_answer"] = problem.answer
    return cord


class LocalEngine:
    """The decoding engine in this process, on a config."""

    def __init__(
        self,
        config: CordConfig,
        model: str,
        cord: dict[str, Any],
        timeout_s: float,
        teachers: Mapping[str, Teacher] | None = None,
    ):
        self.runtime = Runtime(config, teachers)
        self.model = model
        self.cord = cord
        self.timeout_s = timeout_s

    async def solve(self, problem: Problem) -> dict[str, Any]:
        job = self.job(problem)
        result = await decode_or_fail(job, self.timeout_s)
        return trace_record(
            completion_id(), job.ensemble, job.decode, result, problem_id=problem.id
        )

    def job(self, problem: Problem) -> ChatJob:
        """The problem's job on the engine's ensemble; bad options fail the problem."""
        conversation = [Message(role=m["role"], content=m["content"]) for m in problem.messages]
        try:
            cord = CordOptions.model_validate(problem_cord(self.cord, problem))
            return self.runtime.job(
                self.model,
                conversation,
                cord.overrides(),
                teachers=cord.teachers,
                scorers=cord.scorers,
                reference_answer=cord.reference_answer,
                reasoning_format=cord.reasoning_format,
            )
        except ValidationError as error:
            problems = (f"cord.{p}" for p in format_validation_error(error))
            raise ProblemFailed(
                "invalid request: " + "; ".join(problems), "invalid_request", transient=False
            ) from None
        except CordError as error:
            raise ProblemFailed(error.message, type(error).__name__, transient=False) from None

    async def aclose(self) -> None:
        await self.runtime.aclose()


class ProxyEngine:
    """A running cord-proxy, over plain HTTP (``POST /v1/chat/completions``).

    It asks for ``include_candidates``, whose answer carries the search tree that the record
    keeps (``search``, ``path``); each step's own copy of its round's candidates is left out
    of the record unless the run's options asked for them, as the in-process engine does.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        cord: dict[str, Any],
        timeout_s: float,
        api_key: str | None = None,
    ):
        self.client = httpx.AsyncClient(
            base_url=base_url,
            headers=bearer_headers(api_key),
            timeout=httpx.Timeout(timeout_s, connect=CONNECT_TIMEOUT_S),
        )
        self.model = model
        self.cord = cord

    async def solve(self, problem: Problem) -> dict[str, Any]:
        cord = problem_cord(self.cord, problem)
        started = time.time()
        completion = await self._complete(problem, {**cord, "include_candidates": True})
        requested = {
            "ensemble": self.model,
            "cord": {k: v for k, v in cord.items() if k != "reference_answer"},
        }
        try:
            if cord.get("include_candidates") is not True:
                _drop_step_candidates(completion)
            return record_from_completion(
                completion,
                problem_id=problem.id,
                messages=problem.messages,
                reference_answer=problem.answer,
                requested=requested,
                started_at=started,
            )
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise _malformed(error) from None

    async def _complete(self, problem: Problem, cord: dict[str, Any]) -> Any:
        """The proxy's chat completion for `problem`, as parsed JSON."""
        body = {
            "model": self.model,
            "messages": problem.messages,
            "cord": cord,
            "metadata": {"cord_problem_id": problem.key[:512]},
        }
        try:
            answer = await self.client.post("/chat/completions", json=body)
        except httpx.TimeoutException:
            raise ProblemFailed(
                "the proxy did not answer in time", "timeout", transient=True
            ) from None
        except httpx.HTTPError as error:
            raise ProblemFailed(
                f"cannot reach the proxy: {error!r}"[:300], "unreachable", transient=True
            ) from None
        if answer.status_code != 200:
            raise ProblemFailed(
                _error_message(answer),
                f"http_{answer.status_code}",
                transient=answer.status_code in RETRY_STATUSES,
            )
        try:
            return answer.json()
        except ValueError as error:
            raise _malformed(error) from None

    async def aclose(self) -> None:
        await self.client.aclose()


def _drop_step_candidates(completion: dict[str, Any]) -> None:
    """The completion without its steps' candidates (the record's ``search`` holds them)."""
    for step in (completion.get("cord") or {}).get("steps", []):
        step.pop("candidates", None)


def _malformed(error: Exception) -> ProblemFailed:
    return ProblemFailed(
        f"malformed completion from the proxy: {error!r}"[:300], "protocol", transient=False
    )


def _error_message(answer: httpx.Response) -> str:
    try:
        error = answer.json()["error"]
        return f"{answer.status_code} {error.get('type')}: {error.get('message')}"[:500]
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"{answer.status_code}: {answer.text[:300]}"
