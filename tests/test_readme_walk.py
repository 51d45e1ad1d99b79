"""The README walks (issue 26): every shell command and Python snippet in it is marked, on the
line before its fence, `<!-- runnable -->` or `<!-- not-runnable: REASON -->`, and every
runnable one runs, in the README's order, against the real proxy and the real local teacher,
with nothing changed but host and port.

The walk's proxy is the quick start's ensemble (`examples/local-dataset.toml`, which
tests/test_readme_quickstart.py holds equal to `up`'s) with its dataset sink, asking for the
one documented key, `CORD_API_KEY`; the snippets run from a stand-in for the repository's
root in a shell without `OPENAI_API_KEY` and without the venv on PATH. The files the README
assumes a user has are given: `problems.jsonl` holds the README's own example input line, and
`traces.jsonl` is the sink the snippets before `export` filled.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support.proxy_process import ProxyProcess
from tests.support.readme_walk import (
    RUNNABLE,
    SHELL,
    Addresses,
    checked,
    fences,
    stray_marks,
    walk_root,
)

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
EXAMPLE = ROOT / "examples" / "local-dataset.toml"
SNIPPET_TIMEOUT = 900  # seconds; the Curator example may build the tools' venv on first use

#: commands that start a server, or are the suite itself: they would block the walk
BLOCKING = re.compile(
    r"scripts/up\.sh|scripts/test\.sh|(?:cord-proxy|-m cord_proxy) (?:up|serve|view)\b"
)
CLIENT = re.compile(r"clients/[\w.-]+\.(?:py|sh)")
LEAKS = ("Unclosed client session", "Unclosed connector")  # a snippet that leaves sessions open


def _report(line: str) -> None:
    print(line, file=sys.__stderr__, flush=True)


# ---- the marks (no teacher) ----


def test_every_shell_and_python_fence_carries_one_mark() -> None:
    bad = [f"{f.label}: {f.mark or 'no mark'}" for f in checked(README) if not f.marked]
    assert checked(README) and bad == [], (
        "mark each fence on the line before it: <!-- runnable --> or <!-- not-runnable: REASON -->",
        bad,
    )


def test_a_mark_stands_right_before_a_shell_or_python_fence() -> None:
    assert stray_marks(README) == []
    other = [f.label for f in fences(README) if f.mark is not None and f not in checked(README)]
    assert other == [], "only shell and Python fences are marked"


def test_servers_and_the_suite_are_not_runnable_snippets() -> None:
    blocking = [f.label for f in checked(README) if f.runnable and BLOCKING.search(f.body)]
    assert blocking == []
    reasons = {f.reason for f in checked(README) if not f.runnable}
    assert all(reason and len(reason) > 10 for reason in reasons), reasons


def test_every_client_example_the_readme_shows_is_run_by_a_runnable_snippet() -> None:
    shown = {name for f in checked(README) for name in CLIENT.findall(f.body)}
    run = {name for f in checked(README) if f.runnable for name in CLIENT.findall(f.body)}
    assert shown and shown - run == set(), shown - run
    assert {f.lang for f in checked(README) if f.runnable} >= {"bash", "sh", "python"}


SAMPLE = """\
Text.

<!-- runnable -->
```bash
.venv/bin/cord-proxy teachers check   # the local teacher
curl http://127.0.0.1:8400/v1/models http://localhost:8401/v1/models http://127.0.0.1:8402/ui
```

- a list item:

  <!-- not-runnable: starts a server; the suite starts its own -->
  ```sh
  .venv/bin/cord-proxy up \\
      --port 8400
  ```

```python
print("unmarked")
```

<!-- not-runnable -->
```py
print("a mark without a reason")
```

<!-- runnable -->
```json
{}
```

<!-- runnable -->
"""


def test_the_walk_reads_marks_and_changes_only_host_and_port() -> None:
    found = fences(SAMPLE)
    assert [(f.line, f.lang, f.indent) for f in found] == [
        (4, "bash", ""),
        (12, "sh", "  "),
        (17, "python", ""),
        (22, "py", ""),
        (27, "json", ""),
    ]
    assert [f.runnable for f in found] == [True, False, False, False, True]
    assert [f.marked for f in found] == [True, True, False, False, True]
    assert found[1].reason == "starts a server; the suite starts its own"
    assert found[1].body == ".venv/bin/cord-proxy up \\\n    --port 8400\n"
    assert [f.lang for f in checked(SAMPLE)] == ["bash", "sh", "python", "py"]
    assert stray_marks(SAMPLE) == [31]

    walk = Addresses(proxy="127.0.0.1:5000", teacher="127.0.0.1:5001")
    assert walk.command(found[0].body) == (
        ".venv/bin/cord-proxy teachers check --teacher-port 5001   # the local teacher\n"
        "curl http://127.0.0.1:5000/v1/models http://127.0.0.1:5001/v1/models "
        "http://127.0.0.1:8402/ui\n"
    )
    given = "cord-proxy teachers check --config cord.toml\n"
    assert walk.command(given) == given


def test_the_walks_root_links_the_repository_and_points_the_clients_at_the_walk(
    tmp_path: Path,
) -> None:
    walk = Addresses(proxy="127.0.0.1:5000", teacher="127.0.0.1:5001")
    root = walk_root(ROOT, tmp_path / "root", walk)
    assert (root / "scripts").resolve() == ROOT / "scripts"
    assert (root / ".venv").is_symlink() and not (root / "clients").is_symlink()
    curl = (root / "clients" / "curl.sh").read_text(encoding="utf-8")
    assert "http://127.0.0.1:5000/v1" in curl and ":8400" not in curl
    assert curl == (ROOT / "clients" / "curl.sh").read_text(encoding="utf-8").replace(
        "127.0.0.1:8400", "127.0.0.1:5000"
    )


# ---- the walk (the real proxy and teacher) ----


@dataclass
class Walk:
    root: Path
    env: dict[str, str]
    addresses: Addresses
    proxy: ProxyProcess


def proxy_config(teacher: str, sink: Path, data_dir: Path) -> str:
    """The dataset example (up's ensemble with a sink), on the walk's ports, asking for the key.
    `teacher` is the teacher's host:port; ProxyProcess fills in PORT."""
    text = EXAMPLE.read_text(encoding="utf-8")
    edits = [
        (r"(?m)^port = \d+", "port = PORT"),
        (r'(?m)^# (api_keys = \["env:CORD_API_KEY"\])', r"\1"),
        (r'(?m)^path = "traces\.jsonl"', f"path = {json.dumps(str(sink))}"),
    ]
    for pattern, replacement in edits:
        text, count = re.subn(pattern, replacement, text)
        assert count == 1, f"{EXAMPLE.name} changed: {pattern} matched {count} times"
    text = Addresses(proxy="127.0.0.1:PORT", teacher=teacher).substitute(text)
    return text + f"\n[batches]\ndata_dir = {json.dumps(str(data_dir))}\n"


def problems_line() -> str:
    """The README's own example of a problems file's line."""
    for fence in fences(README):
        if fence.lang == "json" and fence.body.count("\n") == 1:
            line = json.loads(fence.body)
            if set(line) == {"id", "question", "answer"}:
                return fence.body
    raise AssertionError("the README shows no problems line")


@pytest.fixture(scope="module")
def walk(local_teacher: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Walk]:
    tmp = tmp_path_factory.mktemp("readme-walk")
    teacher = urlsplit(local_teacher).netloc
    key = "sk-walk-" + secrets.token_hex(8)
    config = proxy_config(teacher, tmp / "root" / "traces.jsonl", tmp / "data")
    proxy = ProxyProcess(config, tmp, env={"CORD_API_KEY": key})
    addresses = Addresses(proxy=f"127.0.0.1:{proxy.port}", teacher=teacher)
    root = walk_root(ROOT, tmp / "root", addresses)
    (root / "problems.jsonl").write_text(problems_line(), encoding="utf-8")
    venv_bin = str(ROOT / ".venv" / "bin")
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "TIKTOKEN_CACHE_DIR")}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if p and p.rstrip("/") != venv_bin
    )
    env.pop("VIRTUAL_ENV", None)
    env |= {
        "CORD_API_KEY": key,
        "CURATOR_CACHE_DIR": str(tmp / "curator-cache"),  # a cached answer would skip the proxy
        "DISTILABEL_CACHE_DIR": str(tmp / "distilabel-cache"),
    }
    proxy.start()
    try:
        yield Walk(root, env, addresses, proxy)
    finally:
        proxy.stop()


def run_snippet(walk: Walk, lang: str, body: str) -> subprocess.CompletedProcess[str]:
    code = walk.addresses.command(body)
    if lang in SHELL:
        command = ["bash", "-e", "-o", "pipefail", "-c", code]
    else:
        command = [str(ROOT / ".venv" / "bin" / "python"), "-c", code]
    return subprocess.run(
        command,
        cwd=walk.root,
        env=walk.env,
        capture_output=True,
        text=True,
        timeout=SNIPPET_TIMEOUT,
    )


@pytest.mark.integration
def test_every_runnable_snippet_runs_against_the_real_proxy_and_teacher(walk: Walk) -> None:
    """In the README's order (`export` reads the traces the snippets before it wrote); every
    snippet runs even after one broke, and the failure names each that broke."""
    runnable = [fence for fence in checked(README) if fence.mark == RUNNABLE]
    assert runnable
    broken: list[str] = []
    for fence in runnable:
        started = time.monotonic()
        done = run_snippet(walk, fence.lang, fence.body)
        output = done.stdout + done.stderr
        _report(
            f"[readme-walk] {fence.label}: exit {done.returncode}, "
            f"{time.monotonic() - started:.1f} s"
        )
        leaks = [leak for leak in LEAKS if leak in output] if fence.lang not in SHELL else []
        if done.returncode != 0 or leaks:
            broken.append(
                f"{fence.label} exited {done.returncode}{' leaking ' + str(leaks) if leaks else ''}"
                f"\n--- snippet as run:\n{walk.addresses.command(fence.body)}"
                f"--- stdout:\n{done.stdout[-3000:]}\n--- stderr:\n{done.stderr[-3000:]}"
            )
    assert broken == [], "\n\n".join(broken) + f"\n--- proxy log:\n{walk.proxy.log()[-3000:]}"
    # the decodes went through the walk's proxy: its sink holds them, and `export` read them
    sink = walk.root / "traces.jsonl"
    assert sink.is_file() and sink.read_text(encoding="utf-8").strip()
    train = walk.root / "train.jsonl"
    assert not train.exists() or train.read_text(encoding="utf-8").strip(), "export wrote nothing"
