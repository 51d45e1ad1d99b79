from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator

import pytest

from cord_proxy.local import LOCAL_MODEL_NAME, LocalTeacherServer, prepare, served_models
from tests.batches.teacher_tap import TeacherTap


def _report(line: str) -> None:
    print(line, file=sys.__stderr__, flush=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_base_url(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/v1") else f"{url}/v1"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "local_teacher" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def local_teacher() -> Iterator[str]:
    """The base URL (``http://127.0.0.1:PORT/v1``) of a running local teacher."""
    given = os.environ.get("CORD_TEST_TEACHER_URL")
    if given:
        base_url = _as_base_url(given)
        if LOCAL_MODEL_NAME not in (served_models(base_url) or []):
            pytest.fail(f"CORD_TEST_TEACHER_URL={given} does not serve {LOCAL_MODEL_NAME}")
        yield base_url
        return
    prepare(progress=_report)
    server = LocalTeacherServer(progress=_report).start(port=_free_port())
    try:
        yield server.base_url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def tap(local_teacher: str) -> Iterator[TeacherTap]:
    """A recording pass-through in front of the real local teacher (batches/teacher_tap.py)."""
    recorder = TeacherTap(local_teacher).start()
    yield recorder
    recorder.stop()
