"""Prepare and run the embedded local teacher: vLLM on the CPU serving Gemma 3 270M."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

from cord_proxy.local.paths import (
    cord_home,
    logs_dir,
    model_dir,
    model_ready,
    teacher_python,
    venv_ready,
)
from cord_proxy.local.vllm_plugin import LOGITS_PROCESSOR, PLUGIN_DIR, SPANS_MIDDLEWARE

LOCAL_MODEL_NAME = "gemma3-270m"
DEFAULT_TEACHER_PORT = 8401
DEFAULT_HOST = "127.0.0.1"
MAX_MODEL_LEN = 2048
# Structured answers (a request's response_format) in compact JSON: a 270M model given the
# JSON grammar's free whitespace writes newlines until its answer budget runs out.
STRUCTURED_OUTPUTS = '{"backend": "xgrammar", "disable_any_whitespace": true}'
KV_BLOCK_TOKENS = 32
"""The prefix cache keeps whole blocks only: a cached scoring read recomputes the tail past
the last whole block of its prompt. vLLM's CPU default of 128 made that tail cost more than
the read itself (python -m bench --only scoring: 2.5 s against 0.94 s for six candidates at
1,700 tokens); 32 is the smallest size the CPU kernels run at full speed."""

PACKAGE_DIR = Path(__file__).resolve().parent
CHAT_TEMPLATE = PACKAGE_DIR / "gemma_chat_template.jinja"
CONVERT_SCRIPT = PACKAGE_DIR / "convert.py"
SETUP_SCRIPT = PACKAGE_DIR.parents[1] / "deploy" / "local" / "setup.sh"

TEACHER_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}
LEAKY_ENV = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
STOP_GRACE_S = 20.0
PROGRESS_EVERY_S = 10.0
LOG_TAIL_LINES = 40
PR_SET_PDEATHSIG = 1

Progress = Callable[[str], None]


class LocalTeacherError(RuntimeError):
    """The local teacher could not be installed, converted or started."""


def prepare(progress: Progress = print) -> Path:
    """Install the teacher virtualenv and convert the model, each only once.

    Returns the converted model folder.
    """
    with _file_lock(cord_home() / ".prepare.lock"):
        if not venv_ready():
            _install_venv(progress)
        if not model_ready():
            _convert_model(progress)
    return model_dir()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _install_venv(progress: Progress) -> None:
    if not SETUP_SCRIPT.is_file():
        raise LocalTeacherError(
            f"the teacher setup script {SETUP_SCRIPT} is missing; cord-proxy's local teacher "
            "needs a source checkout (pip install -e .), or set up the virtualenv yourself at "
            f"{teacher_python().parent.parent}"
        )
    progress(f"[local-teacher] installing the teacher virtualenv with {SETUP_SCRIPT}")
    _run_logged(
        ["bash", str(SETUP_SCRIPT)],
        progress,
        env={**os.environ, "CORD_HOME": str(cord_home())},
        failure=f"the teacher setup failed; fix the cause above and rerun: bash {SETUP_SCRIPT}",
    )
    if not venv_ready():
        raise LocalTeacherError(
            f"{SETUP_SCRIPT} finished but {teacher_python()} is not ready; "
            f"delete {teacher_python().parent.parent} and retry"
        )


def _convert_model(progress: Progress) -> None:
    target = model_dir()
    progress(f"[local-teacher] converting Gemma 3 270M to a bf16 folder at {target} (once)")
    started = time.monotonic()
    _run_logged(
        [str(teacher_python()), str(CONVERT_SCRIPT), str(target)],
        progress,
        env=_teacher_env(),
        failure=(
            f"the model conversion failed; rerun it by hand to see why: "
            f"{teacher_python()} {CONVERT_SCRIPT} {target}"
        ),
    )
    if not model_ready():
        raise LocalTeacherError(f"the conversion left no finished model at {target}; retry")
    progress(f"[local-teacher] model ready in {time.monotonic() - started:.0f}s")


def _run_logged(
    command: list[str], progress: Progress, *, env: dict[str, str], failure: str
) -> None:
    tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
    try:
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
    except OSError as exc:
        raise LocalTeacherError(f"{failure} ({exc})") from exc
    assert proc.stdout is not None
    with proc:
        for raw in proc.stdout:
            line = raw.rstrip()
            if line:
                tail.append(line)
                progress(line)
    if proc.returncode != 0:
        raise LocalTeacherError(f"{failure} (exit {proc.returncode})\n" + "\n".join(tail))


def _teacher_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in LEAKY_ENV}
    return {**env, **TEACHER_ENV, "PYTHONPATH": str(PLUGIN_DIR)}


def served_models(base_url: str, timeout: float = 2.0) -> list[str] | None:
    """The model ids an OpenAI-compatible server lists, or None if nothing answers."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{base_url}/models", timeout=timeout) as response:
            if response.status != 200:
                return None
            body = json.load(response)
    except (OSError, ValueError):
        return None
    return [str(entry.get("id")) for entry in body.get("data", []) if isinstance(entry, dict)]


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def _terminate_with_parent() -> None:
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


class LocalTeacherServer:
    """One vLLM server process for the local teacher, or a running one reused.

    A server this object started is stopped by `stop()`, and on Linux also when the thread
    that started it exits, unless it was created with ``detach=True``.
    """

    def __init__(
        self, model: Path | None = None, progress: Progress = print, *, detach: bool = False
    ) -> None:
        """`detach` keeps a started server running after this process exits."""
        self.model = model or model_dir()
        self.progress = progress
        self.detach = detach
        self.host = DEFAULT_HOST
        self.port = DEFAULT_TEACHER_PORT
        self.log_path: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._started = False

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def owned(self) -> bool:
        return self._proc is not None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(
        self, port: int = DEFAULT_TEACHER_PORT, host: str = DEFAULT_HOST, timeout: float = 300.0
    ) -> Self:
        if self._started:
            return self
        self.host, self.port = host, port
        with _file_lock(cord_home() / f".teacher-{port}.lock"):
            if not self._reuse_running():
                self._spawn()
                try:
                    self._wait_ready(timeout)
                except BaseException:
                    self.stop()
                    raise
        self._started = True
        return self

    def _reuse_running(self) -> bool:
        models = served_models(self.base_url)
        if models is not None and LOCAL_MODEL_NAME in models:
            self.progress(f"[local-teacher] reusing the teacher already at {self.base_url}")
            return True
        if models is not None or _port_in_use(self.host, self.port):
            raise LocalTeacherError(
                f"port {self.port} on {self.host} is taken by something that does not serve "
                f"{LOCAL_MODEL_NAME} (it lists {models}); stop it or choose another port"
            )
        return False

    def _spawn(self) -> None:
        if not teacher_python().exists() or not (self.model / "config.json").is_file():
            raise LocalTeacherError(
                "the local teacher is not prepared; call cord_proxy.local.prepare() first"
            )
        logs_dir().mkdir(parents=True, exist_ok=True)
        self.log_path = logs_dir() / f"teacher-{self.port}.log"
        self.progress(f"[local-teacher] starting vLLM at {self.base_url} (log: {self.log_path})")
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_teacher_env(),
                start_new_session=True,
                preexec_fn=None if self.detach else _terminate_with_parent,
            )

    def _command(self) -> list[str]:
        return [
            str(teacher_python()), "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(self.model),
            "--served-model-name", LOCAL_MODEL_NAME,
            "--max-model-len", str(MAX_MODEL_LEN),
            "--dtype", "bfloat16",
            "--enforce-eager",
            "--chat-template", str(CHAT_TEMPLATE),
            "--structured-outputs-config", STRUCTURED_OUTPUTS,
            "--block-size", str(KV_BLOCK_TOKENS),
            "--logits-processors", LOGITS_PROCESSOR,
            "--middleware", SPANS_MIDDLEWARE,
            "--host", self.host,
            "--port", str(self.port),
        ]  # fmt: skip

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        started = time.monotonic()
        next_report = started + PROGRESS_EVERY_S
        while True:
            if self._proc.poll() is not None:
                raise LocalTeacherError(self._failure(f"vLLM exited with {self._proc.returncode}"))
            models = served_models(self.base_url)
            if models is not None and LOCAL_MODEL_NAME in models:
                elapsed = time.monotonic() - started
                self.progress(f"[local-teacher] ready at {self.base_url} in {elapsed:.0f}s")
                return
            now = time.monotonic()
            if now - started > timeout:
                raise LocalTeacherError(self._failure(f"vLLM was not ready after {timeout:.0f}s"))
            if now >= next_report:
                self.progress(f"[local-teacher] waiting for vLLM ({now - started:.0f}s)")
                next_report = now + PROGRESS_EVERY_S
            time.sleep(1.0)

    def _failure(self, what: str) -> str:
        tail = _log_tail(self.log_path) if self.log_path else "(no log)"
        return f"{what}; the end of {self.log_path}:\n{tail}"

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        self._started = False
        if proc is None or proc.poll() is not None:
            return
        self._signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self._signal_group(proc, signal.SIGKILL)
            proc.wait()

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)

    def __enter__(self) -> Self:
        return self.start(self.port, self.host)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
