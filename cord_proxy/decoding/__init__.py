"""The CoRD decoding engine, usable without HTTP.

result = await cord_proxy.decode("What is 2 + 3?", teachers, DecodeOptions(beam_width=2),
                                 reference_answer="5")
print(result.best.reasoning, result.best.answer)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cord_proxy.decoding.beam import BeamSearch, DecodeProgress, ProgressCallback
from cord_proxy.decoding.options import DecodeOptions
from cord_proxy.decoding.trace import DecodeResult, FinishedTrace, StepRecord
from cord_proxy.errors import InvalidRequestError, TeacherCapabilityError
from cord_proxy.teachers.base import Message, Teacher

__all__ = [
    "DecodeOptions",
    "DecodeProgress",
    "DecodeResult",
    "FinishedTrace",
    "StepRecord",
    "decode",
]


async def decode(
    question: str | Sequence[Message],
    teachers: Sequence[Teacher],
    options: DecodeOptions | None = None,
    *,
    scorers: Sequence[Teacher] | None = None,
    reference_answer: str | None = None,
    scorer_weights: Mapping[str, float] | None = None,
    on_progress: ProgressCallback | None = None,
) -> DecodeResult:
    """Write one reasoning trace by collaborative step-wise multi-teacher decoding.

    `teachers` propose steps; `scorers` (default: every teacher that can score) rescore
    them. With `reference_answer`, candidates are scored by the predictive probability of
    that answer (METHOD.md, Eq. 3); without it, by the other teachers' likelihood of the step.
    """
    conversation = (
        [Message(role="user", content=question)] if isinstance(question, str) else list(question)
    )
    proposers = [t for t in teachers if t.can_propose]
    chosen_scorers = list(scorers) if scorers is not None else [t for t in teachers if t.can_score]
    _check_roles(proposers, chosen_scorers)
    if reference_answer is not None and not reference_answer.strip():
        raise InvalidRequestError("reference_answer must not be blank", param="reference_answer")
    search = BeamSearch(
        conversation,
        proposers,
        chosen_scorers,
        options or DecodeOptions(),
        reference_answer=reference_answer,
        scorer_weights=scorer_weights,
        on_progress=on_progress,
    )
    return await search.run()


def _check_roles(proposers: Sequence[Teacher], scorers: Sequence[Teacher]) -> None:
    if not proposers:
        raise TeacherCapabilityError("(ensemble)", "no teacher can propose steps")
    unable = [s.name for s in scorers if not s.can_score]
    if unable:
        raise TeacherCapabilityError(
            unable[0], "cannot score (it has no score role or no logprobs)"
        )
    if not scorers:
        raise TeacherCapabilityError("(ensemble)", "no teacher can score candidates")
