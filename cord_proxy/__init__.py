"""cord-proxy: collaborative step-wise multi-teacher decoding (CoRD) behind an OpenAI API.

The public API is `__all__`; every other name is private by convention.
"""

from __future__ import annotations

from cord_proxy.config import TeacherConfig
from cord_proxy.decoding import DecodeJob, DecodeOptions, DecodeResult, decode
from cord_proxy.decoding.beam import DecodeProgress
from cord_proxy.decoding.trace import FinishedTrace, StepRecord
from cord_proxy.teachers.base import Message, Proposal, SpanScore, Teacher
from cord_proxy.teachers.factory import build_teacher, open_teachers
from cord_proxy.teachers.hosted import HostedTeacher
from cord_proxy.teachers.openai_compat import OpenAICompatTeacher

__version__ = "0.1.0"
__all__ = [
    "DecodeJob",
    "DecodeOptions",
    "DecodeProgress",
    "DecodeResult",
    "FinishedTrace",
    "HostedTeacher",
    "Message",
    "OpenAICompatTeacher",
    "Proposal",
    "SpanScore",
    "StepRecord",
    "Teacher",
    "TeacherConfig",
    "__version__",
    "build_teacher",
    "decode",
    "open_teachers",
]
