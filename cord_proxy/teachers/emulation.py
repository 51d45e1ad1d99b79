"""The step contract emulated for hosted teachers: how one step is asked, and read back.

Where the provider continues a prefilled assistant message, the partial trace is that
message: vLLM is asked with ``continue_final_message`` (``hosted_vllm``), other providers
with litellm's ``"prefix": true`` message flag (Anthropic, DeepSeek, Mistral). Those drop
the trace's trailing whitespace, and a teacher's reply then starts by writing it again; so
where a stop string begins with whitespace (``newline`` steps), that would end every reply
at once, and the step is asked by instruction instead. The instruction shows the trace so far
and asks for exactly the next step, starting with the step marker; a repeated marker is
removed from the reply, and the reply is joined to the marker as `after_marker` says.

Stop strings. vLLM says which stop string ended a choice; most hosted APIs only say
"stop", for a stop string and for the end of the reply alike. For those, a plain stop is
read as the end of a step with no known stop string (``stop_string`` None), ``</think>``
is not sent as a stop string, and the reply is cut on our side at the first stop string it
contains (so a teacher that writes ``</think>`` closes the trace).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cord_proxy.teachers.base import THINK_CLOSE, THINK_OPEN, FinishReason, Message
from cord_proxy.teachers.capabilities import HostedCapabilities
from cord_proxy.teachers.prompting import chat_messages

STEP_INSTRUCTION = (
    "You are writing a step-by-step reasoning trace for the conversation above, one step "
    "at a time. The trace so far is between <trace> and </trace>.\n\n"
    "<trace>\n{trace}\n</trace>\n\n"
    "Write exactly the next step of the reasoning and nothing after it.{start} "
    "If the reasoning is complete, write " + THINK_CLOSE + " right after your last step."
)
# What the driver may write after a step stop string to make a step marker: a step number.
MARKER_NUMBER = re.compile(r"(?: ?\d+\.?)?")
# Punctuation that belongs to the word before it: no space between a marker and these.
CLOSING_PUNCTUATION = frozenset(",.;:!?)]}\u2026\u2014")
ANSWER_INSTRUCTION = (
    "You have finished reasoning about the conversation above. Your reasoning is between "
    "<trace> and </trace>.\n\n<trace>\n{trace}\n</trace>\n\n"
    "Now write the final answer to the question, and nothing else."
)


@dataclass(frozen=True)
class StepPrompt:
    """One step asked of a hosted teacher, and what its replies are read against.

    `exact`: the provider continues the assistant message and says which stop string
    matched (vLLM), so an end of output is the end of the teacher's trace. `trimmed`: the
    prefill lost trailing whitespace that the trace already has.
    """

    messages: list[dict[str, Any]]
    stops: tuple[str, ...]
    sent: dict[str, str]
    marker: str
    exact: bool
    trimmed: bool

    def received(self, content: str) -> str:
        """A reply's text as the teacher wrote it after the trace."""
        return content.lstrip() if self.trimmed else content

    def shape(
        self, text: str, finish_reason: Any, stop_reason: Any
    ) -> tuple[str, FinishReason, str | None]:
        """A received reply as a step body (see `shape_reply`)."""
        return shape_reply(
            text,
            finish_reason,
            stop_reason,
            stops=self.stops,
            sent=self.sent,
            marker=self.marker,
            exact=self.exact,
        )


def step_prompt(
    caps: HostedCapabilities, conversation: Sequence[Message], prefix: str, stop: Sequence[str]
) -> StepPrompt:
    """How to ask a teacher with these capabilities to continue `prefix` by one step."""
    answering = prefix.rstrip().endswith(THINK_CLOSE)
    exact = caps.assistant_prefill and caps.reports_stop_reason
    trimmed = prefix != prefix.rstrip()
    prefill = exact or (caps.assistant_prefill and not (trimmed and _restarts_a_stop(stop)))
    marker = "" if prefill or answering else step_marker(prefix, stop)
    if exact:
        messages = chat_messages(conversation, prefix)
    elif prefill:  # litellm's prefix flag; Anthropic refuses trailing whitespace
        messages = chat_messages(conversation, prefix.rstrip())
        messages[-1]["prefix"] = True
    else:
        messages = chat_messages(conversation, "")[:-1]
        messages.append({"role": "user", "content": instruction(prefix, marker, answering)})
    return StepPrompt(
        messages=messages,
        stops=tuple(stop),
        sent=provider_stops(stop, marker, exact=caps.reports_stop_reason),
        marker=marker,
        exact=exact,
        trimmed=prefill and not exact and trimmed,
    )


def _restarts_a_stop(stops: Sequence[str]) -> bool:
    """Whether a reply that begins by writing lost whitespace again could stop right there."""
    return any(stop[:1].isspace() for stop in stops)


def step_marker(prefix: str, stops: Sequence[str]) -> str:
    """The step marker the driver wrote at the end of `prefix` ("### Step 3.", "Wait"), if any.

    It is a step stop string at the very end of the prefix, or one followed by a step
    number; line-break segmentation has none. A prefix that ends in a step's own text
    (after a step cut by length) has none either, even where that step began with a marker.
    """
    best = ""
    for stop in stops:
        if not stop.strip() or stop == THINK_CLOSE:
            continue
        at = prefix.rfind(stop)
        tail = prefix[at:] if at >= 0 else ""
        if tail and MARKER_NUMBER.fullmatch(tail[len(stop) :]) and len(tail) > len(best):
            best = tail
    return best


def instruction(prefix: str, marker: str, answering: bool) -> str:
    """The user turn that asks a teacher without assistant prefill for the next step."""
    trace = prefix[: len(prefix) - len(marker)] if marker else prefix
    trace = trace.strip()
    trace = trace.removeprefix(THINK_OPEN.rstrip()).strip()
    if answering:
        return ANSWER_INSTRUCTION.format(trace=trace.removesuffix(THINK_CLOSE).strip())
    start = f' Start your reply with "{marker}".' if marker else ""
    return STEP_INSTRUCTION.format(trace=trace or "(empty: write the first step)", start=start)


def provider_stops(stops: Sequence[str], marker: str, *, exact: bool) -> dict[str, str]:
    """The stop strings to send, each mapped to the stop string it stands for.

    A stop that the expected reply begins with (its marker) is sent after a line break, so
    that it ends the step at the next marker and not at the first. Without a provider that
    says which stop matched, ``</think>`` is not sent: it is found in the reply instead.
    """
    sent: dict[str, str] = {}
    for stop in stops:
        if stop == THINK_CLOSE and not exact:
            continue
        key = "\n" + stop if marker and marker.startswith(stop) else stop
        sent.setdefault(key, stop)
    return sent


def shape_reply(
    text: str,
    finish_reason: Any,
    stop_reason: Any,
    *,
    stops: Sequence[str],
    sent: Mapping[str, str],
    marker: str,
    exact: bool,
) -> tuple[str, FinishReason, str | None]:
    """A reply as a step body: its text, finish reason and the stop string that ended it.

    `exact` is true when an end of output really is the end of the teacher's trace
    (vLLM continuing the assistant message); otherwise it is the end of one step.
    """
    body = text
    if marker:
        stripped = body.lstrip()
        if stripped.startswith(marker):
            body = stripped[len(marker) :]
        body = after_marker(marker, body)
    cut = _first_stop(body, stops)
    if cut is not None:
        at, stop = cut
        return body[:at], "stop", stop
    if finish_reason == "length":
        return body, "length", None
    if isinstance(stop_reason, str) and stop_reason in sent:
        return body, "stop", sent[stop_reason]
    if exact:
        return body, "closed", None
    return body, "stop", None  # a stop string, or the reply's own end: which is not known


def after_marker(marker: str, text: str) -> str:
    """`text` as it follows `marker`: with one space between them, except where the marker
    ends in whitespace, or the text is empty or starts with whitespace or with punctuation
    that closes onto the word before it ("Wait, 2 + 3", "Wait... no", "Wait 2 + 3")."""
    if not text or marker[-1:].isspace() or text[0].isspace() or text[0] in CLOSING_PUNCTUATION:
        return text
    return " " + text


def _first_stop(text: str, stops: Sequence[str]) -> tuple[int, str] | None:
    found = [(text.find(s), s) for s in stops if s and s in text]
    return min(found) if found else None
