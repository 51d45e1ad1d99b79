"""The deploy tests' fixture: FAKE commands for the scripts (deploy_fakes.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.deploy_fakes import Fakes, make_fakes


@pytest.fixture
def fakes(tmp_path: Path) -> Fakes:
    return make_fakes(tmp_path)
