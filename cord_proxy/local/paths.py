"""Where the local teacher keeps its virtualenv, converted model and logs."""

from __future__ import annotations

import os
from pathlib import Path

STAMP_NAME = ".cord-installed"
MODEL_DIR_NAME = "gemma3-270m-hf"


def cord_home() -> Path:
    explicit = os.environ.get("CORD_HOME")
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "cord-proxy"


def teacher_venv() -> Path:
    return cord_home() / "teacher-venv"


def teacher_python() -> Path:
    return teacher_venv() / "bin" / "python"


def model_dir() -> Path:
    return cord_home() / "models" / MODEL_DIR_NAME


def logs_dir() -> Path:
    return cord_home() / "logs"


def stamp(directory: Path) -> Path:
    return directory / STAMP_NAME


def is_stamped(directory: Path) -> bool:
    return stamp(directory).is_file()


def venv_ready() -> bool:
    return is_stamped(teacher_venv()) and teacher_python().exists()


def model_ready() -> bool:
    return is_stamped(model_dir())
