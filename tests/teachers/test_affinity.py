"""One routing key per beam (teachers/affinity.py): what a replica router sees of a decode."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cord_proxy import DecodeJob, DecodeOptions, decode
from cord_proxy.teachers.affinity import routing_key
from cord_proxy.teachers.base import Message, Proposal, SpanScore
from tests.support.fakes import ScriptedFakeTeacher


class KeyRecordingFake(ScriptedFakeTeacher):
    """A FAKE teacher that notes the routing key each of its calls would send."""

    def __init__(self, name: str, log: list[tuple[str, str, str | None]], **kwargs: Any):
        super().__init__(name, **kwargs)
        self.log = log

    async def propose(
        self, conversation: Sequence[Message], prefix: str, **kwargs: Any
    ) -> list[Proposal]:
        self.log.append(("propose", prefix, routing_key()))
        return await super().propose(conversation, prefix, **kwargs)

    async def score(self, conversation: Sequence[Message], prefix: str, target: str) -> SpanScore:
        self.log.append(("score", prefix, routing_key()))
        return await super().score(conversation, prefix, target)


async def test_each_beam_keeps_one_key_and_its_best_child_inherits_it() -> None:
    log: list[tuple[str, str, str | None]] = []
    teachers = [
        KeyRecordingFake(
            name,
            log,
            proposals=lambda prefix, w=word: "42" if prefix.endswith("\n\n") else f"try {w}",
            logprobs=lambda prefix, target, v=value: [v],
        )
        for name, word, value in (("alpha", "adding", -0.1), ("beta", "counting", -0.4))
    ]
    options = DecodeOptions(beam_width=2, max_steps=2, thinking_budget=64, answer_budget=4)
    await decode(DecodeJob.create("What is 40 + 2?", teachers, options, reference_answer="42"))

    proposals = [(prefix, key) for kind, prefix, key in log if kind == "propose"]
    first = {
        key for prefix, key in proposals if "Step 2" not in prefix and "</think>" not in prefix
    }
    second = {key for prefix, key in proposals if "Step 2" in prefix and "</think>" not in prefix}
    answers = {key for prefix, key in proposals if "</think>" in prefix}
    assert all(key for _, _, key in log), "every call carries a key"
    assert len(first) == 1, "one beam in step 1, one key"
    assert len(second) == 2 and first < second, "the best child keeps it, the other gets its own"
    assert len(answers) == 2 and answers & second, "one key per finished beam, inherited"
    scored = {key for kind, _, key in log if kind == "score"}
    assert scored <= first | second
