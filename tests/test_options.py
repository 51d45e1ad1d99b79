"""Every decoding option, walked from its one definition: the request and the config accept it
with the same bounds, the runtime applies it, and the README's table is rendered from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import pytest
from annotated_types import Ge, Gt, Le, MaxLen, MinLen
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from cord_proxy.config import EnsembleConfig
from cord_proxy.decoding.options import CONFIG, CORD, DecodeOptions, set_by
from cord_proxy.options_doc import options_table, with_table
from cord_proxy.protocol import ChatCompletionRequest, CordFields, CordOptions
from tests.support.fakes import ScriptedFakeTeacher

README = Path(__file__).resolve().parents[1] / "README.md"
OPTIONS = list(DecodeOptions.model_fields.items())
NAMES = [name for name, _ in OPTIONS]
LIMITS: dict[str, Any] = {"max_teacher_calls": 10_000_000, "max_candidates_per_step": 100_000}


def constraints(info: FieldInfo) -> list[Any]:
    found = list(info.metadata)
    for argument in get_args(info.annotation):
        found += list(getattr(argument, "__metadata__", ()))
    return found


def sample(info: FieldInfo) -> Any:
    """A valid value other than the default where one exists."""
    options = get_args(get_args(info.annotation)[0] if info.default is None else info.annotation)
    literal = [o for o in options if isinstance(o, str)]
    if isinstance(info.default, bool):
        return not info.default
    if literal and info.default in literal:
        return next(o for o in literal if o != info.default)
    if isinstance(info.default, str):
        return info.default + "x"
    return None


def edges(info: FieldInfo) -> tuple[list[Any], list[Any]]:
    """Values at the option's bounds (accepted) and just past them (refused)."""
    accepted: list[Any] = []
    refused: list[Any] = []
    for item in constraints(info):
        if isinstance(item, Ge):
            accepted.append(item.ge)
            refused.append(item.ge - 1)
        elif isinstance(item, Gt):
            refused.append(item.gt)
        elif isinstance(item, Le):
            accepted.append(item.le)
            refused.append(item.le + 1)
        elif isinstance(item, MinLen) and item.min_length:
            accepted.append(["w"] * item.min_length)
            refused.append(["w"] * (item.min_length - 1))
        elif isinstance(item, MaxLen):
            accepted.append(["w"] * item.max_length)
            refused.append(["w"] * (item.max_length + 1))
    return accepted, refused


def request_body(name: str, value: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "e", "messages": [{"role": "user", "content": "q"}]}
    who = set_by(name)
    if who == CORD:
        body["cord"] = {name: value}
    else:
        body[who] = value
    return body


def request_accepts(name: str, value: Any) -> bool:
    try:
        ChatCompletionRequest.model_validate(request_body(name, value))
    except ValidationError:
        return False
    return True


def config_accepts(name: str, value: Any) -> bool:
    try:
        EnsembleConfig(name="e", teachers=("a",), defaults={name: value})  # type: ignore[arg-type]
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize(("name", "info"), OPTIONS, ids=NAMES)
def test_request_and_config_share_every_bound(name: str, info: FieldInfo) -> None:
    accepted, refused = edges(info)
    for value in accepted:
        assert config_accepts(name, value), (name, value)
        if set_by(name) != CONFIG:
            assert request_accepts(name, value), (name, value)
    for value in refused:
        assert not config_accepts(name, value), (name, value)
        if set_by(name) != CONFIG:
            assert not request_accepts(name, value), (name, value)


@pytest.mark.parametrize(("name", "info"), OPTIONS, ids=NAMES)
def test_each_option_is_set_where_its_definition_says(name: str, info: FieldInfo) -> None:
    in_cord = name in CordOptions.model_fields
    assert in_cord == (set_by(name) == CORD), name
    if set_by(name) == CONFIG:
        assert not request_accepts_cord(name, info.default)
    elif set_by(name) != CORD:
        assert set_by(name) in ChatCompletionRequest.model_fields, name


def request_accepts_cord(name: str, value: Any) -> bool:
    body = {"model": "e", "messages": [{"role": "user", "content": "q"}], "cord": {name: value}}
    try:
        ChatCompletionRequest.model_validate(body)
    except ValidationError:
        return False
    return True


REQUEST_OPTIONS = [(name, info) for name, info in OPTIONS if set_by(name) != CONFIG]


@pytest.mark.parametrize(("name", "info"), REQUEST_OPTIONS, ids=[n for n, _ in REQUEST_OPTIONS])
def test_the_runtime_applies_every_request_option(name: str, info: FieldInfo) -> None:
    accepted, _ = edges(info)
    value = sample(info) if not accepted else accepted[0]
    if name == "n":
        value = 2
    assert value is not None, name
    request = ChatCompletionRequest.model_validate(request_body(name, value))
    job = runtime().job_for_request(request)
    got = getattr(job.decode.options, name)
    assert got == (tuple(value) if isinstance(value, list) else value), name


CONFIG_ONLY = [(name, info) for name, info in OPTIONS if set_by(name) == CONFIG]


@pytest.mark.parametrize(("name", "info"), CONFIG_ONLY, ids=[n for n, _ in CONFIG_ONLY])
def test_a_config_only_option_reaches_the_decode(name: str, info: FieldInfo) -> None:
    accepted, _ = edges(info)
    value = accepted[-1] if accepted else sample(info)
    assert value is not None and value != info.default, name
    options = runtime({name: value}).job("e", []).decode.options
    assert getattr(options, name) == value


def test_the_cord_model_is_the_options_plus_its_own_fields() -> None:
    cord_options = {name for name in NAMES if set_by(name) == CORD}
    assert set(CordOptions.model_fields) == set(CordFields.model_fields) | cord_options


def test_the_readme_table_is_rendered_from_the_definition() -> None:
    readme = README.read_text(encoding="utf-8")
    assert with_table(readme) == readme, "run: python -m cord_proxy.options_doc --write README.md"
    for name in NAMES:
        assert f"| `{name}` |" in options_table()


def runtime(defaults: dict[str, Any] | None = None) -> Any:
    from cord_proxy.config import CordConfig, LimitsConfig, TeacherConfig
    from cord_proxy.runtime import Runtime

    config = CordConfig(
        teachers=(TeacherConfig(name="a", base_url="http://127.0.0.1:9/v1", model="m"),),
        ensembles=(
            EnsembleConfig(
                name="e",
                teachers=("a",),
                defaults=DecodeOptions(beam_width=64, **(defaults or {})),
            ),
        ),
        limits=LimitsConfig(**LIMITS),
    )
    return Runtime(config, {"a": ScriptedFakeTeacher("a", logprobs=[-0.5])})


def test_a_whitespace_stop_string_is_a_stop_string() -> None:
    request = ChatCompletionRequest.model_validate(request_body("answer_stop", ["\n\n", "\n"]))
    assert runtime().job_for_request(request).decode.options.answer_stop == ("\n\n", "\n")
    assert config_accepts("answer_stop", ["\n\n"])
    assert not request_accepts("answer_stop", [""])


def test_standard_fields_left_out_keep_the_ensembles_defaults() -> None:
    defaults = {"n": 2, "answer_stop": ("END",), "seed": 3, "temperature": 0.2, "top_p": 0.9}
    request = ChatCompletionRequest.model_validate(request_body("beam_width", 4))
    options = runtime(defaults).job_for_request(request).decode.options
    assert {name: getattr(options, name) for name in defaults} == defaults
    given = ChatCompletionRequest.model_validate({**request_body("n", 1), "stop": "X"})
    options = runtime(defaults).job_for_request(given).decode.options
    assert (options.n, options.answer_stop) == (1, ("X",))
