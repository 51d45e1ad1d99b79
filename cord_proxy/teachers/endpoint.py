"""A teacher's endpoint: its API key, the header that carries it, and the models it lists."""

from __future__ import annotations

import asyncio

import httpx

from cord_proxy.config import TeacherConfig
from cord_proxy.errors import CordError
from cord_proxy.secret_refs import resolve_secret


def api_key_of(config: TeacherConfig) -> str | None:
    """The teacher's API key, resolved from its reference (``env:NAME``); None without one."""
    return resolve_secret(config.api_key)


def bearer_headers(api_key: str | None) -> dict[str, str]:
    """The ``Authorization: Bearer`` header for `api_key`; no header without a key."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


async def fetch_model_ids(base_url: str, api_key: str | None, timeout: float) -> list[str]:
    """The model ids an OpenAI-compatible endpoint lists (``GET /models``).

    Raises `httpx.HTTPError` when it cannot be reached, answers an error status, or has not
    answered whole within `timeout` seconds (httpx's own timeout bounds each read, so an
    answer sent a byte at a time would never end), and `ValueError` when the answer is not
    JSON.
    """
    url = base_url.rstrip("/") + "/models"
    try:
        async with asyncio.timeout(timeout), httpx.AsyncClient(timeout=timeout) as client:
            answer = await client.get(url, headers=bearer_headers(api_key))
    except TimeoutError:
        raise httpx.ReadTimeout(f"no whole answer within {timeout:g} s") from None
    answer.raise_for_status()
    return [str(m.get("id")) for m in answer.json().get("data", [])]


async def listed_models(config: TeacherConfig, timeout: float | None = None) -> list[str] | None:
    """The models the teacher's endpoint lists, or None when it cannot be reached."""
    if config.base_url is None:
        return None
    try:
        return await fetch_model_ids(
            config.base_url,
            api_key_of(config),
            timeout if timeout is not None else min(config.timeout, 10.0),
        )
    except (httpx.HTTPError, ValueError, AttributeError, CordError):
        return None
