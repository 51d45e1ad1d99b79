"""`cord-proxy teachers check` against the real local teacher and a dead one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

from tests.support.proxy_process import free_port


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cord_proxy", *args], capture_output=True, text=True, timeout=300
    )


def test_teachers_check_reports_each_teacher(local_teacher: str, tmp_path: Path) -> None:
    config = tmp_path / "cord.toml"
    config.write_text(
        f'[[teachers]]\nname = "live"\nbase_url = "{local_teacher}"\nmodel = "gemma3-270m"\n'
        f'[[teachers]]\nname = "dead"\nbase_url = "http://127.0.0.1:{free_port()}/v1"\n'
        'model = "gemma3-270m"\ntimeout = 5\nmax_retries = 0\n'
        '[[ensembles]]\nname = "cord"\nteachers = ["live", "dead"]\n'
    )
    done = run_cli("teachers", "check", "--config", str(config))
    assert done.returncode == 1, done.stderr
    rows = {
        line.split()[0]: line.split()
        for line in done.stdout.splitlines()[1:]
        if line and not line.startswith(" ")
    }
    assert rows["live"][3:7] == ["yes", "yes", "yes", "yes"] and rows["live"][-1] == "ms"
    assert rows["live"][7] == "2048"  # the context length vLLM reports
    assert rows["dead"][3] == "NO" and rows["dead"][5] == "NO"
    assert "teacher 'dead'" in done.stdout
    assert "scoring: cached (agrees with prompt_logprobs" in done.stdout


def test_teachers_check_without_config_uses_the_local_default(local_teacher: str) -> None:
    port = urlparse(local_teacher).port
    assert port is not None
    done = run_cli("teachers", "check", "--teacher-port", str(port))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(" yes ") >= 3 and "gemma-t0.5" in done.stdout
