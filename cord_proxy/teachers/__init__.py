"""Teacher clients behind one small interface (`Teacher`), the step contract.

The package exports the contract only. The clients (`openai_compat.OpenAICompatTeacher`,
`hosted.HostedTeacher`, `factory.build_teacher`) import the config models, and the config
imports the decoding options, whose package imports this contract: exporting the clients
here would close that loop.
"""

from __future__ import annotations

from cord_proxy.teachers.base import (
    THINK_CLOSE,
    THINK_OPEN,
    FinishReason,
    Message,
    Proposal,
    SpanScore,
    Teacher,
)

__all__ = [
    "THINK_CLOSE",
    "THINK_OPEN",
    "FinishReason",
    "Message",
    "Proposal",
    "SpanScore",
    "Teacher",
]
