"""Build the client of one configured teacher."""

from __future__ import annotations

from cord_proxy.config import TeacherConfig
from cord_proxy.errors import ConfigError
from cord_proxy.teachers.base import Teacher
from cord_proxy.teachers.openai_compat import OpenAICompatTeacher


def build_teacher(config: TeacherConfig) -> Teacher:
    """The client for one configured teacher."""
    if config.kind == "openai":
        return OpenAICompatTeacher(config)
    if config.kind == "litellm":
        from cord_proxy.teachers.hosted import HostedTeacher  # import litellm only when used

        return HostedTeacher(config)
    raise ConfigError(f"teacher '{config.name}': kind '{config.kind}' is not available yet")
