"""The teacher interface: the only thing the decoding driver knows about a teacher.

This is the step contract: a teacher continues the partial assistant message, whose
reasoning opens with `THINK_OPEN` and closes with `THINK_CLOSE`, one step at a time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel

from cord_proxy.errors import TeacherError

THINK_OPEN = "<think>\n"
THINK_CLOSE = "</think>"

FinishReason = Literal["stop", "length", "closed"]


class Message(BaseModel):
    """One chat turn of the conversation being continued."""

    role: Literal["system", "user", "assistant", "developer"]
    content: str


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token's log-probability, and the most likely alternatives at its place
    (`top`: token, log-probability, best first), as the teacher that wrote it read them."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class CallExtras:
    """What a request adds to a proposal call beyond the step contract.

    `sampling` (``frequency_penalty``, ``presence_penalty``, ``logit_bias``, ``top_k``,
    ``min_p``, ``repetition_penalty``) goes with every proposal and answer call, never with a
    scoring read. `response_format` (OpenAI's object) and `logprobs` (None: none; 0: each
    token's own; k: and the k most likely alternatives) go with answer calls only.
    """

    sampling: Mapping[str, Any] = field(default_factory=dict)
    response_format: Mapping[str, Any] | None = None
    logprobs: int | None = None

    @property
    def empty(self) -> bool:
        return not self.sampling and self.response_format is None and self.logprobs is None

    def for_steps(self) -> CallExtras:
        """The part that goes with a step's proposals: the sampling fields alone."""
        return CallExtras(sampling=self.sampling)


@dataclass(frozen=True)
class Proposal:
    """One continuation of the partial assistant message.

    `finish_reason` is ``stop`` when a stop string ended it (`stop_string` says which),
    ``closed`` when the teacher ended its output (end of sequence), ``length`` when it ran
    into `max_tokens`. `context_full` says that the teacher's context, not the step budget,
    cut it (or left no room for it at all).
    """

    text: str
    finish_reason: FinishReason
    tokens: int
    stop_string: str | None = None
    prompt_tokens: int = 0
    cost_usd: float = 0.0
    context_full: bool = False
    logprobs: tuple[TokenLogprob, ...] | None = None


ScoreMethodName = Literal["cached", "prompt_logprobs", "echo", "scripted"]


@dataclass(frozen=True)
class SpanScore:
    """Log-probabilities of exactly the tokens of a target span after a prefix.

    `token_ids` are the span's ids in the teacher's own tokenizer, `context_tokens` the
    number of prompt tokens before it, and `method` how the values were read.
    """

    tokens: tuple[str, ...]
    logprobs: tuple[float, ...]
    context_tokens: int = 0
    token_ids: tuple[int, ...] = ()
    method: ScoreMethodName = "scripted"

    @property
    def mean_logprob(self) -> float:
        return sum(self.logprobs) / len(self.logprobs) if self.logprobs else 0.0


@runtime_checkable
class Teacher(Protocol):
    """One named model at one endpoint with its own sampling settings and roles."""

    @property
    def name(self) -> str: ...

    @property
    def can_propose(self) -> bool: ...

    @property
    def can_score(self) -> bool: ...

    @property
    def score_identity(self) -> str:
        """Teachers with the same identity give the same scores (same model, same endpoint)."""
        ...

    async def propose(
        self,
        conversation: Sequence[Message],
        prefix: str,
        *,
        n: int,
        stop: Sequence[str],
        max_tokens: int,
        seed: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        reserve: int = 0,
        extras: CallExtras | None = None,
    ) -> list[Proposal]:
        """`extras` is passed only when the request set some (`CallExtras.empty` is never
        sent), so a teacher that takes none keeps working for requests that set none."""
        ...

    async def score(
        self, conversation: Sequence[Message], prefix: str, target: str
    ) -> SpanScore: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class BatchScorer(Protocol):
    """A teacher that scores many spans in one batch (decoding/reading.py)."""

    async def score_many(
        self, conversation: Sequence[Message], questions: Sequence[tuple[str, str]]
    ) -> list[SpanScore | TeacherError]:
        """Each (prefix, target)'s score, or the teacher's error for it, in order."""
        ...
