"""deploy/vllm/ is valid: its configs load with cord-proxy's own loader, its scripts parse."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from cord_proxy.config import ensemble_scorers, load_config

VLLM_DIR = Path(__file__).resolve().parents[2] / "deploy" / "vllm"
SCRIPTS = sorted(VLLM_DIR.glob("*.sh"))
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


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_pass_bash_n(script: Path) -> None:
    bash = shutil.which("bash")
    assert bash is not None
    result = subprocess.run([bash, "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_server_gets_long_context_and_prefix_caching() -> None:
    serve = (VLLM_DIR / "serve-teacher.sh").read_text()
    assert "--enable-prefix-caching" in serve
    assert "--tensor-parallel-size" in serve
    assert 'MAX_MODEL_LEN="${MAX_MODEL_LEN:-24576}"' in serve
    assert len(SCRIPTS) >= 4


def test_serve_teacher_refuses_a_short_context(tmp_path: Path) -> None:
    fake_vllm = tmp_path / "vllm"
    fake_vllm.write_text('#!/usr/bin/env bash\necho "$@"\n')
    fake_vllm.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "MODEL": "m", "NAME": "n", "VLLM": str(fake_vllm)}

    short = subprocess.run(
        ["bash", str(VLLM_DIR / "serve-teacher.sh")],
        env={**env, "MAX_MODEL_LEN": "8192"},
        capture_output=True,
        text=True,
    )
    ok = subprocess.run(
        ["bash", str(VLLM_DIR / "serve-teacher.sh")], env=env, capture_output=True, text=True
    )

    assert short.returncode == 2
    assert ok.returncode == 0, ok.stderr
    assert "serve m --served-model-name n" in ok.stdout
    assert "--max-model-len 24576 --enable-prefix-caching" in ok.stdout
