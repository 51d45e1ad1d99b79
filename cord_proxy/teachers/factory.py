"""Build the client of one configured teacher; `open_teachers`, the library's `async with`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager

from cord_proxy.config import TeacherConfig
from cord_proxy.errors import ConfigError
from cord_proxy.teachers._client import TeacherClient
from cord_proxy.teachers.base import Teacher
from cord_proxy.teachers.breaker import BreakerRegistry
from cord_proxy.teachers.capabilities import litellm_score_problem
from cord_proxy.teachers.openai_compat import OpenAICompatTeacher
from cord_proxy.teachers.prompt_fields import unreadable_fields


def endpoint_key(config: TeacherConfig) -> str:
    """Teachers with the same key (endpoint and model) share one circuit breaker."""
    return f"{config.base_url or config.kind}|{config.model}"


def refuse_unfillable_roles(config: TeacherConfig) -> None:
    """A `ConfigError` for a teacher whose kind cannot fill its roles (a litellm scorer, or a
    scorer whose proposals read a prompt its scoring cannot)."""
    if "score" not in config.roles:
        return
    problem = None
    if config.kind == "litellm":
        problem = litellm_score_problem(config.name, config.model)
    elif config.kind == "openai":
        problem = unreadable_prompt_problem(config)
    if problem:
        raise ConfigError(problem, [problem])


def unreadable_prompt_problem(config: TeacherConfig) -> str | None:
    """Why a scorer's `extra_body` keeps its scoring from reading its proposals' prompt."""
    fields = unreadable_fields(config.extra_body)
    if not fields:
        return None
    named = ", ".join(f"extra_body.{name}" for name in fields)
    return (
        f"teacher '{config.name}': {named} changes the prompt its proposals read, and its "
        "scoring cannot read the same prompt (/tokenize does not take it); remove it, or give "
        "the teacher the propose role only"
    )


def build_teacher(config: TeacherConfig, breakers: BreakerRegistry | None = None) -> Teacher:
    """The client for one configured teacher; `breakers` shares a breaker per endpoint.

    Raises `ConfigError` for a teacher whose roles its kind cannot fill (a litellm scorer),
    before litellm is imported.
    """
    refuse_unfillable_roles(config)
    registry = breakers or BreakerRegistry()
    breaker = registry.get(endpoint_key(config), config.breaker_threshold, config.breaker_cooldown)
    if config.kind == "openai":
        return OpenAICompatTeacher(config, breaker=breaker)
    if config.kind == "litellm":
        from cord_proxy.teachers.hosted import HostedTeacher  # import litellm only when used

        return HostedTeacher(config, breaker=breaker)
    raise ConfigError(f"teacher '{config.name}': kind '{config.kind}' is not available yet")


@asynccontextmanager
async def open_teachers(configs: Iterable[TeacherConfig]) -> AsyncIterator[list[Teacher]]:
    """The clients of `configs`, as the proxy builds one ensemble's, closed on the way out.

    ``async with open_teachers(configs) as teachers:`` gives `build_teacher`'s clients, in
    order, with one circuit breaker per endpoint and the proposers' breakers grouped for panic
    mode. Leaving the block (an error or a cancellation included) closes every client's HTTP
    session and stops the breakers' background checks, so nothing is left for the garbage
    collector to warn about ("Unclosed client session"). Raises `ConfigError` as
    `build_teacher` does, after closing the clients already built.
    """
    breakers = BreakerRegistry()
    async with AsyncExitStack() as stack:
        stack.push_async_callback(_close_breakers, breakers)  # last: the clients detach first
        teachers: list[Teacher] = []
        for config in configs:
            teacher = build_teacher(config, breakers)
            stack.push_async_callback(teacher.aclose)
            teachers.append(teacher)
        breakers.group(
            t.breaker for t in teachers if isinstance(t, TeacherClient) and t.can_propose
        )
        yield teachers


async def _close_breakers(breakers: BreakerRegistry) -> None:
    for breaker in breakers.by_endpoint.values():
        await breaker.aclose()
