"""Segmentation strategies: how to ask a teacher for exactly one step, and how to append it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cord_proxy.decoding.options import DecodeOptions
from cord_proxy.decoding.trace import StepRecord
from cord_proxy.teachers.base import THINK_CLOSE, Proposal


@dataclass(frozen=True)
class Segmenter:
    """One segmentation strategy.

    A beam's assistant text grows as ``text + opening + body``: the driver writes the
    `opening` (a step marker, or nothing), the teacher writes the `body` and stops at one
    of `stop_strings`.
    """

    stops: tuple[str, ...]
    separator: str = ""
    numbered_marker: str | None = None

    @property
    def stop_strings(self) -> tuple[str, ...]:
        return (*self.stops, THINK_CLOSE)

    def opening(self, step_number: int, previous: Proposal | None = None) -> str:
        """What the driver writes before the teacher continues step `step_number`."""
        if self.numbered_marker is not None:
            return f"{self.numbered_marker} {step_number}."
        if previous is not None and previous.stop_string in self.stops and not self.separator:
            return previous.stop_string
        return ""

    def join(self, text: str, opening: str, body: str) -> str:
        """The assistant text after appending one step."""
        joined = text + opening + body
        if self.separator:
            return joined + self.separator
        if self.numbered_marker is not None and not joined.endswith("\n"):
            return joined + "\n\n"
        return joined

    def step_text(self, appended: str) -> str:
        """What a trace gains with a step whose opening and body are `appended`: for any
        `text`, ``join(text, "", appended) == text + step_text(appended)`` (the join looks at
        the step's own end only); nothing for a blank step, which only closes the thinking."""
        return self.join("", "", appended) if appended else ""


def segmenter_for(options: DecodeOptions) -> Segmenter:
    if options.segmentation == "prompt":
        return Segmenter(stops=("### Step",), numbered_marker="### Step")
    if options.segmentation == "newline":
        return Segmenter(stops=("\n\n",), separator="\n\n")
    return Segmenter(stops=tuple(options.markers))


def close_thinking(text: str) -> str:
    """The trace with its thinking block closed."""
    return (text if text.endswith("\n") else text + "\n") + THINK_CLOSE


def reasoning_of(steps: Sequence[StepRecord]) -> str:
    """The thinking itself, without the ``<think>`` tags: the steps as the trace holds them."""
    return "".join(step.text for step in steps).strip()
