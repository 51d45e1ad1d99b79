"""Proxy configs of the UI tests: the real local teacher, tiny budgets."""

from __future__ import annotations

TINY = {"max_step_tokens": 24, "answer_budget": 12, "thinking_budget": 256}

TWO_TEACHERS = """
[server]
host = "127.0.0.1"
port = PORT
EXTRA_SERVER

[[teachers]]
name = "gemma-t0.5"
base_url = "TEACHER_URL"
model = "gemma3-270m"
temperature = 0.5
timeout = 300
EXTRA_TEACHER

[[teachers]]
name = "gemma-t0.7"
base_url = "TEACHER_URL"
model = "gemma3-270m"
temperature = 0.7
timeout = 300

[[ensembles]]
name = "cord"
teachers = ["gemma-t0.5", "gemma-t0.7"]
[ensembles.defaults]
beam_width = 2
max_steps = 2
max_step_tokens = 24
answer_budget = 12
thinking_budget = 256
"""


def two_teachers(teacher_url: str, server: str = "", teacher: str = "") -> str:
    return (
        TWO_TEACHERS.replace("TEACHER_URL", teacher_url)
        .replace("EXTRA_SERVER", server)
        .replace("EXTRA_TEACHER", teacher)
    )
