"""One ensemble (``e``) of one scripted teacher (``t``) that thinks two steps and answers 42:
the in-process tests of the HTTP face decode it in milliseconds."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestServer

from cord_proxy.api.app import create_app
from cord_proxy.config import CordConfig, parse_config
from cord_proxy.runtime import Runtime
from tests.support.fakes import ScriptedFakeTeacher

QUESTION = [{"role": "user", "content": "What is 40 + 2?"}]
DEFAULTS = {"beam_width": 1, "max_steps": 3, "thinking_budget": 64, "answer_budget": 8}


def steps(prefix: str) -> str:
    """The teacher's proposal script: two steps, then the answer."""
    if prefix.endswith("</think>\n\n"):
        return "42"
    return "add the numbers " if "Step 2" not in prefix else "done </think>"


def teacher(**script: Any) -> ScriptedFakeTeacher:
    """Teacher ``t``: `steps` and a fixed log-probability, unless `script` says otherwise."""
    return ScriptedFakeTeacher(
        "t", proposals=script.pop("proposals", steps), logprobs=[-0.1], **script
    )


def config(**server: Any) -> CordConfig:
    return parse_config(
        {
            "server": server,
            "teachers": [{"name": "t", "base_url": "http://127.0.0.1:9/v1", "model": "t"}],
            "ensembles": [{"name": "e", "teachers": ["t"], "defaults": DEFAULTS}],
        }
    )


def runtime(fake: ScriptedFakeTeacher, **server: Any) -> Runtime:
    return Runtime(config(**server), {"t": fake})


def server(fake: ScriptedFakeTeacher, **settings: Any) -> TestServer:
    """The proxy's app over `fake`, with these ``[server]`` settings, for a `TestClient`."""
    return TestServer(create_app(runtime(fake, **settings)))
