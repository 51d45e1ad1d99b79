"""deploy/router/serve-router.sh's command line, parsed by vllm-router 0.1.17's own parser.

The script runs against a FAKE `vllm-router` that records its arguments; the installed
vllm-router's launcher parses them. Its start-up wait and its retries are set on purpose
(deploy/scaling.md, section 3).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from vllm_router.launch_router import parse_router_args  # scripts/setup.sh installs it

from tests.deploy.deploy_fakes import ROUTER_DIR, Fakes

SCRIPT = ROUTER_DIR / "serve-router.sh"
REPLICAS = ["http://gpu-1:8002", "http://gpu-2:8002"]


def recorded(fakes: Fakes) -> list[str]:
    return (fakes.dir / "router-argv").read_bytes().decode().split("\0")[:-1]


def test_the_launch_line_parses_with_vllm_routers_own_parser(fakes: Fakes) -> None:
    run = fakes.run(SCRIPT, VLLM_ROUTER=str(fakes.bin / "vllm-router"))
    assert run.returncode == 2  # no replica given
    run = fakes.run(SCRIPT, *REPLICAS, VLLM_ROUTER=str(fakes.bin / "vllm-router"))
    assert run.returncode == 0, run.stderr

    args = parse_router_args(recorded(fakes))

    assert args.worker_urls == REPLICAS
    assert args.host == "127.0.0.1"
    assert args.policy == "consistent_hash"
    assert args.worker_startup_timeout_secs == 3600  # vllm-router's 600 s: too short
    assert args.retry_max_retries == 1  # one try: cord-proxy retries
    assert args.request_timeout_secs == 3600


def test_the_settings_come_from_the_environment(fakes: Fakes) -> None:
    run = fakes.run(
        SCRIPT,
        *REPLICAS,
        VLLM_ROUTER=str(fakes.bin / "vllm-router"),
        CORD_ROUTER_HOST="10.0.0.7",
        CORD_ROUTER_STARTUP_TIMEOUT="7200",
        CORD_ROUTER_MAX_ATTEMPTS="3",
        CORD_ROUTER_POLICY="round_robin",
    )
    assert run.returncode == 0, run.stderr

    args = parse_router_args(recorded(fakes))

    assert (args.host, args.policy) == ("10.0.0.7", "round_robin")
    assert (args.worker_startup_timeout_secs, args.retry_max_retries) == (7200, 3)


def test_without_vllm_router_on_path_the_repository_venv_is_used(
    fakes: Fakes, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    (repo / "deploy" / "router").mkdir(parents=True)
    shutil.copy(SCRIPT, repo / "deploy" / "router" / "serve-router.sh")
    venv_bin = repo / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    shutil.copy(fakes.bin / "vllm-router", venv_bin / "vllm-router")
    (fakes.bin / "vllm-router").unlink()  # nothing on PATH

    run = fakes.run(repo / "deploy" / "router" / "serve-router.sh", *REPLICAS)

    assert run.returncode == 0, run.stderr
    argv = recorded(fakes)
    assert argv[argv.index("--worker-urls") + 1 :][:2] == REPLICAS
