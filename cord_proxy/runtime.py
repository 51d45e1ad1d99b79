"""The running configuration: teacher clients built once, and requests turned into decode plans."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from cord_proxy.config import (
    CordConfig,
    EnsembleConfig,
    LimitsConfig,
    ensemble_scorers,
    format_validation_error,
)
from cord_proxy.decoding.beam import BeamSearch, DecodeProgress
from cord_proxy.decoding.options import DecodeOptions
from cord_proxy.decoding.trace import DecodeResult
from cord_proxy.errors import DecodeTimeoutError, InvalidRequestError, ModelNotFoundError
from cord_proxy.protocol import ChatCompletionRequest
from cord_proxy.teachers.base import Message, Teacher
from cord_proxy.teachers.breaker import BreakerRegistry
from cord_proxy.teachers.factory import build_teacher, endpoint_key


@dataclass(frozen=True)
class DecodePlan:
    """Everything one decode needs, resolved from a request and its ensemble."""

    ensemble: str
    conversation: list[Message]
    proposers: list[Teacher]
    scorers: list[Teacher]
    weights: dict[str, float]
    options: DecodeOptions
    reference_answer: str | None
    reasoning_format: Literal["field", "inline"]


class Runtime:
    """Teacher clients for a config, shared by all requests."""

    def __init__(self, config: CordConfig, teachers: Mapping[str, Teacher] | None = None):
        self.config = config
        self.breakers = BreakerRegistry()
        self.teachers: dict[str, Teacher] = (
            dict(teachers)
            if teachers is not None
            else {t.name: build_teacher(t, self.breakers) for t in config.teachers}
        )

    def breaker_states(self) -> dict[str, str]:
        """Each configured teacher's circuit breaker state: closed, open or half_open."""
        return {
            t.name: self.breakers.get(
                endpoint_key(t), t.breaker_threshold, t.breaker_cooldown
            ).state
            for t in self.config.teachers
        }

    @property
    def ensemble_names(self) -> list[str]:
        return [e.name for e in self.config.ensembles]

    async def aclose(self) -> None:
        for teacher in self.teachers.values():
            await teacher.aclose()

    def plan(self, request: ChatCompletionRequest) -> DecodePlan:
        ensemble = self._ensemble(request.model)
        cord = request.cord
        proposers = self._pick(cord.teachers or ensemble.teachers, "cord.teachers")
        proposers = [t for t in proposers if t.can_propose]
        if not proposers:
            raise InvalidRequestError("no chosen teacher can propose steps", param="cord.teachers")
        scorers = self._pick(
            cord.scorers or ensemble_scorers(self.config, ensemble), "cord.scorers"
        )
        unable = [t.name for t in scorers if not t.can_score]
        if unable:
            raise InvalidRequestError(
                f"teacher '{unable[0]}' cannot score (propose-only); choose scorers that can",
                param="cord.scorers",
            )
        options = self._options(ensemble, request)
        check_cost(self.config.limits, options, len(proposers), len(scorers))
        return DecodePlan(
            ensemble=ensemble.name,
            conversation=[Message(role=m.role, content=m.text()) for m in request.messages],
            proposers=proposers,
            scorers=scorers,
            weights=dict(ensemble.scorer_weights),
            options=options,
            reference_answer=cord.reference_answer,
            reasoning_format=cord.reasoning_format,
        )

    def _ensemble(self, name: str) -> EnsembleConfig:
        ensemble = self.config.ensemble(name)
        if ensemble is None:
            raise ModelNotFoundError(
                f"The model '{name}' does not exist. Available ensembles: "
                + ", ".join(self.ensemble_names),
                param="model",
            )
        return ensemble

    def _pick(self, names: list[str] | tuple[str, ...], param: str) -> list[Teacher]:
        unknown = [n for n in names if n not in self.teachers]
        if unknown:
            raise InvalidRequestError(f"unknown teacher '{unknown[0]}'", param=param)
        return [self.teachers[n] for n in dict.fromkeys(names)]

    def _options(self, ensemble: EnsembleConfig, request: ChatCompletionRequest) -> DecodeOptions:
        updates: dict[str, Any] = {
            key: value
            for key, value in request.cord.model_dump(
                exclude={"reference_answer", "teachers", "scorers", "reasoning_format"}
            ).items()
            if value is not None
        }
        updates.update(n=request.n, answer_stop=request.stop_strings())
        if request.seed is not None:
            updates["seed"] = request.seed
        if request.temperature is not None:
            updates["temperature"] = request.temperature
        if request.top_p is not None:
            updates["top_p"] = request.top_p
        merged = {**ensemble.defaults.model_dump(), **updates}
        merged.update(_split_limit(request.completion_limit(), merged))
        try:
            options = DecodeOptions.model_validate(merged)
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
        return options


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


def _split_limit(limit: int | None, options: dict[str, Any]) -> dict[str, int]:
    """Share `max_completion_tokens` between thinking and answer, in their budgets' ratio."""
    thinking, answer = int(options["thinking_budget"]), int(options["answer_budget"])
    if limit is None or limit >= thinking + answer:
        return {}
    share = max(1, round(limit * thinking / (thinking + answer)))
    share = min(share, limit - 1) if limit > 1 else 1
    return {"thinking_budget": share, "answer_budget": max(1, limit - share)}


async def run_decode(
    plan: DecodePlan,
    timeout: float,
    on_progress: Callable[[DecodeProgress], None] | None = None,
) -> DecodeResult:
    """The plan's decode, failing with a 504 past the server's request timeout."""
    search = BeamSearch(
        plan.conversation,
        plan.proposers,
        plan.scorers,
        plan.options,
        reference_answer=plan.reference_answer,
        scorer_weights=plan.weights,
        on_progress=on_progress,
    )
    try:
        async with asyncio.timeout(timeout):
            return await search.run()
    except TimeoutError:
        raise DecodeTimeoutError(f"the decode did not finish within {timeout:g} s") from None
