"""The Responses API's stream: `chat_events` written as Responses events, free of any
transport (the second writer over the events that chat streaming uses).

`ResponseEvents` keeps the Response object as it stands and turns each chat event into the
Responses events it means, each with its ``sequence_number``: ``response.created`` and
``response.in_progress``; the ``reasoning`` item (``response.output_item.added``,
``response.content_part.added``, a ``response.reasoning_text.delta`` a step, then its
``.done`` events); the ``message`` item (the same, with ``response.output_text.delta``); and
``response.completed`` (``response.incomplete`` when the answer ran out of tokens, or
``response.failed``). The whole Response, the sync route's answer, is its last state.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from cord_proxy.api.chat_events import Answer, ChatEvent, Failed, Finished, Reasoning
from cord_proxy.api.errors import openai_error
from cord_proxy.decoding.trace import FinishedTrace, StepRecord
from cord_proxy.responses.objects import (
    failed_error,
    message_item,
    new_id,
    output_text,
    reasoning_item,
    usage,
)

TEXT_CHUNK_CHARS = 32
Event = dict[str, Any]


class ResponseEvents:
    """The events of one Response, and the Response as they leave it; `cord` is added to the
    decode's provenance (the conversation it decoded, the previous response's id)."""

    def __init__(self, response: dict[str, Any], cord: dict[str, Any] | None = None):
        self.response = response
        self.cord = dict(cord or {})
        self.sequence = 0
        self.reasoning_id = new_id("rs")
        self.message_id = new_id("msg")
        self.reasoning: str | None = None  # the trace sent so far; None: its item not begun

    def _event(self, kind: str, **fields: Any) -> Event:
        event = {"type": kind, **fields, "sequence_number": self.sequence}
        self.sequence += 1
        return event

    def snapshot(self) -> dict[str, Any]:
        return copy.deepcopy(self.response)

    def begin(self) -> list[Event]:
        """``response.created`` and ``response.in_progress``: the decode starts."""
        self.response["status"] = "in_progress"
        return [
            self._event("response.created", response=self.snapshot()),
            self._event("response.in_progress", response=self.snapshot()),
        ]

    def on(self, event: ChatEvent) -> list[Event]:
        """The Responses events of one chat event (choice 0's: a Response has one answer)."""
        if isinstance(event, Reasoning) and event.index == 0:
            return self._steps(event.steps, event.first)
        if isinstance(event, Answer) and event.index == 0:
            return [*self._close_reasoning(), *self._answer(event.trace)]
        if isinstance(event, Finished):
            return self._finished(event)
        if isinstance(event, Failed):
            return self.failed(openai_error(event.error)["error"]["message"])
        return []

    def failed(self, message: str) -> list[Event]:
        self.response["status"] = "failed"
        self.response["error"] = failed_error(message)
        return [self._event("response.failed", response=self.snapshot())]

    def cancelled(self) -> None:
        self.response["status"] = "cancelled"

    def _open_reasoning(self) -> list[Event]:
        if self.reasoning is not None:
            return []
        self.reasoning = ""
        item = reasoning_item(self.reasoning_id, None, "in_progress")
        self.response["output"].append(copy.deepcopy(item))
        self.response["output"][0]["content"] = [{"type": "reasoning_text", "text": ""}]
        return [
            self._event("response.output_item.added", output_index=0, item=item),
            self._event(
                "response.content_part.added",
                item_id=self.reasoning_id,
                output_index=0,
                content_index=0,
                part={"type": "reasoning_text", "text": ""},
            ),
        ]

    def _steps(self, steps: list[StepRecord], first: bool) -> list[Event]:
        events = self._open_reasoning()
        for position, step in enumerate(steps):
            text = step.text.lstrip() if first and position == 0 else step.text
            if not text:
                continue
            self.reasoning = (self.reasoning or "") + text
            self.response["output"][0]["content"][0]["text"] = self.reasoning
            events.append(
                self._event(
                    "response.reasoning_text.delta",
                    item_id=self.reasoning_id,
                    output_index=0,
                    content_index=0,
                    delta=text,
                )
            )
        return events

    def _close_reasoning(self) -> list[Event]:
        events = self._open_reasoning()
        text = self.reasoning or ""
        part = {"type": "reasoning_text", "text": text}
        item = reasoning_item(self.reasoning_id, text, "completed")
        self.response["output"][0] = copy.deepcopy(item)
        where = {"item_id": self.reasoning_id, "output_index": 0, "content_index": 0}
        return [
            *events,
            self._event("response.reasoning_text.done", **where, text=text),
            self._event("response.content_part.done", **where, part=part),
            self._event("response.output_item.done", output_index=0, item=item),
        ]

    def _answer(self, trace: FinishedTrace) -> list[Event]:
        status = "incomplete" if trace.answer_finish_reason == "length" else "completed"
        where = {"item_id": self.message_id, "output_index": 1, "content_index": 0}
        added = message_item(self.message_id, None, "in_progress")
        self.response["output"].append(message_item(self.message_id, "", "in_progress"))
        events = [
            self._event("response.output_item.added", output_index=1, item=added),
            self._event("response.content_part.added", **where, part=output_text("")),
        ]
        answer = trace.answer
        for start in range(0, len(answer), TEXT_CHUNK_CHARS):
            events.append(
                self._event(
                    "response.output_text.delta",
                    **where,
                    delta=answer[start : start + TEXT_CHUNK_CHARS],
                    logprobs=[],
                )
            )
        item = message_item(self.message_id, answer, status)
        self.response["output"][1] = copy.deepcopy(item)
        return [
            *events,
            self._event("response.output_text.done", **where, text=answer, logprobs=[]),
            self._event("response.content_part.done", **where, part=output_text(answer)),
            self._event("response.output_item.done", output_index=1, item=item),
        ]

    def _finished(self, event: Finished) -> list[Event]:
        trace = event.traces[0]
        result = event.result
        self.response["usage"] = usage(
            result.prompt_tokens, trace.reasoning_tokens, trace.answer_tokens
        )
        self.response["cord"] = {**event.cord, **self.cord}
        if trace.answer_finish_reason == "length":
            self.response["status"] = "incomplete"
            self.response["incomplete_details"] = {"reason": "max_output_tokens"}
            kind = "response.incomplete"
        else:
            self.response["status"] = "completed"
            kind = "response.completed"
        self.response["completed_at"] = int(time.time())
        return [self._event(kind, response=self.snapshot())]
