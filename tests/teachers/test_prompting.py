"""What a teacher receives: rendered template prompts and chat messages with an open turn."""

from __future__ import annotations

from cord_proxy.config import GEMMA_TEMPLATE, TemplatePrompt
from cord_proxy.teachers.base import Message
from cord_proxy.teachers.prompting import chat_messages, render_template, with_system_prompt

CONVERSATION = [
    Message(role="user", content="What is 2+3?"),
    Message(role="assistant", content="5"),
    Message(role="user", content="And 6*7?"),
]


def test_gemma_template_renders_turns_and_an_open_model_turn() -> None:
    text = render_template(GEMMA_TEMPLATE, CONVERSATION, "### Step 1. Multiply")
    assert text == (
        "<start_of_turn>user\nWhat is 2+3?<end_of_turn>\n"
        "<start_of_turn>model\n5<end_of_turn>\n"
        "<start_of_turn>user\nAnd 6*7?<end_of_turn>\n"
        "<start_of_turn>model\n### Step 1. Multiply"
    )


def test_empty_prefix_ends_right_after_the_open_turn() -> None:
    text = render_template(GEMMA_TEMPLATE, CONVERSATION[:1], "")
    assert text.endswith("<end_of_turn>\n<start_of_turn>model\n")


def test_prefix_is_kept_verbatim_with_its_whitespace() -> None:
    prefix = "  step one\n\n"
    text = render_template(GEMMA_TEMPLATE, CONVERSATION[:1], prefix)
    assert text.endswith("<start_of_turn>model\n" + prefix)


def test_system_and_developer_use_the_system_field() -> None:
    template = TemplatePrompt(
        system="S[{content}]", user="U[{content}]", assistant="A[{content}]", assistant_open="A["
    )
    conversation = [
        Message(role="developer", content="dev"),
        Message(role="system", content="sys"),
        Message(role="user", content="hi"),
        Message(role="assistant", content="yo"),
    ]
    assert render_template(template, conversation, "go") == "S[dev]S[sys]U[hi]A[yo]A[go"


def test_default_system_field_of_a_template() -> None:
    template = TemplatePrompt(user="U:{content}\n", assistant="A:{content}\n", assistant_open="A:")
    rendered = render_template(template, [Message(role="system", content="Be brief.")], "")
    assert rendered == "Be brief.\n\nA:"


def test_content_with_braces_is_not_reinterpreted() -> None:
    message = Message(role="user", content="f({content}) = {x}")
    text = render_template(GEMMA_TEMPLATE, [message], "")
    assert "<start_of_turn>user\nf({content}) = {x}<end_of_turn>\n" in text


def test_teacher_system_prompt_goes_first() -> None:
    full = with_system_prompt(CONVERSATION, "You are a careful tutor.")
    assert full[0] == Message(role="system", content="You are a careful tutor.")
    assert full[1:] == CONVERSATION
    assert with_system_prompt(CONVERSATION, None) == CONVERSATION
    assert with_system_prompt(CONVERSATION, "") == CONVERSATION


def test_rendered_system_prompt_comes_before_the_conversation() -> None:
    full = with_system_prompt(CONVERSATION[:1], "Think step by step.")
    text = render_template(GEMMA_TEMPLATE, full, "")
    assert text.startswith("<start_of_turn>user\nThink step by step.<end_of_turn>\n")
    assert text.index("Think step by step.") < text.index("What is 2+3?")


def test_chat_messages_end_with_the_partial_assistant_turn() -> None:
    conversation = [Message(role="developer", content="dev"), *CONVERSATION]
    messages = chat_messages(conversation, "### Step 1.")
    assert messages == [
        {"role": "system", "content": "dev"},
        {"role": "user", "content": "What is 2+3?"},
        {"role": "assistant", "content": "5"},
        {"role": "user", "content": "And 6*7?"},
        {"role": "assistant", "content": "### Step 1."},
    ]


def test_chat_messages_keep_an_empty_prefix_turn() -> None:
    messages = chat_messages(CONVERSATION[:1], "")
    assert messages[-1] == {"role": "assistant", "content": ""}
