"""``cord-proxy distill`` (args from cli.py). Exit 0: all done; 1: some failed; 2: could not
start; 130: interrupted."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from cord_proxy.distill.arguments import checked_cord, engine_config, settings_of
from cord_proxy.distill.engines import Engine, LocalEngine, ProxyEngine
from cord_proxy.distill.errors import DistillError
from cord_proxy.distill.preflight import as_base_url, check_proxy, check_teachers
from cord_proxy.distill.run import run_distill
from cord_proxy.distill.settings import DistillSettings
from cord_proxy.gc_settings import settle_start_up

DEFAULT_PROXY_TIMEOUT_S = 3600.0


async def engine_of(args: Any, settings: DistillSettings) -> Engine:
    """The proxy at ``--url``, or the engine in this process; checked before the run."""
    if args.url:
        base_url, key = as_base_url(args.url), os.environ.get(args.api_key_env)
        model = await check_proxy(base_url, args.model, key, args.api_key_env)
        timeout = args.timeout or DEFAULT_PROXY_TIMEOUT_S
        return ProxyEngine(base_url, model, settings.cord, timeout, key)
    config, model = engine_config(args.config, args.teacher_url, args.model)
    await check_teachers(config, model)
    timeout = args.timeout or config.server.request_timeout
    return LocalEngine(config, model, settings.cord, timeout)


def run_command(args: Any) -> int:
    settings = settings_of(args)
    if getattr(args, "ray", None):
        from cord_proxy.ray.distill import run_command as run_on_ray

        return run_on_ray(args, settings)

    async def run() -> int:
        checked_cord(args, settings)
        engine = await engine_of(args, settings)
        settle_start_up()
        summary = await run_distill(settings, engine)
        print(summary.render(settings), flush=True)
        return summary.exit_status

    try:
        return asyncio.run(run())
    except DistillError as error:
        print(f"cord-proxy distill: {error}", file=sys.stderr)
        return 2
