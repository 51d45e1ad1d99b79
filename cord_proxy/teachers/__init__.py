"""Teacher clients behind one small interface (`Teacher`).

The clients import the config models, which import the decoding options; they are loaded
on first use so that importing this package never cycles.
"""

from __future__ import annotations

from typing import Any

from cord_proxy.teachers.base import Message, Proposal, ScoreRequest, SpanScore, Teacher

__all__ = [
    "Message",
    "OpenAICompatTeacher",
    "Proposal",
    "ScoreRequest",
    "SpanScore",
    "Teacher",
    "build_teacher",
]


def __getattr__(name: str) -> Any:
    if name == "OpenAICompatTeacher":
        from cord_proxy.teachers.openai_compat import OpenAICompatTeacher

        return OpenAICompatTeacher
    if name == "build_teacher":
        from cord_proxy.teachers.factory import build_teacher

        return build_teacher
    raise AttributeError(name)
