"""What the README tells a new user is what happens (issue 26): one key variable, commands
that run from the quick start's shell, `up`'s own ensemble defaults, a way to a dataset sink
beside `up`, and a response example with every field of the real `cord` object."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cord_proxy.completion import provenance
from cord_proxy.config import load_config
from cord_proxy.decoding.options import DecodeOptions
from cord_proxy.decoding.trace import RoundTiming, ScorerPart
from cord_proxy.defaults import CPU_DEFAULTS, DEFAULT_ENSEMBLE, default_config
from cord_proxy.ui.view import VIEW_PORT
from tests.test_completion import result

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
EXAMPLE = ROOT / "examples" / "local-dataset.toml"
OLD_KEY_NAMES = ("CORD_PROXY_API_KEY", "CORD_PROXY_KEY")


def fenced(*languages: str) -> list[str]:
    """The bodies of the README's fenced blocks in these languages."""
    pattern = r"^ *```(?:" + "|".join(languages) + r")\n(.*?)^ *```$"
    return re.findall(pattern, README, re.M | re.S)


def test_the_key_variable_is_stated_near_the_top() -> None:
    top = README.split("## Commands", 1)[0]
    assert "**The API key: `CORD_API_KEY`.**" in top
    assert "OPENAI_API_KEY" in top  # the one fallback, named as such


def test_no_old_key_name_is_left_outside_the_tests() -> None:
    """The tests name the old names only to check that they are read no more."""
    command = ["git", "grep", "--untracked", "-l", "-e", OLD_KEY_NAMES[0], "-e", OLD_KEY_NAMES[1]]
    found = subprocess.run(
        [*command, "--", ".", ":!tests"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert found.returncode == 1 and found.stdout == "", found.stdout


def test_the_config_example_asks_clients_for_cord_api_key() -> None:
    config = README.split("## Configuration", 1)[1].split("```toml\n", 1)[1].split("\n```", 1)[0]
    assert 'api_keys = ["env:CORD_API_KEY"]' in config


def test_every_command_in_a_shell_block_runs_from_the_quick_starts_shell() -> None:
    """Nothing the quick start leaves off PATH: the venv's commands are called by path."""
    bare = re.compile(r"^\s*(cord-proxy|python3?|pip3?|vllm-router)\b")
    lines = [line for block in fenced("bash", "sh") for line in block.splitlines()]
    assert lines and [line for line in lines if bare.match(line)] == []
    rows = re.findall(r"^\| `([^`]*cord-proxy [a-z]+)", README, re.M)
    assert rows and all(row.startswith(".venv/bin/cord-proxy ") for row in rows), rows


def test_ups_ensemble_defaults_are_shown_where_up_is_described() -> None:
    described = README.split("**`up`'s ensemble is small.**", 1)[1].split("\n\n", 1)[0]
    table = DecodeOptions()
    differ = {
        name: getattr(CPU_DEFAULTS, name)
        for name in CPU_DEFAULTS.model_fields_set
        if getattr(CPU_DEFAULTS, name) != getattr(table, name)
    }
    assert differ  # up's ensemble is not the table's
    for name, value in differ.items():
        assert re.search(rf"`{name}` {value}\b", " ".join(described.split())), name
    assert "`n` is at most `beam_width`" in described


def test_the_dataset_example_is_ups_ensemble_with_a_sink() -> None:
    config = load_config(EXAMPLE)
    embedded = default_config("http://127.0.0.1:8401/v1")
    assert config.teachers == embedded.teachers
    assert config.ensembles == embedded.ensembles
    assert config.ensemble(DEFAULT_ENSEMBLE) is not None and config.dataset.path
    assert config.server.port not in (8400, 8401, VIEW_PORT)
    assert f"--config {EXAMPLE.relative_to(ROOT).as_posix()}" in README
    assert f":{config.server.port}/ui" in README


def keys(value: Any) -> Any:
    """The shape of a JSON value: its keys, recursively, with a list's first item's."""
    if isinstance(value, dict):
        return {k: keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [keys(value[0])] if value else []
    return None


def real_cord() -> dict[str, Any]:
    """A real `cord` object, each list with one item (one scorer part, one round)."""
    decoded = result()
    part = ScorerPart(scorer="a", mean_logprob=-1.0, tokens=2, weight=1.0, method="cached")
    best = decoded.best
    steps = [s.model_copy(update={"scorers": [part]}) for s in best.steps]
    rounds = [RoundTiming(step=1, wall_s=1.0, critical_s=1.0, candidates=2)]
    traces = [best.model_copy(update={"steps": steps}), *decoded.traces[1:]]
    return provenance(decoded.model_copy(update={"traces": traces, "rounds": rounds}), "cord", 1)


@pytest.mark.parametrize("part", ["", "steps", "teachers", "rounds", "choices"])
def test_the_response_example_has_every_field_of_the_cord_object(part: str) -> None:
    example = next(
        json.loads(block) for block in fenced("json") if block.startswith('{\n  "ensemble"')
    )
    real = real_cord()
    if part:
        assert keys(example[part]) == keys(real[part])
    else:
        assert list(example) == list(real)
