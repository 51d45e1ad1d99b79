"""Replica affinity: one stable routing key per beam, sent with every call of that beam.

The beam search sets the key of the beam a call works for (``use_routing_key``); the context
variable follows the call into the teacher client, including score calls started from it.
OpenAI-compatible teachers send it as the ``X-Session-ID`` header, the first key vLLM Router's
``consistent_hash`` policy reads, so a beam's proposals, scores and answer reach the replica
whose prefix cache holds its trace. Servers that do not route ignore the header.
"""

from __future__ import annotations

from contextvars import ContextVar

ROUTING_HEADER = "X-Session-ID"

_routing_key: ContextVar[str | None] = ContextVar("cord_routing_key", default=None)


def use_routing_key(key: str | None) -> None:
    """The key for the calls of the current task (and of the tasks it starts)."""
    _routing_key.set(key)


def routing_key() -> str | None:
    """The current key; None where none is set (an empty key is none)."""
    return _routing_key.get() or None
