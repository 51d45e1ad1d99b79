"""`teachers check`: is each teacher reachable, and can it propose and score?"""

from __future__ import annotations

import time
from dataclasses import dataclass

from cord_proxy.concurrency import gather_or_cancel
from cord_proxy.config import TeacherConfig
from cord_proxy.errors import CordError
from cord_proxy.teachers.base import Message, Teacher
from cord_proxy.teachers.endpoint import listed_models
from cord_proxy.teachers.openai_compat import OpenAICompatTeacher

PROBE = [Message(role="user", content="Reply with OK.")]


@dataclass(frozen=True)
class TeacherCheck:
    name: str
    kind: str
    model: str
    reachable: bool
    model_listed: bool | None
    can_propose: bool | None
    can_score: bool | None
    latency_s: float | None
    error: str | None = None
    score_method: str | None = None
    context_length: int | None = None

    @property
    def ok(self) -> bool:
        return self.reachable and self.can_propose is not False and self.can_score is not False


def _served_name(config: TeacherConfig) -> str:
    """The model name the endpoint lists: litellm's provider prefix is not part of it."""
    if config.kind == "litellm" and "/" in config.model:
        return config.model.split("/", 1)[1]
    return config.model


async def check_teacher(teacher: Teacher, config: TeacherConfig) -> TeacherCheck:
    models = await listed_models(config)
    error: str | None = None
    started = time.perf_counter()
    can_propose: bool | None = None
    if teacher.can_propose:
        try:
            await teacher.propose(PROBE, "", n=1, stop=(), max_tokens=1)
            can_propose = True
        except CordError as failure:
            can_propose, error = False, failure.message
    latency = time.perf_counter() - started
    can_score: bool | None = None
    method: str | None = None
    if teacher.can_score:
        try:
            method = await _score_method(teacher)
            await teacher.score(PROBE, "", "OK")
            can_score = True
        except CordError as failure:
            can_score, error = False, error or failure.message
    return TeacherCheck(
        name=config.name,
        kind=config.kind,
        model=config.model,
        reachable=models is not None or bool(can_propose or can_score),
        model_listed=None if models is None else _served_name(config) in models,
        can_propose=can_propose,
        can_score=can_score,
        latency_s=latency if can_propose else None,
        error=error,
        score_method=method,
        context_length=await _context_length(teacher),
    )


async def _context_length(teacher: Teacher) -> int | None:
    """The context in tokens a vLLM teacher serves; a hosted provider's is not asked."""
    if not isinstance(teacher, OpenAICompatTeacher):
        return None
    try:
        return await teacher.context_length()
    except CordError:
        return None


async def _score_method(teacher: Teacher) -> str | None:
    """How the teacher scores: the configured method, or what the probe chose and why."""
    if not isinstance(teacher, OpenAICompatTeacher):
        return None
    return (await teacher.scoring_choice()).describe()


async def check_all(
    teachers: dict[str, Teacher], configs: list[TeacherConfig]
) -> list[TeacherCheck]:
    return list(await gather_or_cancel(*(check_teacher(teachers[c.name], c) for c in configs)))


def format_checks(checks: list[TeacherCheck]) -> str:
    def mark(value: bool | None) -> str:
        return "-" if value is None else ("yes" if value else "NO")

    header = (
        f"{'teacher':<20} {'kind':<7} {'model':<24} {'reachable':<9} {'listed':<6} "
        f"{'propose':<7} {'score':<5} {'context':<8} latency"
    )
    rows = [header]
    for c in checks:
        latency = f"{c.latency_s * 1000:.0f} ms" if c.latency_s is not None else "-"
        context = str(c.context_length) if c.context_length is not None else "-"
        rows.append(
            f"{c.name:<20} {c.kind:<7} {c.model:<24} {mark(c.reachable):<9} "
            f"{mark(c.model_listed):<6} {mark(c.can_propose):<7} {mark(c.can_score):<5} "
            f"{context:<8} {latency}"
        )
        if c.score_method:
            rows.append(f"    scoring: {c.score_method}")
        if c.error:
            rows.append(f"    error: {c.error}")
    return "\n".join(rows)
