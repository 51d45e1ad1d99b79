"""The command line's own words: the README's command table names every option of the
commands that start something, and `--help` texts are whole sentences with their defaults."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from cord_proxy.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"
UNLISTED = {"--help", "--log-level"}  # every command has them


def _command_rows() -> dict[str, str]:
    """The README command table's rows by command (``teachers check``, ``view`` ...)."""
    rows = re.findall(
        r"^\| `\.venv/bin/cord-proxy ([a-z]+(?: check)?)\b(.*)$", README.read_text(), re.M
    )
    return dict(rows)


def _subparser(*names: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in names:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def _help_of(parser: argparse.ArgumentParser, option: str) -> str:
    action = next(a for a in parser._actions if option in a.option_strings)
    return str(action.help % {"default": action.default})


@pytest.mark.parametrize("command", ["up", "serve", "view", "teachers check"])
def test_the_command_table_names_every_option(command: str) -> None:
    row = _command_rows()[command]
    options = {
        option
        for action in _subparser(*command.split())._actions
        for option in action.option_strings
        if option.startswith("--")
    }
    assert {o for o in options - UNLISTED if o not in row} == set()


def test_the_command_table_says_teachers_check_starts_the_local_teacher() -> None:
    row = _command_rows()["teachers check"]
    assert "without `--config`" in row and "starts" in row and "install" in row


def test_teacher_url_help_is_whole_and_names_its_default() -> None:
    text = _help_of(_subparser("distill"), "--teacher-url")
    assert "http://127.0.0.1:8401/v1" in text and text.endswith(")")
    assert "cord-proxy up" in text
