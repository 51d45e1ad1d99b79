"""The step contract emulated for hosted teachers (teachers/emulation.py): pure functions,
no provider. The requests a provider actually receives are in test_hosted.py."""

from __future__ import annotations

from typing import Any

from cord_proxy.decoding.segment import Segmenter
from cord_proxy.teachers.base import THINK_CLOSE, Message, Proposal
from cord_proxy.teachers.capabilities import HostedCapabilities
from cord_proxy.teachers.emulation import StepPrompt, shape_reply, step_marker, step_prompt

QUESTION = [Message(role="user", content="What is 2 + 3?")]
MARKERS = ("Wait", "Alternatively", "Let me check", THINK_CLOSE)
NEWLINE = ("\n\n", THINK_CLOSE)


def caps(*, prefill: bool = False, reports_stop: bool = False) -> HostedCapabilities:
    return HostedCapabilities(
        provider="hosted_vllm" if reports_stop else "openai",
        model="fake-model",
        assistant_prefill=prefill,
        prefill_source="test",
        prompt_logprobs=False,
        reports_stop_reason=reports_stop,
        supported_params=frozenset({"n", "stop", "seed"}),
    )


def marker_step(prefix: str, stops: tuple[str, ...] = MARKERS) -> StepPrompt:
    """A step asked by instruction of a provider that does not say which stop matched."""
    return step_prompt(caps(), QUESTION, prefix, stops)


def ask(prompt: StepPrompt) -> str:
    content = prompt.messages[-1]["content"]
    assert prompt.messages[-1]["role"] == "user" and isinstance(content, str)
    return content


# --- 1. a marker and the step after it are joined with a space only between two words ------


def test_punctuation_after_a_repeated_marker_joins_without_a_space() -> None:
    prefix = "<think>\n2 + 3 looks like 6. Wait"
    prompt = marker_step(prefix)

    text, _, _ = prompt.shape("Wait, 2 + 3 = 5.", "stop", None)

    assert prefix + text == "<think>\n2 + 3 looks like 6. Wait, 2 + 3 = 5."


def test_punctuation_without_the_marker_joins_without_a_space() -> None:
    prompt = marker_step("<think>\n2 + 3 looks like 6. Wait")

    assert prompt.shape(", 2 + 3 = 5.", "stop", None)[0] == ", 2 + 3 = 5."
    assert prompt.shape("... 2 + 3 = 5.", "stop", None)[0] == "... 2 + 3 = 5."


def test_words_after_a_marker_are_separated_by_one_space() -> None:
    prompt = marker_step("<think>\n2 + 3 looks like 6. Wait")

    assert prompt.shape("2 + 3 = 5.", "stop", None)[0] == " 2 + 3 = 5."
    assert prompt.shape("Wait 2 + 3 = 5.", "stop", None)[0] == " 2 + 3 = 5."
    assert prompt.shape("Wait\n2 + 3 = 5.", "stop", None)[0] == "\n2 + 3 = 5."


def test_a_marker_that_ends_in_whitespace_gets_no_second_space() -> None:
    kw: dict[str, Any] = {"stops": ("Note: ",), "sent": {}, "marker": "Note: ", "exact": False}

    assert shape_reply("Note: 2 + 3 = 5.", "stop", None, **kw)[0] == "2 + 3 = 5."
    assert shape_reply("2 + 3 = 5.", "stop", None, **kw)[0] == "2 + 3 = 5."


# --- 2. the stop string that ended a reply is claimed only when it is known ---------------


def test_a_plain_stop_from_a_provider_that_does_not_say_which_claims_no_stop_string() -> None:
    prompt = marker_step("<think>\n2 + 3 looks like 6. Alternatively")

    text, reason, stop_string = prompt.shape("Alternatively, count: 3, 4, 5.", "stop", None)

    assert (text, reason) == (", count: 3, 4, 5.", "stop")
    assert stop_string is None  # not "Wait", the first marker, which it may never have met


def test_an_unknown_stop_opens_no_marker_and_does_not_close_the_thinking() -> None:
    (text, reason, stop_string) = marker_step("<think>\nLet me check").shape(
        " 2 + 3 = 5.", "stop", None
    )
    step = Proposal(text=text, finish_reason=reason, tokens=5, stop_string=stop_string)

    assert Segmenter(stops=MARKERS[:-1]).opening(3, step) == ""
    assert step.stop_string != THINK_CLOSE


def test_a_known_stop_is_still_named() -> None:
    prompt = marker_step("<think>\n2 + 3 looks like 6. Wait")

    assert prompt.sent == {
        "\nWait": "Wait",
        "Alternatively": "Alternatively",
        "Let me check": "Let me check",
    }
    assert prompt.shape(" a", "stop", "\nWait")[2] == "Wait"  # the provider said which
    assert prompt.shape(" a. Alternatively b", "stop", None)[2] == "Alternatively"  # cut here
    assert prompt.shape(" a.</think>5", "stop", None)[2] == THINK_CLOSE


def test_an_end_of_output_without_a_stop_is_never_read_as_closing_the_thinking() -> None:
    prefill = step_prompt(caps(prefill=True), QUESTION, "<think>\nWait", MARKERS)

    for reply in (" 2 + 3 = 5.", ""):
        _, reason, stop_string = prefill.shape(reply, "stop", None)
        assert (reason, stop_string) == ("stop", None)


# --- 3. the instruction always shows the trace so far -------------------------------------


def test_after_a_length_cut_the_instruction_shows_the_cut_step() -> None:
    prefix = "<think>\nWait, 2 + 3 is"  # the step was cut by length: no marker follows it

    prompt = marker_step(prefix)

    assert prompt.marker == ""
    assert "<trace>\nWait, 2 + 3 is\n</trace>" in ask(prompt)
    assert "(empty" not in ask(prompt)


def test_after_a_length_cut_later_in_the_trace_the_whole_trace_is_shown() -> None:
    prefix = "<think>\n2 + 3 looks like 6. Alternatively, count: 3, 4"

    assert "6. Alternatively, count: 3, 4\n</trace>" in ask(marker_step(prefix))


def test_the_marker_the_driver_wrote_is_still_found() -> None:
    assert step_marker("<think>\na. Wait", MARKERS) == "Wait"
    assert step_marker("<think>\na. Let me check", MARKERS) == "Let me check"
    assert step_marker("<think>\n### Step 1. a\n\n### Step 2.", ("### Step",)) == "### Step 2."
    assert step_marker("<think>\n### Step 1. a is 2 +", ("### Step",)) == ""
    assert "(empty: write the first step)" in ask(marker_step("<think>\n"))


# --- 4. newline steps for providers whose prefill loses trailing whitespace ----------------


def test_newline_steps_are_not_stopped_by_the_separator_the_prefill_lost() -> None:
    prefix = "<think>\nFirst, 2 + 3 is one more than 2 + 2.\n\n"

    prompt = step_prompt(caps(prefill=True), QUESTION, prefix, NEWLINE)

    # a prefill would lose the "\n\n", and the reply, writing it again, would stop at once
    assert "<trace>\nFirst, 2 + 3 is one more than 2 + 2.\n</trace>" in ask(prompt)
    assert (prompt.marker, prompt.trimmed) == ("", False)
    assert prompt.sent == {"\n\n": "\n\n"}  # the step still ends at the next blank line


def test_a_newline_step_reply_is_read_as_written() -> None:
    prompt = step_prompt(caps(prefill=True), QUESTION, "<think>\nFirst, 2 + 2 = 4.\n\n", NEWLINE)

    assert prompt.shape(prompt.received("So 2 + 3 = 5."), "stop", "\n\n") == (
        "So 2 + 3 = 5.",
        "stop",
        "\n\n",
    )
    assert prompt.shape(prompt.received(""), "stop", None) == ("", "stop", None)


def test_prefill_is_kept_where_no_stop_string_begins_with_whitespace() -> None:
    answer = step_prompt(caps(prefill=True), QUESTION, "<think>\nA.\n</think>\n\n", ())
    marker = step_prompt(caps(prefill=True), QUESTION, "<think>\nA. Wait", MARKERS)

    assert answer.messages[-1] == {
        "role": "assistant",
        "content": "<think>\nA.\n</think>",
        "prefix": True,
    }
    assert answer.received("\n\n5") == "5"
    assert marker.messages[-1] == {
        "role": "assistant",
        "content": "<think>\nA. Wait",
        "prefix": True,
    }
