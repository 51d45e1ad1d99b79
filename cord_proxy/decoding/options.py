"""The one definition of every decoding option: its type, bound, default, doc and who sets it.

An ensemble's ``[ensembles.defaults]`` is a `DecodeOptions`; a request overrides it, either in
its ``cord`` object (options marked ``cord``) or through a standard OpenAI field (options marked
with that field's name). The request's ``cord`` model and the README table are derived from
this class, so a new option is one field here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, MaxLen, MinLen
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo

Segmentation = Literal["prompt", "newline", "markers"]
ScoreNormalisation = Literal["token", "byte"]

DEFAULT_MARKERS = ("Wait", "Alternatively", "Let me check")
MAX_SEED = 2**63 - 1
CORD = "cord"
CONFIG = "config"


def _no_blank_strings(values: tuple[str, ...]) -> tuple[str, ...]:
    if any(not value.strip() for value in values):
        raise ValueError("must not hold empty strings")
    return values


def _no_empty_strings(values: tuple[str, ...]) -> tuple[str, ...]:
    if any(not value for value in values):
        raise ValueError("must not hold empty strings")
    return values


Markers = Annotated[tuple[str, ...], MinLen(1), MaxLen(32), AfterValidator(_no_blank_strings)]
StopStrings = Annotated[tuple[str, ...], MaxLen(16), AfterValidator(_no_empty_strings)]
Temperature = Annotated[float, Ge(0.0), Le(2.0)]
TopP = Annotated[float, Gt(0.0), Le(1.0)]
Seed = Annotated[int, Ge(0), Le(MAX_SEED)]
ChoiceCount = Annotated[int, Ge(1), Le(64)]


def option(default: Any, set_by: str, doc: str) -> Any:
    """A field of `DecodeOptions`: `set_by` is ``cord``, ``config`` or a request field's name."""
    return Field(default, description=doc, json_schema_extra={"set_by": set_by})


class DecodeOptions(BaseModel):
    """How one trace is searched for. Every field has the paper's meaning (docs/method.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    beam_width: Annotated[int, Ge(1), Le(64)] = option(
        4, CORD, "`B`: partial traces kept after each step"
    )
    proposals_per_teacher: Annotated[int, Ge(1), Le(16)] = option(
        1, CORD, "proposals each teacher makes for each kept prefix"
    )
    segmentation: Segmentation = option(
        "prompt", CORD, "`prompt` (`### Step N.`), `newline` (`\\n\\n`) or `markers`"
    )
    markers: Markers = option(
        DEFAULT_MARKERS, CORD, "with `markers`: words that open a new step (e.g. `Wait`)"
    )
    thinking_budget: Annotated[int, Ge(1), Le(1_000_000)] = option(
        16384, CORD, "tokens of reasoning before the think block is closed"
    )
    answer_budget: Annotated[int, Ge(1), Le(1_000_000)] = option(4096, CORD, "tokens of the answer")
    max_step_tokens: Annotated[int, Ge(1), Le(100_000)] = option(1024, CORD, "tokens of one step")
    max_steps: Annotated[int, Ge(1), Le(1024)] = option(64, CORD, "steps of one trace")
    include_candidates: bool = option(
        False, CORD, "also return every rejected candidate of every step"
    )
    score_normalisation: ScoreNormalisation = option(
        "token", CONFIG, "step mode: a step's score per `token` or per `byte`"
    )
    answer_prompt: str = option(
        "</think> The final answer is ", CONFIG, "reference mode: text between step and answer"
    )
    answer_stop: StopStrings = option((), "stop", "strings that end the answer")
    seed: Seed | None = option(None, "seed", "a seeded decode gives the same trace every time")
    temperature: Temperature | None = option(None, "temperature", "overrides every teacher's")
    top_p: TopP | None = option(None, "top_p", "overrides every teacher's")
    round_timeout: Annotated[float, Gt(0.0), Le(86_400.0)] = option(
        600.0, CONFIG, "seconds a round waits for proposals, then for reads; stragglers are cut"
    )
    n: ChoiceCount = option(1, "n", "finished traces to return, at most `beam_width`")

    def overridden(self, overrides: Mapping[str, Any]) -> DecodeOptions:
        """These options with some fields replaced, all validated again (a ValidationError)."""
        if not overrides:
            return self
        return DecodeOptions.model_validate({**self.model_dump(), **overrides})


def set_by(name: str) -> str:
    """Who sets an option: ``cord``, ``config``, or the name of a standard request field."""
    extra = DecodeOptions.model_fields[name].json_schema_extra
    assert isinstance(extra, dict)
    return str(extra["set_by"])


def options_set_by(who: str) -> Iterator[tuple[str, FieldInfo]]:
    """The options a request's ``cord`` object (or one request field, or only config) sets."""
    for name, info in DecodeOptions.model_fields.items():
        if set_by(name) == who:
            yield name, info


def request_fields() -> dict[str, str]:
    """Standard request field name -> the option it sets."""
    return {
        set_by(name): name
        for name in DecodeOptions.model_fields
        if set_by(name) not in {CORD, CONFIG}
    }


def unset_field(info: FieldInfo) -> tuple[Any, Any]:
    """A field with the option's type and bounds that defaults to None (not given)."""
    annotation: Any = info.annotation
    if info.metadata:
        annotation = Annotated[annotation, *info.metadata]
    return (annotation | None, Field(None, description=info.description))


def bounds_of(info: FieldInfo) -> str:
    """An option's bounds as text: ``1 to 64``, ``> 0 to 1``, ``1 to 32 items``."""
    low = high = ""
    items = False
    for item in _constraints(info):
        if isinstance(item, Ge | Gt):
            low = f"{item.ge:,}" if isinstance(item, Ge) else f"> {item.gt:,}"
        elif isinstance(item, Le):
            high = f"{item.le:,}"
        elif isinstance(item, MinLen | MaxLen):
            items = True
            if isinstance(item, MinLen):
                low = str(item.min_length)
            else:
                high = f"{item.max_length:,}"
    text = f"{low or 0} to {high}" if high else (f"at least {low}" if low else "")
    unit = " characters" if _is_text(info.annotation) else " items"
    return text + unit if items and text else text


def _is_text(annotation: Any) -> bool:
    if get_origin(annotation) in (Union, UnionType):
        return str in get_args(annotation)
    return annotation is str


def _constraints(info: FieldInfo) -> list[Any]:
    metadata = list(info.metadata)
    for argument in getattr(info.annotation, "__args__", ()):
        metadata += list(getattr(argument, "__metadata__", ()))
    return metadata
