"""Exact spans by both scoring methods, on the real local teacher, against transformers.

For 20 (prefix, target) pairs the span's token ids must equal transformers' own
tokenization of the same rendered text (the ids after their longest common prefix with the
rendered prefix's ids), and the mean log-probability must agree with transformers on the
same weights (float32) within 0.1 nats per token. One transformers process serves all pairs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from cord_proxy.config import GEMMA_TEMPLATE, TeacherConfig
from cord_proxy.local import LOCAL_MODEL_NAME
from cord_proxy.teachers.base import Message, SpanScore
from cord_proxy.teachers.openai_compat import OpenAICompatTeacher
from cord_proxy.teachers.prompting import render_template
from tests.integration.reference_logprobs import transformers_items

pytestmark = pytest.mark.integration

MAX_MEAN_GAP = 0.1  # nats/token between vLLM (bf16) and transformers (float32)
METHODS = ("cached", "prompt_logprobs")

CONVERSATION = [Message(role="user", content="What is 6 times 7? Explain briefly.")]
OPENING = (
    "<think>\n### Step 1. Read the problem. We need the product of 6 and 7, and a short "
    "explanation of why it is right. Six times seven means six equal groups of seven things, "
    "or seven equal groups of six; both give the same total.\n\n"
    "### Step 2. Build it from facts we know. Five sevens are 35, because five times seven is "
    "half of ten times seven, and ten sevens are 70. One more seven is 7, so six sevens are "
    "35 + 7. Adding, 35 + 7 = 42.\n\n"
    "### Step 3. Check it another way. Six sixes are 36, and seven sixes are one more six, "
    "so 36 + 6 = 42. Both ways agree, so the product of 6 and 7 is 42. As a last check, 42 "
    "is even, as a product with the even factor 6 must be, and 42 divided by 7 is 6.\n\n"
    "### Step 4. "
)  # about 250 tokens with the template: past vLLM's 128-token cache block, so reads hit it
LONG_TARGET = (
    "We check it another way: seven sixes are 6 + 6 + 6 + 6 + 6 + 6 + 6, which is 42 again, "
    "so the product is right."
)  # about 40 tokens

# name -> (prefix, target)
PAIRS: dict[str, tuple[str, str]] = {
    "digit": (OPENING + "The final answer is ", "42."),
    "digit-after-sign": (OPENING + "The total cost is $", "1,250 in all."),
    "digit-after-word": (OPENING + "Step", "3 gives the product."),
    "space": (OPENING + "The final answer is", " 42."),
    "space-after-digit": (OPENING + "The product is 42", " cookies."),
    "double-space": (OPENING + "The final answer is ", " 42"),
    "merges-with-trailing-space": (OPENING + "The final answer is ", "forty-two."),
    "f7": (OPENING + "The final answer is ", "𝔽₇ has 7 elements"),
    "half": (OPENING + "Half of one is ", "½, so each part is ½."),
    "emoji": (OPENING + "The mood is ", "🎉 great!"),
    "emoji-after-space": (OPENING + "Answer:", " 🙂 yes"),
    "byte-fallback": (OPENING + "The mark is ", "\U0002000b and 42."),
    "cjk": (OPENING + "In Chinese: ", "四十二"),
    "accents": (OPENING + "En français : ", "quarante-deux, déjà."),
    "superscripts": (OPENING + "Thus ", "x² + y² = z²"),
    "mid-word": (OPENING + "The final ans", "wer is 42."),
    "one-token": (OPENING + "The final answer is 42", "."),
    "newline": (OPENING + "The product is 42.", "\n\n### Step 5. Done."),
    "minus-sign": (OPENING + "The result is ", "\u22123 (minus three)."),
    "thirty-tokens": (OPENING, LONG_TARGET),
}


def rendered(prefix: str) -> str:
    return render_template(GEMMA_TEMPLATE, CONVERSATION, prefix)


@pytest.fixture(scope="module")
def reference_spans(local_teacher: str) -> Iterator[dict[str, dict[str, Any]]]:
    """Per pair: the span's ids and log-probabilities by transformers, float32."""
    items = [
        {"text": rendered(prefix + target), "prefix_text": rendered(prefix)}
        for prefix, target in PAIRS.values()
    ]
    yield dict(zip(PAIRS, transformers_items(items, timeout=900), strict=True))


@pytest.fixture(scope="module")
def gaps() -> Iterator[dict[str, dict[str, Any]]]:
    """Per method, per pair: |mean by vLLM - mean by transformers| and the span's values.

    Printed at the end, with the largest per-token difference between the two methods.
    """
    found: dict[str, dict[str, Any]] = {method: {} for method in METHODS}
    yield found
    for method, by_pair in found.items():
        if by_pair:
            worst = max(by_pair, key=lambda name: by_pair[name][0])
            print(
                f"\n[exact spans] {method}: largest mean gap {by_pair[worst][0]:.4f} nats/token "
                f"({worst}), over {len(by_pair)} pairs"
            )
    both = set.intersection(*(set(by_pair) for by_pair in found.values()))
    diffs = [
        abs(a - b)
        for pair in both
        for a, b in zip(*(found[m][pair][1] for m in METHODS), strict=True)
    ]
    if diffs:
        print(f"[exact spans] largest per-token difference between the methods: {max(diffs):.4f}")


@pytest.fixture(scope="module")
async def teachers(local_teacher: str) -> AsyncIterator[dict[str, OpenAICompatTeacher]]:
    made = {
        method: OpenAICompatTeacher(
            TeacherConfig(
                name=f"local-gemma-{method}",
                base_url=local_teacher,
                model=LOCAL_MODEL_NAME,
                prompt=GEMMA_TEMPLATE,
                score_method=method,
                timeout=300.0,
                max_retries=1,
            )
        )
        for method in METHODS
    }
    yield made
    for teacher in made.values():
        await teacher.aclose()


def test_the_pairs_cover_the_cases() -> None:
    targets = [target for _, target in PAIRS.values()]
    assert len(PAIRS) == 20
    assert any(t[0].isdigit() for t in targets)
    assert any(t.startswith(" ") for t in targets)
    for start in ("𝔽₇", "½", "🎉"):
        assert any(t.startswith(start) for t in targets)


def test_the_pairs_are_what_they_claim(reference_spans: dict[str, dict[str, Any]]) -> None:
    assert reference_spans["thirty-tokens"]["count"] >= 30
    merged = reference_spans["merges-with-trailing-space"]
    # the prefix's trailing space and the target's first word are one token
    assert merged["context_tokens"] == merged["prefix_tokens"] - 1
    digit = reference_spans["digit"]
    assert digit["context_tokens"] == digit["prefix_tokens"]  # a digit never merges


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("pair", list(PAIRS))
async def test_span_ids_and_mean_agree_with_transformers(
    teachers: dict[str, OpenAICompatTeacher],
    reference_spans: dict[str, dict[str, Any]],
    gaps: dict[str, dict[str, Any]],
    method: str,
    pair: str,
) -> None:
    prefix, target = PAIRS[pair]
    span: SpanScore = await teachers[method].score(CONVERSATION, prefix, target)
    reference = reference_spans[pair]
    assert span.method == method
    assert list(span.token_ids) == reference["token_ids"]
    assert len(span.logprobs) == reference["count"]
    assert span.context_tokens == reference["context_tokens"]
    gap = abs(span.mean_logprob - reference["mean"])
    gaps[method][pair] = (gap, span.logprobs)
    assert gap < MAX_MEAN_GAP
