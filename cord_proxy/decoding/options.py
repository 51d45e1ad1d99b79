"""Settings of one decode. Ensembles hold defaults; a request's `cord` object overrides them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Segmentation = Literal["prompt", "newline", "markers"]
ScoreNormalisation = Literal["token", "byte"]

DEFAULT_MARKERS = ("Wait", "Alternatively", "Let me check")


class DecodeOptions(BaseModel):
    """How one trace is searched for. Every field has the paper's meaning (METHOD.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    beam_width: int = Field(4, ge=1, le=64)
    proposals_per_teacher: int = Field(1, ge=1, le=16)
    segmentation: Segmentation = "prompt"
    markers: tuple[str, ...] = Field(DEFAULT_MARKERS, min_length=1)
    thinking_budget: int = Field(16384, ge=1, le=1_000_000)
    answer_budget: int = Field(4096, ge=1, le=1_000_000)
    max_step_tokens: int = Field(1024, ge=1, le=100_000)
    max_steps: int = Field(64, ge=1, le=1024)
    include_candidates: bool = False
    score_normalisation: ScoreNormalisation = "token"
    answer_prompt: str = "</think> The final answer is "
    answer_stop: tuple[str, ...] = ()
    seed: int | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    round_timeout: float = Field(600.0, gt=0.0, le=86_400.0)
    n: int = Field(1, ge=1, le=64)
