"""Offset math of spans.py: which prompt tokens belong to a target that ends the prompt."""

from __future__ import annotations

import pytest

from cord_proxy.teachers.base import SpanScore
from cord_proxy.teachers.spans import span_from_lengths, span_from_offsets

# As vLLM answers `echo: true` for "The capital of France is Paris." (see the local teacher):
# token 0 is "<bos>" with no log-probability, and text_offset counts its 5 characters.
ECHO_TOKENS = ["<bos>", "The", " capital", " of", " France", " is", " Paris", "."]
ECHO_OFFSETS = [0, 5, 8, 16, 19, 26, 29, 35]
ECHO_LOGPROBS: list[float | None] = [None, -2.89, -9.69, -0.88, -5.07, -1.32, -2.43, -0.81]
TEXT = "The capital of France is Paris."


def _offsets_without_bos() -> list[int]:
    return [offset - len("<bos>") for offset in ECHO_OFFSETS]


def test_whole_tokens_at_the_end() -> None:
    span = span_from_offsets(ECHO_TOKENS, ECHO_LOGPROBS, ECHO_OFFSETS, len(" Paris."))
    assert span == SpanScore(tokens=(" Paris", "."), logprobs=(-2.43, -0.81), context_tokens=6)
    assert span.mean_logprob == pytest.approx((-2.43 - 0.81) / 2)


def test_bos_shift_of_offsets_does_not_matter() -> None:
    """Only differences of offsets matter: the <bos> shift (or none) gives the same span."""
    shifted = span_from_offsets(ECHO_TOKENS, ECHO_LOGPROBS, ECHO_OFFSETS, len(" France is Paris."))
    unshifted = span_from_offsets(
        ECHO_TOKENS, ECHO_LOGPROBS, _offsets_without_bos(), len(" France is Paris.")
    )
    assert shifted == unshifted
    assert "".join(shifted.tokens) == " France is Paris."


def test_token_straddling_the_boundary_belongs_to_the_span() -> None:
    """Target "aris." starts inside " Paris": that token carries target characters."""
    span = span_from_offsets(ECHO_TOKENS, ECHO_LOGPROBS, ECHO_OFFSETS, len("aris."))
    assert span.tokens == (" Paris", ".")
    assert span.context_tokens == 6
    joined = "".join(span.tokens)
    assert joined.endswith("aris.") and len(joined) > len("aris.")


def test_target_of_exactly_one_last_character() -> None:
    span = span_from_offsets(ECHO_TOKENS, ECHO_LOGPROBS, ECHO_OFFSETS, 1)
    assert span.tokens == (".",)
    assert span.logprobs == (-0.81,)


def test_boundary_exactly_between_tokens_takes_no_context_token() -> None:
    """A target that starts where a token starts does not pull in the token before it."""
    for first in range(1, len(ECHO_TOKENS)):
        target_chars = len(TEXT) - (ECHO_OFFSETS[first] - len("<bos>"))
        span = span_from_offsets(ECHO_TOKENS, ECHO_LOGPROBS, ECHO_OFFSETS, target_chars)
        assert span.context_tokens == first
        assert "".join(span.tokens) == TEXT[-target_chars:]


def test_zero_target_characters_give_an_empty_span() -> None:
    span = span_from_offsets(ECHO_TOKENS, ECHO_LOGPROBS, ECHO_OFFSETS, 0)
    assert span.tokens == () and span.logprobs == ()
    assert span.context_tokens == len(ECHO_TOKENS)


def test_no_tokens_give_an_empty_span() -> None:
    assert span_from_offsets([], [], [], 5) == SpanScore(tokens=(), logprobs=())


def test_span_reaching_the_null_logprob_of_token_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="first prompt token"):
        span_from_offsets(ECHO_TOKENS, ECHO_LOGPROBS, ECHO_OFFSETS, len(TEXT) + 1)


def test_span_covering_the_whole_text_after_bos_is_allowed() -> None:
    span = span_from_offsets(ECHO_TOKENS, ECHO_LOGPROBS, ECHO_OFFSETS, len(TEXT))
    assert span.context_tokens == 1
    assert "".join(span.tokens) == TEXT


def test_lengths_match_offsets_for_prompt_logprobs() -> None:
    """prompt_logprobs: token 0 is null (decoded as ""), offsets rebuilt from lengths."""
    tokens = ["", *ECHO_TOKENS[1:]]
    for target in (".", "aris.", " Paris.", " France is Paris.", TEXT):
        by_lengths = span_from_lengths(tokens, ECHO_LOGPROBS, len(target))
        by_offsets = span_from_offsets(ECHO_TOKENS, ECHO_LOGPROBS, ECHO_OFFSETS, len(target))
        assert by_lengths == by_offsets, target


def test_lengths_with_merged_whitespace_straddle() -> None:
    """A "\\n\\n" token whose first newline ends the prefix and second starts the target."""
    tokens = ["", "Step", " one", ".", "\n\n", "###", " Step"]
    logprobs: list[float | None] = [None, -1.0, -2.0, -3.0, -0.5, -0.25, -0.125]
    span = span_from_lengths(tokens, logprobs, len("\n### Step"))
    assert span.tokens == ("\n\n", "###", " Step")
    assert span.logprobs == (-0.5, -0.25, -0.125)
    assert span.context_tokens == 4


def test_lengths_span_into_token_zero_is_refused() -> None:
    with pytest.raises(ValueError):
        span_from_lengths(["", "a", "b"], [None, -1.0, -1.0], 3)


# vLLM decodes the byte-fallback pieces of a rare character as "" and the character on the
# last piece: "Answer: 𠀋 ok" is <bos> "Answer" ":" " " "" "" "" "𠀋" " ok".
BYTE_TOKENS = ["", "Answer", ":", " ", "", "", "", "\U0002000b", " ok"]
BYTE_LOGPROBS: list[float | None] = [None, -1.0, -2.0, -3.0, -10.8, -5.6, -2.3, -3.9, -15.2]


def test_byte_pieces_of_the_first_target_character_belong_to_the_span() -> None:
    span = span_from_lengths(BYTE_TOKENS, BYTE_LOGPROBS, len("\U0002000b ok"))
    assert span.tokens == ("", "", "", "\U0002000b", " ok")
    assert span.logprobs == (-10.8, -5.6, -2.3, -3.9, -15.2)
    assert span.context_tokens == 4


def test_byte_pieces_of_the_last_prefix_character_stay_in_the_context() -> None:
    span = span_from_lengths(BYTE_TOKENS, BYTE_LOGPROBS, len(" ok"))
    assert span.tokens == (" ok",)
    assert span.context_tokens == 8


def test_byte_pieces_with_echo_offsets() -> None:
    offsets = [0, 5, 11, 12, 13, 13, 13, 13, 14]  # echo: "<bos>" counted, pieces at 13
    tokens = ["<bos>", *BYTE_TOKENS[1:]]
    span = span_from_offsets(tokens, BYTE_LOGPROBS, offsets, len("\U0002000b ok"))
    assert span.tokens == ("", "", "", "\U0002000b", " ok")


def test_empty_bos_is_never_pulled_into_the_span() -> None:
    """prompt_logprobs' token 0 decodes as "" too, but has no log-probability."""
    tokens = ["", "", "", "\U0002000b"]
    span = span_from_lengths(tokens, [None, -1.0, -2.0, -3.0], 1)
    assert span.tokens == ("", "", "\U0002000b")
    assert span.context_tokens == 1
