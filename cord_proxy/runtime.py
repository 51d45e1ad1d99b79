"""The running configuration: the teacher registry, requests turned into jobs, and readiness."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from cord_proxy.concurrency import gather_or_cancel
from cord_proxy.config import (
    CordConfig,
    EnsembleConfig,
    LimitsConfig,
    TeacherConfig,
    ensemble_scorers,
)
from cord_proxy.decoding import DecodeJob, ProgressCallback, decode
from cord_proxy.decoding.answer_format import schema_of
from cord_proxy.decoding.options import DecodeOptions
from cord_proxy.decoding.trace import DecodeResult
from cord_proxy.errors import (
    CordError,
    DecodeTimeoutError,
    InvalidRequestError,
    ModelNotFoundError,
    format_validation_error,
)
from cord_proxy.protocol import ChatCompletionRequest
from cord_proxy.redact import excerpt
from cord_proxy.roles import GapKind, role_gaps
from cord_proxy.teachers._client import TeacherClient
from cord_proxy.teachers.base import CallExtras, Message, Teacher
from cord_proxy.teachers.breaker import BreakerRegistry, CircuitBreaker
from cord_proxy.teachers.endpoint import listed_models
from cord_proxy.teachers.factory import build_teacher, endpoint_key
from cord_proxy.teachers.shared_calls import SharedCalls

ReasoningFormat = Literal["field", "inline"]
log = logging.getLogger(__name__)

READY_TIMEOUT_S = 5.0
READY_CACHE_S = 5.0
# a request's role gaps, as 400s that name the field
ROLE_GAPS: dict[GapKind, str] = {
    "no_proposer": "no chosen teacher can propose steps",
    "cannot_score": "teacher '{teacher}' cannot score (propose-only); choose scorers that can",
    "no_scorer": "no chosen teacher can score",
}


@dataclass(frozen=True)
class ChatJob:
    """One chat request resolved against its ensemble: the decode, and how to answer it."""

    ensemble: str
    decode: DecodeJob
    reasoning_format: ReasoningFormat = "field"
    stream: bool = False
    include_usage: bool = False


@dataclass(frozen=True)
class Readiness:
    """Ready when every teacher answers and no teacher's circuit breaker is open."""

    teachers: dict[str, bool]
    breakers: dict[str, str]

    @property
    def ready(self) -> bool:
        return all(self.teachers.values()) and "open" not in self.breakers.values()


class Reachability:
    """Teacher reachability, checked at most once in each window of `cache_s` seconds.

    Concurrent callers share one check (`SharedCalls`), so a burst of probes makes one round
    of calls; the answer is kept for the rest of its window.
    """

    def __init__(
        self,
        teachers: tuple[TeacherConfig, ...],
        cache_s: float = READY_CACHE_S,
        timeout_s: float = READY_TIMEOUT_S,
    ):
        self.teachers = teachers
        self.cache_s = cache_s
        self.timeout_s = timeout_s
        self._checks: SharedCalls[dict[str, bool]] = SharedCalls(1, lambda _: 1)  # keep one

    async def get(self) -> dict[str, bool]:
        window = int(time.monotonic() // self.cache_s)
        return await self._checks.call(window, self._check)

    async def aclose(self) -> None:
        await self._checks.aclose()

    async def _check(self) -> dict[str, bool]:
        checks = await gather_or_cancel(*(self._reachable(t) for t in self.teachers))
        return {t.name: ok for t, ok in zip(self.teachers, checks, strict=True)}

    async def _reachable(self, teacher: TeacherConfig) -> bool:
        """A teacher with an endpoint answers its model list; a provider-only one is up."""
        if teacher.base_url is None:
            return True
        return await listed_models(teacher, timeout=self.timeout_s) is not None


class Runtime:
    """Teacher clients for a config, shared by all requests."""

    def __init__(self, config: CordConfig, teachers: Mapping[str, Teacher] | None = None):
        self.config = config
        self.breakers = BreakerRegistry()
        self.reachability = Reachability(config.teachers)
        self.teachers: dict[str, Teacher] = (
            dict(teachers)
            if teachers is not None
            else {t.name: build_teacher(t, self.breakers) for t in config.teachers}
        )
        for ensemble in config.ensembles:
            self.breakers.group(self._proposer_breakers(ensemble))
        # USD per million tokens of the teachers with a configured price (every job's `prices`)
        self.prices: dict[str, float] = {
            t.name: t.cost_per_million_tokens
            for t in config.teachers
            if t.cost_per_million_tokens is not None
        }

    def _proposer_breakers(self, ensemble: EnsembleConfig) -> list[CircuitBreaker]:
        """The breakers of an ensemble's proposers: when all are open, each lets a probe call
        through rather than refuse every request at once (panic mode, teachers/breaker.py)."""
        found: list[CircuitBreaker] = []
        for name in ensemble.teachers:
            teacher = self.teachers.get(name)
            if isinstance(teacher, TeacherClient) and teacher.can_propose:
                found.append(teacher.breaker)
        return found

    def breaker_states(self) -> dict[str, str]:
        """Each configured teacher's circuit breaker state: closed, open or half_open."""
        return {
            t.name: self.breakers.get(
                endpoint_key(t), t.breaker_threshold, t.breaker_cooldown
            ).state
            for t in self.config.teachers
        }

    async def readiness(self) -> Readiness:
        return Readiness(await self.reachability.get(), self.breaker_states())

    @property
    def ensemble_names(self) -> list[str]:
        return [e.name for e in self.config.ensembles]

    async def aclose(self) -> None:
        for teacher in self.teachers.values():
            await teacher.aclose()
        for breaker in self.breakers.by_endpoint.values():
            await breaker.aclose()
        await self.reachability.aclose()

    def job_for_request(self, request: ChatCompletionRequest) -> ChatJob:
        """The job of a chat completion request."""
        cord = request.cord
        return self.job(
            request.model,
            [Message(role=m.role, content=m.text()) for m in request.messages],
            {**self._effort_budget(request), **request.overrides()},
            completion_limit=request.completion_limit(),
            answer_limit=request.answer_limit(),
            teachers=cord.teachers,
            scorers=cord.scorers,
            reference_answer=cord.reference_answer,
            reasoning_format=cord.reasoning_format,
            stream=bool(request.stream),
            include_usage=bool(request.stream_options and request.stream_options.include_usage),
            extras=request.call_extras(),
            recorded=request.recorded(),
            template_kwargs=request.chat_template_kwargs,
        )

    def _effort_budget(self, request: ChatCompletionRequest) -> dict[str, int]:
        """The thinking budget `reasoning_effort` sets, from the ensemble's levels."""
        effort = request.reasoning_effort
        if effort is None:
            return {}
        if effort == "none":
            raise InvalidRequestError(
                "reasoning_effort 'none' asks for no reasoning, and a CoRD trace is reasoning: "
                "use 'minimal' for the shortest",
                param="reasoning_effort",
            )
        budgets = self.ensemble(request.model).reasoning_budgets
        return {"thinking_budget": getattr(budgets, effort)}

    def job(
        self,
        ensemble_name: str,
        conversation: Sequence[Message],
        overrides: Mapping[str, Any] | None = None,
        *,
        teachers: Sequence[str] | None = None,
        scorers: Sequence[str] | None = None,
        reference_answer: str | None = None,
        reasoning_format: ReasoningFormat = "field",
        completion_limit: int | None = None,
        answer_limit: int | None = None,
        stream: bool = False,
        include_usage: bool = False,
        extras: CallExtras | None = None,
        recorded: Mapping[str, Any] | None = None,
        template_kwargs: Mapping[str, Any] | None = None,
    ) -> ChatJob:
        """A job on an ensemble: its teachers (or the chosen ones) and its default options
        with `overrides` (decoding option name -> value) on top, within the cost caps.

        `answer_limit` (``max_tokens``) caps the answer; `completion_limit`
        (``max_completion_tokens``) is then shared between the thinking and the answer
        budgets, in their ratio. `extras` go with proposal calls, `recorded` into the dataset
        record, and `template_kwargs` to the chat templates of the teachers that render one
        (proposals and scoring alike).
        """
        ensemble = self.ensemble(ensemble_name)
        proposers, chosen_scorers = self._teachers(ensemble, teachers, scorers)
        extras = extras or CallExtras()
        _check_logprobs(extras, proposers)
        if extras.response_format and extras.response_format.get("type") == "json_schema":
            schema_of(extras.response_format)  # a schema that is none: 400 before any decode
        if template_kwargs:
            proposers, chosen_scorers = _with_template_kwargs(
                template_kwargs, proposers, chosen_scorers
            )
        options = _options(ensemble, overrides or {}, completion_limit, answer_limit)
        check_cost(self.config.limits, options, len(proposers), len(chosen_scorers))
        job = DecodeJob(
            tuple(conversation),
            tuple(proposers),
            tuple(chosen_scorers),
            options,
            reference_answer,
            dict(ensemble.scorer_weights),
            extras=extras,
            recorded=dict(recorded or {}),
            prices=self.prices,
        )
        return ChatJob(ensemble.name, job, reasoning_format, stream, include_usage)

    def _teachers(
        self,
        ensemble: EnsembleConfig,
        teachers: Sequence[str] | None,
        scorers: Sequence[str] | None,
    ) -> tuple[list[Teacher], list[Teacher]]:
        proposers = self._pick(teachers or ensemble.teachers, "cord.teachers")
        chosen = self._pick(scorers or ensemble_scorers(self.config, ensemble), "cord.scorers")
        gaps = role_gaps([t.can_propose for t in proposers], {t.name: t.can_score for t in chosen})
        if gaps:
            raise InvalidRequestError(gaps[0].said(ROLE_GAPS), param=f"cord.{gaps[0].field}")
        return [t for t in proposers if t.can_propose], chosen

    def ensemble(self, name: str) -> EnsembleConfig:
        """The ensemble called `name`; `ModelNotFoundError` where there is none."""
        ensemble = self.config.ensemble(name)
        if ensemble is None:
            raise ModelNotFoundError(
                f"The model '{name}' does not exist. Available ensembles: "
                + ", ".join(self.ensemble_names),
                param="model",
            )
        return ensemble

    def _pick(self, names: Sequence[str], param: str) -> list[Teacher]:
        unknown = [n for n in names if n not in self.teachers]
        if unknown:
            raise InvalidRequestError(f"unknown teacher '{unknown[0]}'", param=param)
        return [self.teachers[n] for n in dict.fromkeys(names)]


def _check_logprobs(extras: CallExtras, proposers: Sequence[Teacher]) -> None:
    """Answer log-probabilities need answer teachers (every proposer) that give them."""
    if extras.logprobs is None:
        return
    lacking = [t.name for t in proposers if not getattr(t, "gives_logprobs", False)]
    if lacking:
        raise InvalidRequestError(
            f"logprobs: teacher '{lacking[0]}' writes answers and cannot give their "
            "log-probabilities (a hosted teacher); choose teachers that can with cord.teachers",
            param="logprobs",
        )


def _with_template_kwargs(
    kwargs: Mapping[str, Any], proposers: Sequence[Teacher], scorers: Sequence[Teacher]
) -> tuple[list[Teacher], list[Teacher]]:
    """The teachers as views that render their chat template with the request's `kwargs`
    (teachers that render none, hosted ones, stay as they are); one view per teacher."""
    views: dict[str, Teacher] = {}

    def view(teacher: Teacher) -> Teacher:
        if teacher.name not in views:
            made = getattr(teacher, "with_prompt_fields", None)
            views[teacher.name] = made({"chat_template_kwargs": dict(kwargs)}) if made else teacher
        return views[teacher.name]

    return [view(t) for t in proposers], [view(t) for t in scorers]


def _options(
    ensemble: EnsembleConfig,
    overrides: Mapping[str, Any],
    completion_limit: int | None,
    answer_limit: int | None = None,
) -> DecodeOptions:
    try:
        options = ensemble.defaults.overridden(overrides)
    except ValidationError as error:
        raise InvalidRequestError(
            "invalid cord option: " + "; ".join(format_validation_error(error)), param="cord"
        ) from None
    if options.n > options.beam_width:
        raise InvalidRequestError(
            f"n={options.n} exceeds beam_width={options.beam_width}: "
            "a decode returns at most beam_width finished traces",
            param="n",
        )
    if answer_limit is not None and answer_limit < options.answer_budget:
        options = options.overridden({"answer_budget": answer_limit})
    return options.overridden(_split_limit(completion_limit, options))


def check_cost(limits: LimitsConfig, options: DecodeOptions, proposers: int, scorers: int) -> None:
    """Refuse a request whose worst case is over the configured caps, naming the cap."""
    per_step = options.beam_width * options.proposals_per_teacher * proposers
    if per_step > limits.max_candidates_per_step:
        raise InvalidRequestError(
            f"beam_width x proposals_per_teacher x teachers = {per_step} candidates a step, over "
            f"the limit of {limits.max_candidates_per_step} ([limits] max_candidates_per_step)",
            param="cord.beam_width",
            code="cost_limit",
        )
    calls = options.max_steps * per_step * (1 + scorers) + options.beam_width * proposers
    if calls > limits.max_teacher_calls:
        raise InvalidRequestError(
            f"up to {calls} teacher calls (max_steps x candidates x (1 + scorers) + answers), "
            f"over the limit of {limits.max_teacher_calls} ([limits] max_teacher_calls)",
            param="cord.max_steps",
            code="cost_limit",
        )


def _split_limit(limit: int | None, options: DecodeOptions) -> dict[str, int]:
    """Share `max_completion_tokens` between thinking and answer, in their budgets' ratio."""
    thinking, answer = options.thinking_budget, options.answer_budget
    if limit is None or limit >= thinking + answer:
        return {}
    share = max(1, round(limit * thinking / (thinking + answer)))
    share = min(share, limit - 1) if limit > 1 else 1
    return {"thinking_budget": share, "answer_budget": max(1, limit - share)}


async def run_job(
    job: ChatJob, timeout: float, on_progress: ProgressCallback | None = None
) -> DecodeResult:
    """The job's decode, failing with a 504 past `timeout` seconds; a failure is logged with
    its reason (every route's decode runs here)."""
    try:
        async with asyncio.timeout(timeout):
            return await decode(job.decode, on_progress)
    except TimeoutError:
        late = DecodeTimeoutError(f"the decode did not finish within {timeout:g} s")
        _log_failed(job, late)
        raise late from None
    except CordError as error:
        _log_failed(job, error)
        raise


def _log_failed(job: ChatJob, error: CordError) -> None:
    log.warning(
        "decode failed",
        extra={
            "ensemble": job.ensemble,
            "status": error.status,
            "code": error.code,
            "error": excerpt(error.message),
        },
    )
