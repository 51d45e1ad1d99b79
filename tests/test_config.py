"""Config loading: valid files load, bad ones fail at start naming every bad field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cord_proxy.config import load_config
from cord_proxy.defaults import DEFAULT_ENSEMBLE, default_config
from cord_proxy.errors import ConfigError
from cord_proxy.secret_refs import resolve_secret

ROOT = Path(__file__).resolve().parents[1]

BAD = """
[server]
port = 70000

[[teachers]]
name = "a"
base_url = "localhost:8000"
model = "m"
temperature = 3.0
api_key = "sk-inline-secret"

[[teachers]]
name = "b"
model = "m"

[[ensembles]]
name = "cord"
teachers = ["a"]
[ensembles.defaults]
beam_width = 0
segmentation = "sentences"
"""


def test_a_bad_config_names_every_bad_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BAD)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problems = "\n".join(caught.value.problems)
    for field in (
        "server.port",
        "teachers.0.base_url",
        "teachers.0.temperature",
        "teachers.0.api_key",
        "teachers.1",
        "ensembles.0.defaults.beam_width",
        "ensembles.0.defaults.segmentation",
    ):
        assert field in problems, (field, problems)
    assert "sk-inline-secret" not in str(caught.value)


def test_references_to_unknown_teachers_are_named(tmp_path: Path) -> None:
    path = tmp_path / "refs.toml"
    path.write_text(
        '[[teachers]]\nname = "a"\nbase_url = "http://h/v1"\nmodel = "m"\nroles = ["propose"]\n'
        '[[ensembles]]\nname = "e"\nteachers = ["a", "ghost"]\n'
    )
    with pytest.raises(ConfigError, match="unknown teacher 'ghost'"):
        load_config(path)


def test_missing_file_and_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[server\nport = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)


def test_secrets_resolve_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORD_TEST_SECRET", "s3cret")
    assert resolve_secret("env:CORD_TEST_SECRET") == "s3cret"
    monkeypatch.delenv("CORD_TEST_SECRET")
    with pytest.raises(ConfigError, match="CORD_TEST_SECRET is not set"):
        resolve_secret("env:CORD_TEST_SECRET")


def test_serve_refuses_a_bad_config_at_start(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BAD)
    done = subprocess.run(
        [sys.executable, "-m", "cord_proxy", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "teachers.0.temperature" in done.stderr and "Traceback" not in done.stderr


def test_the_readme_config_example_loads(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Configuration", 1)[1]
    example = section.split("```toml\n", 1)[1].split("\n```", 1)[0]
    path = tmp_path / "readme.toml"
    path.write_text(example)
    config = load_config(path)
    assert config.ensemble("cord") is not None
    assert config.dataset.path == str(tmp_path / "traces.jsonl")  # from the file's folder


PATHS = """
[[teachers]]
name = "a"
base_url = "http://127.0.0.1:8000/v1"
model = "m"

[[ensembles]]
name = "cord"
teachers = ["a"]

[dataset]
path = "{dataset}"

[batches]
data_dir = "{data_dir}"
"""


def _paths_config(folder: Path, dataset: str, data_dir: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cord.toml"
    path.write_text(PATHS.format(dataset=dataset, data_dir=data_dir), encoding="utf-8")
    return path


def test_relative_paths_are_read_from_the_config_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cord_proxy.batches.routes import data_dir
    from cord_proxy.data.sink import JsonlSink, sink_for

    folder = tmp_path / "configs"
    path = _paths_config(folder, "data/traces.jsonl", "../state")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for given in (path, Path("..") / "configs" / "cord.toml"):  # the file named either way
        config = load_config(given)
        assert config.dataset.path == str(folder / "data" / "traces.jsonl")
        assert data_dir(config.batches).resolve() == tmp_path / "state"
    sink = sink_for(config.dataset)
    assert isinstance(sink, JsonlSink) and sink.path == folder / "data" / "traces.jsonl"
    assert (folder / "data").is_dir() and not (elsewhere / "data").exists()


def test_absolute_and_home_paths_stay_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = _paths_config(tmp_path / "c", str(tmp_path / "abs.jsonl"), "~/cord-state")
    config = load_config(path)
    assert config.dataset.path == str(tmp_path / "abs.jsonl")
    assert config.batches.data_dir == str(tmp_path / "home" / "cord-state")
    unset = PATHS.split("[dataset]")[0]  # no path given: the defaults stay the defaults
    (tmp_path / "c" / "cord.toml").write_text(unset, encoding="utf-8")
    config = load_config(tmp_path / "c" / "cord.toml")
    assert config.dataset.path is None and config.batches.data_dir is None


def test_the_embedded_default_is_three_homogeneous_teachers() -> None:
    config = default_config("http://127.0.0.1:8401/v1")
    assert [t.temperature for t in config.teachers] == [0.5, 0.6, 0.7]
    assert {t.base_url for t in config.teachers} == {"http://127.0.0.1:8401/v1"}
    ensemble = config.ensemble(DEFAULT_ENSEMBLE)
    assert ensemble is not None and len(ensemble.teachers) == 3
