"""The final answers (docs/method.md, "The loop", step 5): each finished trace's answer is
written as soon as it finishes, by the teacher of its last step (others if that one fails).

Every finished trace is held here with its answer task, so none is lost when it falls out
of the beam, and the answers are collected in the order the traces finished. An answer call
carries every extra field of the request (`CallExtras`). With a ``response_format``, an answer
that does not match it is its teacher's failure for that trace, and the next teacher tries
(answer_format.py); with ``logprobs``, the answer keeps the log-probabilities of its tokens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from cord_proxy.decoding.answer_format import FormatMismatch, structured_answer
from cord_proxy.decoding.candidates import Beam
from cord_proxy.decoding.context import DecodeContext
from cord_proxy.decoding.trace import AnswerLogprob, TopLogprob
from cord_proxy.errors import AnswerFormatError, DecodeError, TeacherError
from cord_proxy.teachers.affinity import use_routing_key
from cord_proxy.teachers.base import THINK_CLOSE, Proposal, Teacher, TokenLogprob

NO_FORMAT_MATCH = "no teacher wrote an answer that matches the response_format"
NO_ANSWER = "no teacher could write the final answer of any finished trace"
CUT = " (the answer ran into the answer budget)"


@dataclass(frozen=True)
class Answered:
    """A finished trace and the answer written after it: `answer.text` is the answer the
    client gets (stripped; unfenced when structured), and `logprobs` its tokens' values when
    the request asked for them (None when it did not)."""

    beam: Beam
    teacher: str
    answer: Proposal
    logprobs: list[AnswerLogprob] | None = None


class Answers:
    def __init__(self, context: DecodeContext, group: asyncio.TaskGroup):
        self.context = context
        self._group = group
        self._pending: list[tuple[Beam, asyncio.Task[Answered | None]]] = []
        self._mismatches: list[str] = []  # why answers did not match the response_format

    @property
    def started(self) -> bool:
        return bool(self._pending)

    def start(self, beams: Iterable[Beam]) -> None:
        for beam in beams:
            self._pending.append((beam, self._group.create_task(self._answer(beam))))

    def answered(self) -> list[Answered]:
        """Every trace whose answer was written (call once the task group has ended)."""
        return [result for _, task in self._pending if (result := task.result()) is not None]

    def failure(self) -> DecodeError:
        """Why no finished trace got an answer (a 502): the answers that did not match the
        response_format, named by their schema errors, or else the answer calls' errors."""
        if self._mismatches:
            problems = "; ".join(dict.fromkeys(self._mismatches))  # distinct, in order
            return AnswerFormatError(f"{NO_FORMAT_MATCH}: {problems}")
        return DecodeError(f"{NO_ANSWER}: {self.context.log.role_errors('answer')}")

    async def _answer(self, beam: Beam) -> Answered | None:
        use_routing_key(beam.route)
        for teacher in self._teachers(beam):
            proposal = await self._ask(teacher, beam)
            answered = None if proposal is None else self._accept(beam, teacher.name, proposal)
            if answered is not None:
                return answered
        return None

    def _teachers(self, beam: Beam) -> list[Teacher]:
        """The proposers still in the decode, the teacher of the beam's last step first."""
        context = self.context
        last = beam.steps[-1].proposers[0] if beam.steps else context.proposers[0].name
        return sorted(
            (t for t in context.proposers if not context.log.is_dropped(t.name)),
            key=lambda t: t.name != last,
        )

    async def _ask(self, teacher: Teacher, beam: Beam) -> Proposal | None:
        """One teacher's answer after `beam`; None when its call failed or gave nothing."""
        context, options = self.context, self.context.options
        try:
            proposals = await teacher.propose(
                context.conversation,
                beam.text + "\n\n",
                n=1,
                stop=self._stops(),
                max_tokens=options.answer_budget,
                seed=context.seed(teacher.name, "answer", beam.index),
                temperature=options.temperature,
                top_p=options.top_p,
                **context.answer_extras(),
            )
        except TeacherError as error:
            context.log.proposer_failed(len(beam.steps), teacher.name, "answer", error)
            return None
        context.log.proposer_succeeded(teacher.name)
        context.count_proposals(teacher.name, 0, proposals)
        return proposals[0] if proposals else None

    def _stops(self) -> tuple[str, ...]:
        """The request's stop strings, and a ``</think>`` the answer writes: there is no
        thinking left to close, and one in the answer would split an inline trace wrongly. A
        structured answer is left to its format, where the text may be a string's value."""
        stops = tuple(self.context.options.answer_stop)
        if self.context.extras.response_format is not None or THINK_CLOSE in stops:
            return stops
        return (*stops, THINK_CLOSE)

    def _accept(self, beam: Beam, teacher: str, proposal: Proposal) -> Answered | None:
        """`proposal` as the trace's answer, or None (recorded) when it does not match the
        request's response_format."""
        extras = self.context.extras
        text = proposal.text.strip()
        if extras.response_format is not None:
            try:
                text = structured_answer(proposal.text, extras.response_format)
            except FormatMismatch as mismatch:
                problem = str(mismatch) + (CUT if proposal.finish_reason == "length" else "")
                self._mismatches.append(problem)
                self.context.log.answer_rejected(len(beam.steps), teacher, problem)
                return None
        logprobs = None if extras.logprobs is None else answer_logprobs(proposal, text)
        return Answered(beam, teacher, replace(proposal, text=text), logprobs)


def answer_logprobs(proposal: Proposal, answer: str) -> list[AnswerLogprob]:
    """The log-probabilities of the tokens that write `answer`, a part of `proposal.text`
    (stripped, unfenced): tokens wholly outside it are left out. Tokens that do not spell the
    proposal's text are kept whole, as the teacher gave them; none when it gave none."""
    tokens: Sequence[TokenLogprob] = proposal.logprobs or ()
    start = proposal.text.find(answer)
    if "".join(t.token for t in tokens) == proposal.text and start >= 0:
        tokens = _within(tokens, start, start + len(answer))
    return [_record(token) for token in tokens]


def _within(tokens: Sequence[TokenLogprob], start: int, end: int) -> list[TokenLogprob]:
    """The tokens whose text overlaps the characters [start, end) of their concatenation."""
    kept: list[TokenLogprob] = []
    offset = 0
    for token in tokens:
        after = offset + len(token.token)
        if offset < end and (after > start or (after == offset and offset >= start)):
            kept.append(token)
        offset = after
    return kept


def _record(token: TokenLogprob) -> AnswerLogprob:
    top = [TopLogprob(token=text, logprob=value) for text, value in token.top]
    return AnswerLogprob(token=token.token, logprob=token.logprob, top=top)
