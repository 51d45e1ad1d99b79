"""A command that cannot listen on its port says so in one line and exits non-zero; `view`
has a port of its own, beside `up`'s and the local teacher's."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cord_proxy import cli
from cord_proxy.local import DEFAULT_TEACHER_PORT

CLI = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "cord-proxy"


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port that a plain socket listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=60)


def assert_one_line_error(done: subprocess.CompletedProcess[str], port: int, flag: str) -> None:
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(port) in lines[0] and flag in lines[0] and "in use" in lines[0]


def test_view_on_a_busy_port(busy_port: int, tmp_path: Path) -> None:
    traces = tmp_path / "traces.jsonl"
    traces.write_text("", encoding="utf-8")
    done = run("view", str(traces), "--port", str(busy_port), "--log-level", "warning")
    assert_one_line_error(done, busy_port, "--port")


def test_serve_on_a_busy_port(busy_port: int, tmp_path: Path) -> None:
    config = tmp_path / "cord.toml"
    config.write_text(
        '[[teachers]]\nname = "t"\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "m"\n'
        '[[ensembles]]\nname = "e"\nteachers = ["t"]\n',
        encoding="utf-8",
    )
    done = run("serve", "--config", str(config), "--port", str(busy_port), "--log-level", "warning")
    assert_one_line_error(done, busy_port, "--port")


def test_up_on_a_busy_port_stops_before_the_teacher(busy_port: int) -> None:
    # --teacher-port is busy too: were the teacher started first, its error would come instead
    done = run("up", "--port", str(busy_port), "--teacher-port", str(busy_port))
    assert_one_line_error(done, busy_port, "--port")
    assert "teacher" not in done.stdout + done.stderr


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """`cli.main` in this process, leaving the test's logging alone."""
    monkeypatch.setattr(cli, "configure_logging", lambda level: None)


@pytest.mark.usefixtures("in_process")
def test_a_busy_teacher_port_names_its_flag(
    busy_port: int,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CORD_HOME", str(tmp_path))
    monkeypatch.setattr("cord_proxy.local.prepare", lambda: tmp_path)  # installs nothing
    assert cli.main(["teachers", "check", "--teacher-port", str(busy_port)]) != 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and str(busy_port) in lines[0] and "--teacher-port" in lines[0]


@pytest.mark.usefixtures("in_process")
def test_view_has_a_default_port_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str, int]] = []
    monkeypatch.setattr(cli, "run_view", lambda *args: calls.append(args) or 0)
    assert cli.main(["view", "traces.jsonl"]) == 0
    assert calls == [("traces.jsonl", "127.0.0.1", 8402)]
    assert 8402 not in (cli.PROXY_PORT, DEFAULT_TEACHER_PORT)
