"""Run tests/integration/transformers_logprobs.py in the teacher's virtualenv: the
independent reference the real teacher's scores are checked against."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cord_proxy.local import model_dir, teacher_python

HELPER = Path(__file__).with_name("transformers_logprobs.py")


def transformers_items(items: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
    """Each item's span by transformers on the same weights, in float32 (see the helper)."""
    request = {"model_dir": str(model_dir()), "dtype": "float32", "threads": 1, "items": items}
    done = subprocess.run(
        [str(teacher_python()), str(HELPER)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"transformers_logprobs.py failed:\n{done.stderr[-3000:]}")
    answers: list[dict[str, Any]] = json.loads(done.stdout)["items"]
    return answers
