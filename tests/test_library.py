"""The engine as a library (README, "The engine as a library"): `open_teachers` closes what
it opened, so the README's snippet leaves no "Unclosed client session" behind (issue 26).

The teachers are the FAKE counting server (tests/support/fake_teacher_http.py): these tests
check sessions and warnings, not what the teachers say.
"""

from __future__ import annotations

import gc
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import aiohttp
import pytest

from cord_proxy import DecodeJob, DecodeOptions, TeacherConfig, decode, open_teachers
from cord_proxy.teachers.openai_compat import OpenAICompatTeacher
from cord_proxy.teachers.plain_http import PlainHttp
from tests.support.fake_teacher_http import CountingFakeTeacher

ROOT = Path(__file__).resolve().parents[1]
README_URL = "http://127.0.0.1:8401/v1"
UNCLOSED = "Unclosed client session"


@pytest.fixture(scope="module")
def fake_teacher() -> Iterator[str]:
    with CountingFakeTeacher() as url:
        yield url


def readme_snippet() -> str:
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## The engine as a library")
    assert len(section) == 2, "the README has one 'The engine as a library' section"
    found = re.search(r"```python\n(.*?)```", section[1], re.S)
    assert found is not None
    return found.group(1)


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "always::ResourceWarning", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_readme_snippet_closes_its_teachers(fake_teacher: str) -> None:
    code = readme_snippet()
    assert README_URL in code and "open_teachers" in code
    run = run_python(code.replace(README_URL, fake_teacher))
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip(), "the snippet prints the best trace"
    assert UNCLOSED not in run.stderr and "ResourceWarning" not in run.stderr, run.stderr[-3000:]


def test_teachers_left_open_are_what_the_warning_catches(fake_teacher: str) -> None:
    """The control: the snippet's old form (teachers never closed) warns once a session."""
    code = f"""
import asyncio
from cord_proxy import DecodeJob, DecodeOptions, OpenAICompatTeacher, TeacherConfig, decode
teachers = [OpenAICompatTeacher(TeacherConfig(name=f"t{{t}}", base_url="{fake_teacher}",
                                              model="m", temperature=t)) for t in (0.5, 0.6)]
job = DecodeJob.create("What is 1 + 1?", teachers, DecodeOptions(beam_width=1, max_steps=1))
asyncio.run(decode(job))
"""
    run = run_python(code)
    assert run.returncode == 0, run.stderr[-3000:]
    assert UNCLOSED in run.stderr


def _configs(url: str) -> list[TeacherConfig]:
    return [TeacherConfig(name=f"t{t}", base_url=url, model="m", temperature=t) for t in (0.5, 0.6)]


def _sessions(teachers: Sequence[object]) -> list[aiohttp.ClientSession | PlainHttp]:
    """Each teacher's HTTP client: its own connections over plain http, else its session."""
    sessions: list[aiohttp.ClientSession | PlainHttp] = []
    for teacher in teachers:
        assert isinstance(teacher, OpenAICompatTeacher)
        plain = teacher._endpoint.plain
        if plain is not None:
            assert plain.connections > 0, "the decode opened connections"
            sessions.append(plain)
            continue
        session = teacher._session
        assert session is not None and not session.closed, "the decode opened a session"
        sessions.append(session)
    return sessions


async def test_leaving_the_block_closes_every_session(
    fake_teacher: str, recwarn: pytest.WarningsRecorder
) -> None:
    async with open_teachers(_configs(fake_teacher)) as teachers:
        job = DecodeJob.create("What is 1 + 1?", teachers, DecodeOptions(beam_width=1, max_steps=1))
        result = await decode(job)
        sessions = _sessions(teachers)
        first, second = teachers
        assert isinstance(first, OpenAICompatTeacher) and isinstance(second, OpenAICompatTeacher)
        assert first.breaker is second.breaker  # one endpoint, one breaker, as in the proxy
    assert result.best is not None
    assert all(s.closed for s in sessions)
    assert all(s.connections == 0 for s in sessions if isinstance(s, PlainHttp))
    del teachers, sessions, first, second, job, result
    gc.collect()
    assert not [w for w in recwarn if UNCLOSED in str(w.message)]


async def test_an_error_in_the_block_still_closes_every_session(fake_teacher: str) -> None:
    with pytest.raises(RuntimeError, match="stop here"):
        async with open_teachers(_configs(fake_teacher)) as teachers:
            job = DecodeJob.create("What is 1 + 1?", teachers, DecodeOptions(max_steps=1))
            await decode(job)
            sessions = _sessions(teachers)
            raise RuntimeError("stop here")
    assert all(s.closed for s in sessions)
    assert all(s.connections == 0 for s in sessions if isinstance(s, PlainHttp))
