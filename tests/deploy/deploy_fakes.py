"""FAKE `vllm`, `hf`, `curl` and `vllm-router` for the deploy scripts (fixture: conftest.py).

The scripts run for real; only the programs they start are fakes. The fake `vllm` records
its arguments (NUL-separated, in ``argv-PORT``) and its environment, then exits, or, with
``FAKE_SERVE=1``, plays a server: it writes ``pid-PORT``, answers the fake `curl`'s
``/health`` (``ready-PORT``) and sleeps, or exits 3 at once when ``crash-PORT`` exists. The
fake `hf` notes each download, and whether a server had started before it.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VLLM_DIR = REPO / "deploy" / "vllm"
ROUTER_DIR = REPO / "deploy" / "router"

FAKE_VLLM = """#!/usr/bin/env bash
set -euo pipefail
port=none
prev=""
for a in "$@"; do
    if [[ "$prev" == --port ]]; then port="$a"; fi
    prev="$a"
done
printf '%s\\0' "$@" >"$FAKE_DIR/argv-$port"
echo "${CUDA_VISIBLE_DEVICES-unset}" >"$FAKE_DIR/gpus-$port"
echo "${HF_HUB_OFFLINE-unset}" >"$FAKE_DIR/offline-$port"
if [[ "${FAKE_SERVE:-0}" != 1 ]]; then exit 0; fi
echo $$ >"$FAKE_DIR/pid-$port"
if [[ -e "$FAKE_DIR/crash-$port" ]]; then
    echo "FAKE vllm on port $port: CUDA out of memory" >&2
    exit 3
fi
touch "$FAKE_DIR/ready-$port"
exec sleep 120
"""

FAKE_CURL = """#!/usr/bin/env bash
url="${*: -1}"
echo "$url" >>"$FAKE_DIR/curl.log"
port="${url##*:}"
port="${port%%/*}"
[[ "$url" == */health && -e "$FAKE_DIR/ready-$port" ]]
"""

FAKE_HF = """#!/usr/bin/env bash
if compgen -G "$FAKE_DIR/argv-*" >/dev/null; then
    echo "after a server started: $*" >>"$FAKE_DIR/hf.log"
else
    echo "$*" >>"$FAKE_DIR/hf.log"
fi
"""

FAKE_ROUTER = """#!/usr/bin/env bash
printf '%s\\0' "$@" >"$FAKE_DIR/router-argv"
"""


@dataclass(frozen=True)
class Fakes:
    dir: Path  # what the fakes record
    bin: Path  # the fake commands, first on PATH

    def env(self, **settings: str) -> dict[str, str]:
        return {
            "PATH": f"{self.bin}{os.pathsep}/usr/bin{os.pathsep}/bin",
            "HOME": str(self.dir),
            "FAKE_DIR": str(self.dir),
            "VLLM": str(self.bin / "vllm"),
            "HF": str(self.bin / "hf"),
            **settings,
        }

    def argv(self, port: int | str) -> list[str]:
        """The arguments the fake `vllm` got on `port` ('none': no --port)."""
        raw = (self.dir / f"argv-{port}").read_bytes()
        return raw.decode().split("\0")[:-1]

    def read(self, name: str) -> str:
        path = self.dir / name
        return path.read_text() if path.exists() else ""

    def run(
        self, script: Path, *args: str, timeout: float = 30.0, **settings: str
    ) -> subprocess.CompletedProcess[str]:
        """`script` with `args`, the fakes first on PATH, and `settings` as its environment."""
        return subprocess.run(
            ["bash", str(script), *args],
            env=self.env(**settings),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def make_fakes(tmp_path: Path) -> Fakes:
    record = tmp_path / "record"
    bin_dir = tmp_path / "bin"
    record.mkdir()
    bin_dir.mkdir()
    for name, text in (
        ("vllm", FAKE_VLLM),
        ("curl", FAKE_CURL),
        ("hf", FAKE_HF),
        ("vllm-router", FAKE_ROUTER),
    ):
        path = bin_dir / name
        path.write_text(text)
        path.chmod(0o755)
    return Fakes(record, bin_dir)
