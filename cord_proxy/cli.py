"""Command line: serve | up | teachers check (and the dataset commands)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from cord_proxy.api.lifecycle import ListenError, refuse_taken_port
from cord_proxy.config import CordConfig, load_config
from cord_proxy.defaults import default_config
from cord_proxy.errors import ConfigError
from cord_proxy.local import DEFAULT_TEACHER_PORT, LocalTeacherError
from cord_proxy.logs import configure_logging
from cord_proxy.runtime import Runtime
from cord_proxy.ui.view import VIEW_PORT, run_view

DEFAULT_HOST = "127.0.0.1"
PROXY_PORT = 8400


class CommandError(Exception):
    """A command cannot start; its message is the line the user reads."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cord-proxy", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the OpenAI-compatible API from a config")
    serve.add_argument("--config", required=True, help="TOML config file")
    _add_listen_options(serve, "the config's [server] port")

    up = commands.add_parser("up", help="prepare and start the local CPU teacher, then serve")
    _add_listen_options(up, str(PROXY_PORT))
    _add_teacher_port(up)

    _add_dataset_commands(commands)

    view = commands.add_parser("view", help="serve the web page over a trace file (no teachers)")
    view.add_argument("file", help="JSONL of trace records (a distill output or the sink)")
    _add_listen_options(view, str(VIEW_PORT))

    teachers = commands.add_parser("teachers", help="teacher tools")
    teacher_commands = teachers.add_subparsers(dest="teachers_command", required=True)
    check = teacher_commands.add_parser("check", help="check every configured teacher")
    check.add_argument(
        "--config",
        help="TOML config file (default: the local CPU teacher, prepared and started if needed)",
    )
    _add_teacher_port(check)
    return parser


def _add_teacher_port(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--teacher-port",
        type=int,
        default=DEFAULT_TEACHER_PORT,
        help="port of the local CPU teacher (default %(default)s)",
    )


def _add_dataset_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    distill = commands.add_parser(
        "distill", help="write a trace for every problem of a JSONL file (resumable by id)"
    )
    distill.add_argument("--input", required=True, help="JSONL: {id, question | messages, answer}")
    distill.add_argument("--output", required=True, help="JSONL of trace records (appended)")
    engine = distill.add_mutually_exclusive_group()
    engine.add_argument("--config", help="TOML config: run the engine in this process")
    engine.add_argument("--url", help="send to a running proxy instead (http://HOST:PORT/v1)")
    distill.add_argument(
        "--teacher-url",
        default=f"http://{DEFAULT_HOST}:{DEFAULT_TEACHER_PORT}/v1",
        help="without --config or --url: the local teacher that the embedded default config "
        "uses (default %(default)s; start it with `cord-proxy up`)",
    )
    distill.add_argument("--model", help="ensemble (default: the first one)")
    distill.add_argument("--concurrency", type=int, default=4)
    distill.add_argument("--failures", help="JSONL of failures (default OUTPUT.failures.jsonl)")
    distill.add_argument(
        "--cord",
        help='decoding options for every problem, as JSON: \'{"max_steps": 8, "beam_width": 2}\'',
    )
    distill.add_argument(
        "--retries", type=int, default=2, help="retries of a problem after a transient failure"
    )
    distill.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds per problem (default: the config's request_timeout)",
    )
    distill.add_argument(
        "--api-key-env",
        default="CORD_API_KEY",
        help="with --url: the environment variable holding the proxy's key (default %(default)s, "
        "the one every client of this project reads)",
    )
    distill.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="decode on Ray (pip install 'cord-proxy[ray]'): 'local' starts a local instance, "
        "otherwise the address of a running cluster (see deploy/scaling.md)",
    )
    distill.add_argument(
        "--ray-actors", type=int, default=2, help="with --ray: actors sharing --concurrency"
    )
    distill.add_argument("--log-level", default="warning")

    export = commands.add_parser("export", help="convert trace records to a training format")
    export.add_argument("--input", required=True, help="JSONL of trace records")
    export.add_argument("--output", required=True)
    export.add_argument(
        "--format",
        required=True,
        choices=["trl", "sharegpt", "openai-batch", "dpo", "prm"],
        help="trl, sharegpt, openai-batch: one row per record; dpo: step-level preference "
        "pairs; prm: stepwise process labels (both from the record's search tree)",
    )
    export.add_argument(
        "--min-margin",
        type=float,
        default=None,
        help="dpo: keep pairs whose margin (chosen minus rejected log score, nats per token) "
        "is at least this (default 0)",
    )
    export.add_argument(
        "--pairs-per-step",
        type=int,
        default=None,
        metavar="N",
        help="dpo: at most N pairs per round of a record, largest margins first (default: all)",
    )
    export.add_argument(
        "--soft", action="store_true", help="prm: labels are the steps' scores, not booleans"
    )
    export.add_argument(
        "--include-untrainable",
        action="store_true",
        help="also export text of teachers set trainable = false (their terms may forbid it)",
    )
    export.add_argument("--log-level", default="warning")


def _add_listen_options(parser: argparse.ArgumentParser, default_port: str) -> None:
    parser.add_argument("--host", default=None, help=f"listen address (default {DEFAULT_HOST})")
    parser.add_argument(
        "--port", type=int, default=None, help=f"listen port (default {default_port})"
    )
    parser.add_argument("--log-level", default="info")


def _with_listen(config: CordConfig, host: str | None, port: int | None) -> CordConfig:
    server = config.server.model_copy(
        update={k: v for k, v in (("host", host), ("port", port)) if v is not None}
    )
    return config.model_copy(update={"server": server})


async def _serve(config: CordConfig) -> None:
    from cord_proxy.api.app import create_app
    from cord_proxy.api.lifecycle import run_until_stopped, serve
    from cord_proxy.data.sink import sink_for

    runtime = Runtime(config)
    runner = await serve(
        create_app(runtime, sink_for(config.dataset)), config.server.host, config.server.port
    )
    print(
        f"cord-proxy serving http://{config.server.host}:{config.server.port}/v1 "
        f"(ensembles: {', '.join(runtime.ensemble_names)}); Ctrl-C stops",
        flush=True,
    )
    await run_until_stopped(runner)


def _local_teacher(port: int) -> tuple[str, object]:
    from cord_proxy.local import LocalTeacherServer, prepare

    try:
        prepare()
        server = LocalTeacherServer().start(port=port)
    except LocalTeacherError as error:
        raise CommandError(f"the local teacher (--teacher-port {port}): {error}") from None
    return server.base_url, server


def cmd_serve(args: argparse.Namespace) -> int:
    config = _with_listen(load_config(args.config), args.host, args.port)
    asyncio.run(_serve(config))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from cord_proxy.local import LocalTeacherServer

    host = DEFAULT_HOST if args.host is None else args.host
    port = PROXY_PORT if args.port is None else args.port
    refuse_taken_port(host, port)  # before minutes of starting a teacher
    base_url, server = _local_teacher(args.teacher_port)
    assert isinstance(server, LocalTeacherServer)
    try:
        asyncio.run(_serve(default_config(base_url, host, port)))
    finally:
        server.stop()
    return 0


def cmd_teachers_check(args: argparse.Namespace) -> int:
    from cord_proxy.teachers.check import check_all, format_checks

    server = None
    if args.config:
        config = load_config(args.config)
    else:
        base_url, server = _local_teacher(args.teacher_port)
        config = default_config(base_url)

    async def run() -> bool:
        runtime = Runtime(config)
        try:
            checks = await check_all(runtime.teachers, list(config.teachers))
        finally:
            await runtime.aclose()
        print(format_checks(checks))
        return all(c.ok for c in checks)

    try:
        return 0 if asyncio.run(run()) else 1
    finally:
        if server is not None:
            server.stop()  # type: ignore[attr-defined]


def cmd_distill(args: argparse.Namespace) -> int:
    from cord_proxy.distill.command import run_command

    return run_command(args)


def cmd_export(args: argparse.Namespace) -> int:
    from cord_proxy.data.exports import run_command

    return run_command(args)


def cmd_view(args: argparse.Namespace) -> int:
    host = DEFAULT_HOST if args.host is None else args.host
    return run_view(args.file, host, VIEW_PORT if args.port is None else args.port)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


COMMANDS = {
    "serve": cmd_serve,
    "up": cmd_up,
    "distill": cmd_distill,
    "export": cmd_export,
    "view": cmd_view,
}


def _name(args: argparse.Namespace) -> str:
    """``cord-proxy view``, ``cord-proxy teachers check``: how the user named the command."""
    sub = getattr(args, "teachers_command", None)
    return " ".join(["cord-proxy", args.command, *([sub] if sub else [])])


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    configure_logging(getattr(args, "log_level", "info"))
    try:
        if args.command == "teachers":
            return cmd_teachers_check(args)
        return COMMANDS[args.command](args)
    except ConfigError as error:
        print(f"cord-proxy: {error.message}", file=sys.stderr)
        return 2
    except ListenError as error:
        print(f"{_name(args)}: {error.explain('--port')}", file=sys.stderr)
        return 2
    except CommandError as error:
        print(f"{_name(args)}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
