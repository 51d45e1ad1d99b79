"""The final answers (docs/method.md, "The loop", step 4): each finished trace's answer is
written as soon as it finishes, by the teacher of its last step (others if that one fails).

Every finished trace is held here with its answer task, so none is lost when it falls out
of the beam, and the answers are collected in the order the traces finished.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from cord_proxy.decoding.candidates import Beam
from cord_proxy.decoding.context import DecodeContext
from cord_proxy.errors import TeacherError
from cord_proxy.teachers.affinity import use_routing_key
from cord_proxy.teachers.base import Proposal


@dataclass(frozen=True)
class Answered:
    """A finished trace and the answer written after it."""

    beam: Beam
    teacher: str
    answer: Proposal


class Answers:
    def __init__(self, context: DecodeContext, group: asyncio.TaskGroup):
        self.context = context
        self._group = group
        self._pending: list[tuple[Beam, asyncio.Task[Answered | None]]] = []

    @property
    def started(self) -> bool:
        return bool(self._pending)

    def start(self, beams: Iterable[Beam]) -> None:
        for beam in beams:
            self._pending.append((beam, self._group.create_task(self._answer(beam))))

    def answered(self) -> list[Answered]:
        """Every trace whose answer was written (call once the task group has ended)."""
        return [result for _, task in self._pending if (result := task.result()) is not None]

    async def _answer(self, beam: Beam) -> Answered | None:
        context, options = self.context, self.context.options
        use_routing_key(beam.route)
        last = beam.steps[-1].proposers[0] if beam.steps else context.proposers[0].name
        ordered = sorted(
            (t for t in context.proposers if not context.log.is_dropped(t.name)),
            key=lambda t: t.name != last,
        )
        for teacher in ordered:
            try:
                proposals = await teacher.propose(
                    context.conversation,
                    beam.text + "\n\n",
                    n=1,
                    stop=options.answer_stop,
                    max_tokens=options.answer_budget,
                    seed=context.seed(teacher.name, "answer", beam.index),
                    temperature=options.temperature,
                    top_p=options.top_p,
                )
            except TeacherError as error:
                context.log.proposer_failed(len(beam.steps), teacher.name, "answer", error)
                continue
            context.log.proposer_succeeded(teacher.name)
            context.count_proposals(teacher.name, 0, proposals)
            if proposals:
                return Answered(beam, teacher.name, proposals[0])
        return None
