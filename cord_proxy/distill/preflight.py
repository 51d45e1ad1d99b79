"""Before a run: the ensemble's teachers, or the proxy, answer ``GET /models``."""

from __future__ import annotations

import httpx

from cord_proxy.config import CordConfig, ensemble_scorers
from cord_proxy.distill.errors import DistillError
from cord_proxy.errors import ConfigError
from cord_proxy.teachers.endpoint import api_key_of, fetch_model_ids
from cord_proxy.teachers.factory import refuse_unfillable_roles

DEFAULT_TEACHER_URL = "http://127.0.0.1:8401/v1"
PREFLIGHT_TIMEOUT_S = 10.0


def as_base_url(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/v1") else f"{url}/v1"


async def check_teachers(config: CordConfig, model: str) -> None:
    """Every teacher of the ensemble can fill its roles, and every OpenAI-compatible one
    answers ``GET /models``."""
    ensemble = config.ensemble(model)
    if ensemble is None:
        names = ", ".join(e.name for e in config.ensembles)
        raise DistillError(f"no ensemble named {model!r} in the config (ensembles: {names})")
    members = dict.fromkeys([*ensemble.teachers, *ensemble_scorers(config, ensemble)])
    try:
        for name in members:
            refuse_unfillable_roles(config.teacher(name))
    except ConfigError as error:
        raise DistillError(error.message) from None
    for name in members:
        teacher = config.teacher(name)
        if teacher.kind != "openai" or teacher.base_url is None:
            continue
        try:
            await fetch_model_ids(teacher.base_url, api_key_of(teacher), PREFLIGHT_TIMEOUT_S)
        except (httpx.HTTPError, ValueError) as error:
            raise DistillError(
                f"teacher {name!r} at {teacher.base_url} is unreachable ({error!r:.200}); "
                "start it first (the local CPU teacher: `cord-proxy up`), or pass "
                "--teacher-url / --config / --url"
            ) from None


async def check_proxy(base_url: str, model: str | None, api_key: str | None, key_env: str) -> str:
    """The proxy lists its ensembles; returns the one to use. `api_key` was read from the
    environment variable `key_env`."""
    try:
        models = await fetch_model_ids(base_url, api_key, PREFLIGHT_TIMEOUT_S)
    except (httpx.HTTPError, ValueError) as error:
        if isinstance(error, httpx.HTTPStatusError) and error.response.status_code == 401:
            raise DistillError(key_refused(base_url, api_key, key_env)) from None
        raise DistillError(
            f"the proxy at {base_url} is unreachable or not a cord-proxy "
            f"({error!r:.200}); start it with `cord-proxy serve`"
        ) from None
    if model is None:
        if not models:
            raise DistillError(f"the proxy at {base_url} lists no ensembles")
        return models[0]
    if model not in models:
        raise DistillError(
            f"the proxy at {base_url} has no ensemble {model!r} (it has: {', '.join(models)})"
        )
    return model


def key_refused(base_url: str, api_key: str | None, key_env: str) -> str:
    """The proxy answered 401: which key was missing or wrong, and where distill reads it."""
    problem = f"${key_env} is not set" if not api_key else f"the key in ${key_env} is wrong"
    return (
        f"the proxy at {base_url} wants an API key and {problem}: set {key_env} to one of its "
        "keys (or name another variable with --api-key-env)"
    )
