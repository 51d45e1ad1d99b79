from __future__ import annotations

import time

import httpx

from cord_proxy.local import LOCAL_MODEL_NAME, model_dir, prepare


def test_server_lists_the_local_model(local_teacher: str) -> None:
    response = httpx.get(f"{local_teacher}/models", timeout=10.0)

    assert response.status_code == 200
    assert LOCAL_MODEL_NAME in [entry["id"] for entry in response.json()["data"]]


def test_prepare_again_is_a_fast_no_op(local_teacher: str) -> None:
    prepare(progress=lambda _line: None)
    lines: list[str] = []

    started = time.monotonic()
    path = prepare(progress=lines.append)
    elapsed = time.monotonic() - started

    assert path == model_dir()
    assert (path / "config.json").is_file()
    assert lines == []
    assert elapsed < 1.0
