"""The fields of a teacher's request, beside the conversation, that shape the prompt it reads.

A teacher's `extra_body` goes with every proposal. The part of it that changes the rendered
prompt goes with the teacher's ``/tokenize`` requests too (scoring, the probe, the room a
proposal leaves), so that its scorer reads the prompt its proposals were given, and it is part
of the teacher's score identity. The rest (sampling settings such as ``top_k``) goes with
proposals only.

As vLLM 0.32 reads them:

- a chat prompt: ``chat_template``, ``chat_template_kwargs``, ``add_special_tokens``,
  ``tools``, ``mm_processor_kwargs`` and ``media_io_kwargs``, which ``/tokenize`` takes as
  they are; and ``documents`` and ``reasoning_effort``, which a chat completion folds into the
  template's arguments (``reasoning_effort`` also sets ``enable_thinking`` unless the
  arguments hold it) and ``/tokenize`` takes only inside them: they are folded the same way.
- a text prompt (the proxy's own ``template``): ``add_special_tokens``.
- ``truncate_prompt_tokens`` cuts the prompt a proposal reads, and ``/tokenize`` cannot: a
  scorer with it would read another prompt, so it is refused at start (factory.py).

The generation-prompt flags are the client's own (an open assistant turn, continued), set over
the teacher's, for proposals and ``/tokenize`` alike.

A request may bring prompt fields of its own (``chat_template_kwargs``): `with_request_fields`
merges them into the teacher's `extra_body`, and the teacher's view for that request
(``OpenAICompatTeacher.with_prompt_fields``) derives its proposals and its ``/tokenize``
requests from the merged body, as a teacher configured with it would.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

CHAT_FIELDS = (
    "chat_template",
    "chat_template_kwargs",
    "add_special_tokens",
    "tools",
    "mm_processor_kwargs",
    "media_io_kwargs",
)
TEXT_FIELDS = ("add_special_tokens",)
FOLDED_FIELDS = ("documents", "reasoning_effort")  # into the template's arguments
UNSET = (None, "auto")  # values vLLM's merge_kwargs leaves out
UNREADABLE = ("truncate_prompt_tokens",)  # shape the prompt; /tokenize cannot reproduce them
BOUNDED = frozenset({"add_special_tokens"})  # adds at most a token or two to the prompt


def prompt_fields(extra_body: Mapping[str, Any], *, chat: bool) -> dict[str, Any]:
    """The fields of `extra_body` that shape the prompt, as ``/tokenize`` takes them."""
    names = CHAT_FIELDS if chat else TEXT_FIELDS
    fields = {name: extra_body[name] for name in names if name in extra_body}
    if chat:
        kwargs = template_kwargs(extra_body)
        if kwargs is not None:
            fields["chat_template_kwargs"] = kwargs
    return fields


def template_kwargs(extra_body: Mapping[str, Any]) -> object:
    """The chat template's arguments a chat completion with `extra_body` renders with, beside
    the generation-prompt flags (vLLM 0.32's ``ChatCompletionRequest.build_chat_params``).

    Without a folded field they are the teacher's ``chat_template_kwargs`` as given (None
    when not given), so that ``/tokenize`` reads, or refuses, exactly what proposals do.
    """
    given = extra_body.get("chat_template_kwargs")
    arguments: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
    folded = {name: extra_body[name] for name in FOLDED_FIELDS if extra_body.get(name) not in UNSET}
    effort = extra_body.get("reasoning_effort")
    if effort is not None and "enable_thinking" not in arguments:
        folded["enable_thinking"] = effort != "none"
    if not folded:
        return given
    return {**arguments, **folded}


def fields_identity(fields: Mapping[str, Any]) -> str:
    """The fields as canonical JSON: the same for the same values, whatever their order."""
    return orjson.dumps(dict(fields), option=orjson.OPT_SORT_KEYS).decode()


def unbounded(fields: Mapping[str, Any]) -> bool:
    """Whether the fields may add text to the prompt that no bound on its bytes covers (a
    template of the teacher's choosing, its arguments, tools, documents)."""
    return any(name not in BOUNDED for name in fields)


def unreadable_fields(extra_body: Mapping[str, Any]) -> list[str]:
    """The fields of `extra_body` that shape a proposal's prompt in a way a scorer cannot read."""
    return [name for name in UNREADABLE if extra_body.get(name) is not None]


def with_request_fields(
    extra_body: Mapping[str, Any], fields: Mapping[str, Any], *, chat: bool
) -> dict[str, Any]:
    """`extra_body` with a request's prompt `fields`: its ``chat_template_kwargs`` merged into
    the teacher's (the request's keys win), any other prompt field set over the teacher's.

    A chat template's field does not reach a prompt that the proxy renders (``chat`` false)
    and is left out; a None value is no field. Raises `ValueError` for a name that is not a
    prompt field ``/tokenize`` takes.
    """
    body = dict(extra_body)
    for name, value in fields.items():
        if name not in CHAT_FIELDS:
            raise ValueError(f"{name!r} is not a prompt field")
        if value is None or name not in (CHAT_FIELDS if chat else TEXT_FIELDS):
            continue
        if name == "chat_template_kwargs" and isinstance(value, Mapping):
            own = body.get(name)
            value = {**(own if isinstance(own, Mapping) else {}), **value}
        body[name] = value
    return body
