"""Every `vllm serve` command line of deploy/vllm/ parses with vLLM's own `serve` parser.

The scripts run against a FAKE `vllm` that records its arguments; the local teacher's vLLM
(0.32.0, installed by deploy/local/setup.sh) parses them (vllm_serve_parser.py), without
loading a model. A renamed, removed or deprecated flag fails here. The parser is vLLM's
CPU build; the GPU build of the same version builds it from the same source.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cord_proxy.local.paths import teacher_python, venv_ready
from tests.deploy.deploy_fakes import VLLM_DIR, make_fakes

PARSER = Path(__file__).resolve().parent / "vllm_serve_parser.py"
EXPECTED_VLLM = "0.32.0"  # deploy/vllm/README.md, "vLLM version"

# (script, environment, the port it serves on): every way the docs start a server
RUNS: list[tuple[str, dict[str, str], int]] = [
    ("serve-teacher.sh", {"MODEL": "org/model", "NAME": "model", "GPUS": "0"}, 8000),
    ("serve-r1-distill-qwen-32b.sh", {"GPUS": "0"}, 8001),
    ("serve-qwq-32b.sh", {"GPUS": "2,3", "TP": "2"}, 8002),
    ("serve-phi-4-reasoning-plus.sh", {"GPUS": "2", "HOST": "10.0.0.5"}, 8003),
    ("serve-qwq-32b.sh", {"GPUS": "3", "PORT": "8004", "EXTRA_ARGS": "--api-key k"}, 8004),
]


# lines that must fail, or the check is void: an unknown flag, a prefix of a flag (which
# argparse alone would take), a value the flag refuses
WRONG = [
    ["org/model", "--no-such-flag", "1"],
    ["org/model", "--enable-prefix-cachin"],
    ["org/model", "--logprobs-mode", "raw"],
]


def parse_with_vllm(lines: list[list[str]]) -> dict[str, Any]:
    """vLLM's version, and each line parsed by its `serve` parser (or the error)."""
    assert venv_ready(), "the local teacher's vLLM is not installed: run bash deploy/local/setup.sh"
    result = subprocess.run(
        [str(teacher_python()), str(PARSER)],
        input=json.dumps(lines),
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[list[str]], dict[str, Any]]:
    lines: list[list[str]] = []
    for index, (script, settings, port) in enumerate(RUNS):
        fakes = make_fakes(tmp_path_factory.mktemp(f"run{index}"))
        run = fakes.run(VLLM_DIR / script, **settings)
        assert run.returncode == 0, run.stderr
        argv = fakes.argv(port)
        assert argv[0] == "serve"
        lines.append(argv[1:])
    return lines, parse_with_vllm([*lines, *WRONG])


def test_the_teacher_vllm_is_the_version_the_scripts_expect(
    parsed: tuple[list[list[str]], dict[str, Any]],
) -> None:
    assert parsed[1]["version"] == EXPECTED_VLLM


def test_every_serve_line_parses_with_vllms_own_parser(
    parsed: tuple[list[list[str]], dict[str, Any]],
) -> None:
    lines, answer = parsed
    results = answer["results"]
    assert len(results) == len(lines) + len(WRONG)
    for argv, result in zip(lines, results, strict=False):
        assert "error" not in result, f"vllm serve {' '.join(argv)}: {result['error']}"
    for argv, result in zip(WRONG, results[len(lines) :], strict=True):
        assert "error" in result, f"the parser took vllm serve {' '.join(argv)}"


def test_the_parsed_settings_are_the_documented_ones(
    parsed: tuple[list[list[str]], dict[str, Any]],
) -> None:
    lines, answer = parsed
    settings = [result["args"] for result in answer["results"][: len(lines)]]
    for args in settings:
        assert args["generation_config"] == "vllm"
        assert args["logprobs_mode"] == "raw_logprobs"
        assert args["logits_processors"] == ["cord_forced_tokens:ForcedTokens"]
        assert args["enable_prefix_caching"] is True
        assert args["max_model_len"] == 24576
        assert args["dtype"] == "bfloat16"
    by_port = {args["port"]: args for args in settings}
    assert by_port[8001]["model_tag"] == "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"
    assert by_port[8001]["served_model_name"] == ["DeepSeek-R1-Distill-Qwen-32B"]
    assert by_port[8001]["host"] == "127.0.0.1"
    assert by_port[8002]["tensor_parallel_size"] == 2
    assert by_port[8003]["served_model_name"] == ["Phi-4-reasoning-plus"]
    assert by_port[8003]["host"] == "10.0.0.5"
    assert by_port[8004]["served_model_name"] == ["QwQ-32B"]
