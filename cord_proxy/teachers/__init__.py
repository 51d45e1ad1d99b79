"""Teacher clients behind one small interface (`Teacher`)."""

from __future__ import annotations

from cord_proxy.teachers.base import THINK_CLOSE, THINK_OPEN, Message, Proposal, SpanScore, Teacher
from cord_proxy.teachers.factory import build_teacher
from cord_proxy.teachers.openai_compat import OpenAICompatTeacher

__all__ = [
    "THINK_CLOSE",
    "THINK_OPEN",
    "Message",
    "OpenAICompatTeacher",
    "Proposal",
    "SpanScore",
    "Teacher",
    "build_teacher",
]
