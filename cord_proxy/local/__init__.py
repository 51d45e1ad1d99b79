"""The embedded default teacher: Gemma 3 270M served by vLLM on the CPU."""

from cord_proxy.local.paths import cord_home, model_dir, teacher_python, teacher_venv
from cord_proxy.local.teacher import (
    CHAT_TEMPLATE,
    DEFAULT_TEACHER_PORT,
    LOCAL_MODEL_NAME,
    LocalTeacherError,
    LocalTeacherServer,
    prepare,
    served_models,
)

__all__ = [
    "CHAT_TEMPLATE",
    "DEFAULT_TEACHER_PORT",
    "LOCAL_MODEL_NAME",
    "LocalTeacherError",
    "LocalTeacherServer",
    "cord_home",
    "model_dir",
    "prepare",
    "served_models",
    "teacher_python",
    "teacher_venv",
]
