"""Provenance records: what every step, candidate, teacher and trace of a decode did."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

ClosedBy = Literal["think", "eos", "budget", "context", "max_steps"]
ScoreMode = Literal["reference", "step"]


class ScorerPart(BaseModel):
    """One scorer's contribution to a candidate's score."""

    scorer: str
    mean_logprob: float
    tokens: int = Field(description="how many target tokens the scorer read")
    weight: float
    method: str | None = Field(None, description="how the log-probabilities were read")
    centred: float | None = Field(
        None,
        description="step mode: the reading less this scorer's mean over the round's readings",
    )


class CandidateRecord(BaseModel):
    """One proposed step, merged over the teachers that wrote the same text."""

    parent: int = Field(description="index of the beam it extends, in that step's beam")
    child: int | None = Field(
        None, description="index of the beam it became in the next round; null when dropped"
    )
    text: str = Field(description="the driver's opening and the teacher's body")
    step_text: str = Field(
        "",
        description="exactly what the trace gains with it (the segmenter's join applied); "
        "empty when it closes the thinking with nothing",
    )
    proposers: list[str]
    trainable: bool = Field(True, description="at least one of its proposers is trainable")
    score: float | None = Field(description="null when no scorer could score it")
    log_score: float | None
    scorers: list[ScorerPart]
    self_scored: bool = Field(
        False, description="read only by its own proposers' models (no other model could)"
    )
    tokens: int
    finish_reason: str
    selected: bool = Field(False, description="it became a beam (`child` is set)")
    closes: ClosedBy | None = Field(
        None, description="how the trace ends when this step is chosen; null when it goes on"
    )


class SearchRound(BaseModel):
    """One round of the search: every candidate it proposed, merged by text under a parent."""

    step: int
    candidates: list[CandidateRecord]


class StepRecord(BaseModel):
    """A step of a trace: its text, who wrote it and how it scored."""

    index: int
    text: str
    proposers: list[str]
    trainable: bool = Field(True, description="at least one of its proposers is trainable")
    score: float
    log_score: float
    scorers: list[ScorerPart]
    self_scored: bool = Field(
        False, description="read only by its own proposers' models (no other model could)"
    )
    tokens: int = Field(description="its text's tokens as the thinking budget counts them")
    candidates: list[CandidateRecord] | None = None


class StepFailure(BaseModel):
    step: int
    teacher: str
    role: Literal["propose", "score", "answer"]
    error: str
    code: str | None = Field(None, description="the error's code, e.g. teacher_timeout")


class TeacherUsage(BaseModel):
    """One teacher's share of a decode.

    `prompt_tokens` and `completion_tokens` are its proposal and answer calls' (as the teacher
    reported them), `score_tokens` its scoring reads' (the context and target tokens of each
    read). `cost_usd`: its configured price (``cost_per_million_tokens``) times all three, or,
    for a hosted teacher without one, the sum of litellm's cost of its calls.
    """

    name: str
    proposals: int = 0
    selected: int = 0
    propose_calls: int = 0
    score_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    score_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    failures: int = 0

    @property
    def processed_tokens(self) -> int:
        """Every token the teacher processed: prompt, completion and scoring alike."""
        return self.prompt_tokens + self.completion_tokens + self.score_tokens


class TopLogprob(BaseModel):
    """One of the most likely tokens at an answer token's place."""

    token: str
    logprob: float


class AnswerLogprob(BaseModel):
    """One token of the final answer, as the teacher that wrote it read it: its
    log-probability, and the most likely alternatives at its place (best first)."""

    token: str
    logprob: float
    top: list[TopLogprob] = Field(default_factory=list)


class FinishedTrace(BaseModel):
    """A finished beam: the thinking, the answer and the provenance of every step."""

    reasoning: str
    answer: str
    steps: list[StepRecord]
    score: float
    log_score: float
    closed_by: ClosedBy
    answer_teacher: str
    answer_finish_reason: Literal["stop", "length"]
    reasoning_tokens: int
    answer_tokens: int
    answer_logprobs: list[AnswerLogprob] | None = Field(
        None,
        description="the answer's tokens, when the request asked for logprobs (else null)",
    )
    answer_trainable: bool = Field(True, description="the answer's teacher is trainable")
    path: list[int] = Field(
        default_factory=list,
        description="the beam index after each round: 0 (the root), then each step's `child`",
    )


class RoundTiming(BaseModel):
    """One decoding round: its wall time and its critical path (slowest propose+score)."""

    step: int
    wall_s: float
    critical_s: float
    propose_s: float = Field(
        default=0.0, description="seconds until the last proposal arrived (or was cut)"
    )
    score_s: float = Field(
        default=0.0, description="seconds after that until every candidate was read"
    )
    candidates: int
    scorers_left_out: list[str] = Field(
        default_factory=list,
        description="scorers that failed in this round: every candidate is ranked without them",
    )
    cut: list[str] = Field(
        default_factory=list,
        description="teachers whose calls were still running at the round deadline, cancelled",
    )


class DecodeResult(BaseModel):
    """Every finished trace, best first, with the decode's provenance."""

    traces: list[FinishedTrace]
    score_mode: ScoreMode
    reference_used: bool
    prompt_tokens: int
    teachers: list[TeacherUsage]
    failures: list[StepFailure]
    dropped: list[str] = Field(
        default_factory=list, description="teachers dropped for the rest of the decode"
    )
    rounds: list[RoundTiming]
    wall_s: float
    answer_wait_s: float
    thinking_budget: int = Field(0, description="the decode's thinking budget, in tokens")
    answer_budget: int = Field(0, description="the decode's answer budget, in tokens")
    recorded: dict[str, Any] = Field(
        default_factory=dict, description="the request's recorded fields (request_fields.py)"
    )
    search: list[SearchRound] = Field(
        default_factory=list, description="every round's candidates: the whole search tree"
    )
    include_candidates: bool = Field(
        False, description="the request asked for every candidate (its response shows the tree)"
    )

    @property
    def best(self) -> FinishedTrace:
        return self.traces[0]
