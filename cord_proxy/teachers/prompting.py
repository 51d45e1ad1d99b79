"""What a teacher receives: chat messages with an open assistant turn, or a rendered prompt."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cord_proxy.config import TemplatePrompt
from cord_proxy.teachers.base import Message

ROLE_TEMPLATE = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
}


def with_system_prompt(conversation: Sequence[Message], system_prompt: str | None) -> list[Message]:
    """The teacher's own system prompt goes first, before the client's messages."""
    head = [Message(role="system", content=system_prompt)] if system_prompt else []
    return [*head, *conversation]


def chat_messages(conversation: Sequence[Message], assistant_prefix: str) -> list[dict[str, Any]]:
    """Messages whose final assistant turn is the partial trace, to be continued."""
    messages: list[dict[str, Any]] = [
        {"role": "system" if m.role == "developer" else m.role, "content": m.content}
        for m in conversation
    ]
    messages.append({"role": "assistant", "content": assistant_prefix})
    return messages


def render_template(
    template: TemplatePrompt, conversation: Sequence[Message], assistant_prefix: str
) -> str:
    """The raw prompt text for ``/v1/completions``, ending inside an open assistant turn."""
    parts = [
        getattr(template, ROLE_TEMPLATE[m.role]).replace("{content}", m.content)
        for m in conversation
    ]
    parts.append(template.assistant_open + assistant_prefix)
    return "".join(parts)
