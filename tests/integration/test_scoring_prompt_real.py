"""The scorer reads the prompt the proposer was given, on the real local teacher (issue 19,
finding 7; the FAKE server's cases are in tests/teachers/test_scoring_prompt.py).

The local teacher's chat template reads no keyword arguments, so ``chat_template_kwargs``
changes nothing there; and vLLM refuses a request's own ``chat_template`` unless it was
started with ``--trust-request-chat-template``, which the local teacher is not. The prompt
field it does honour is ``add_special_tokens``: a chat proposal with it reads a second
``<bos>`` (the template writes one), a proxy-rendered (``template``) proposal without it reads
none. Either way the scored prefix must be the proposal's prompt, token for token.
"""

from __future__ import annotations

from typing import Any

import pytest

from cord_proxy.config import GEMMA_TEMPLATE, ChatPrompt, TeacherConfig
from cord_proxy.local import LOCAL_MODEL_NAME
from cord_proxy.teachers.base import Message
from cord_proxy.teachers.openai_compat import OpenAICompatTeacher

pytestmark = pytest.mark.integration

CONVERSATION = [Message(role="user", content="What is 6 times 7?")]
PREFIX = "<think>\n### Step 1. Six times seven."
TARGET = " Six sevens are 42."  # a new word: its tokens do not fuse with the prefix's

# name -> (prompt format, extra_body, the shaped prompt's tokens less the plain prompt's)
CASES: dict[str, tuple[Any, dict[str, Any], int]] = {
    "chat-with-special-tokens": (ChatPrompt(), {"add_special_tokens": True}, 1),
    "template-without-special-tokens": (GEMMA_TEMPLATE, {"add_special_tokens": False}, -1),
}


async def prompt_and_scored_context(
    base_url: str, prompt: Any, extra_body: dict[str, Any]
) -> tuple[int, int]:
    """(the proposal's prompt tokens, the scored span's context tokens) of one teacher."""
    config = TeacherConfig(
        name="local-shaped",
        base_url=base_url,
        model=LOCAL_MODEL_NAME,
        prompt=prompt,
        extra_body=extra_body,
        score_method="cached",
        timeout=300.0,
        max_retries=1,
    )
    teacher = OpenAICompatTeacher(config)
    try:
        (proposal,) = await teacher.propose(CONVERSATION, PREFIX, n=1, stop=[], max_tokens=1)
        span = await teacher.score(CONVERSATION, PREFIX, TARGET)
    finally:
        await teacher.aclose()
    return proposal.prompt_tokens, span.context_tokens


@pytest.mark.parametrize("case", CASES.keys())
async def test_the_scorer_reads_as_many_prompt_tokens_as_the_proposer(
    local_teacher: str, case: str
) -> None:
    prompt, extra_body, shift = CASES[case]
    plain = await prompt_and_scored_context(local_teacher, prompt, {})
    shaped = await prompt_and_scored_context(local_teacher, prompt, extra_body)
    print(f"\n[scoring prompt] {case}: plain {plain}, shaped {shaped} (proposal, scored)")
    assert plain[0] == plain[1] > 0  # the target starts a token of its own
    assert shaped[0] == plain[0] + shift  # the field shaped the proposal's prompt
    assert shaped[1] == shaped[0]  # and the scorer read that prompt
