"""The command line's options: the run's settings, and ``--cord`` checked up front."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cord_proxy.config import CordConfig, load_config
from cord_proxy.defaults import default_config
from cord_proxy.distill.errors import DistillError
from cord_proxy.distill.preflight import as_base_url
from cord_proxy.distill.settings import DistillSettings, default_failures_path
from cord_proxy.errors import format_validation_error
from cord_proxy.protocol import CordOptions


def parse_cord_option(text: str | None) -> dict[str, Any]:
    """``--cord '{"max_steps": 2}'``: decoding options for every problem, checked up front."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as error:
        raise DistillError(f"--cord is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise DistillError("--cord must be a JSON object")
    if "reference_answer" in value:
        raise DistillError(
            "--cord cannot set reference_answer: it comes from each problem's 'answer'"
        )
    try:
        CordOptions.model_validate(value)
    except ValidationError as error:
        raise DistillError("--cord: " + "; ".join(format_validation_error(error))) from None
    return value


def settings_of(args: Any) -> DistillSettings:
    output = Path(args.output)
    return DistillSettings(
        input=Path(args.input),
        output=output,
        failures=Path(args.failures) if args.failures else default_failures_path(output),
        concurrency=max(1, args.concurrency),
        retries=max(0, args.retries),
    )


def checked_cord(args: Any, settings: DistillSettings) -> None:
    """`--cord` into `settings`; the input must exist. `DistillError` otherwise."""
    settings.cord = parse_cord_option(args.cord)
    if not settings.input.is_file():
        raise DistillError(f"input {settings.input} does not exist")


def engine_config(
    config_path: str | None, teacher_url: str, model: str | None
) -> tuple[CordConfig, str]:
    """The config (a file, or the embedded default on the teacher URL) and the ensemble
    (by default its first)."""
    config = load_config(config_path) if config_path else default_config(as_base_url(teacher_url))
    return config, model or config.ensembles[0].name
