"""Parse `vllm serve` command lines with the installed vLLM's own parser (no model load).

Run by tests/deploy/test_vllm_serve_args.py with the local teacher's Python, where vLLM
lives. Reads a JSON list of argument lists (what follows ``vllm serve``) on stdin and
prints one JSON object: vLLM's version, and for each list the parsed settings that the
tests check, or the parser's error. A flag that the parser does not define exactly fails
(argparse would take an abbreviation), and so do a value it refuses and a flag it marks
deprecated.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from typing import Any

KEPT = (
    "model_tag",
    "served_model_name",
    "host",
    "port",
    "tensor_parallel_size",
    "max_model_len",
    "enable_prefix_caching",
    "generation_config",
    "logprobs_mode",
    "logits_processors",
    "gpu_memory_utilization",
    "max_num_seqs",
    "dtype",
)


def serve_parser() -> Any:
    """`vllm serve`'s parser, built as vllm/entrypoints/cli/serve.py builds it."""
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    try:  # vLLM 0.32
        from vllm.entrypoints.launchers.cli_args import (
            make_arg_parser,
            validate_parsed_serve_args,
        )
    except ImportError:  # older layouts
        from vllm.entrypoints.openai.cli_args import (  # type: ignore[no-redef]
            make_arg_parser,
            validate_parsed_serve_args,
        )
    return make_arg_parser(FlexibleArgumentParser()), validate_parsed_serve_args


def parse(parser: Any, validate: Any, argv: list[str]) -> dict[str, Any]:
    # argparse takes an unambiguous prefix of a flag (--enable-prefix-cachin), so a flag
    # renamed to a longer name would still parse: every flag must be one the parser defines
    known = parser._option_string_actions
    inexact = [a for a in argv if a.startswith("--") and a.split("=", 1)[0] not in known]
    if inexact:
        return {"error": f"not flags of this vLLM: {', '.join(inexact)}"}
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            args = parser.parse_args(argv)
        validate(args)
    except SystemExit:
        said = errors.getvalue().strip().splitlines()  # the usage, then the error
        return {"error": said[-1] if said else "the parser exited"}
    except Exception as error:
        return {"error": f"{type(error).__name__}: {error}"}
    deprecated = sorted(
        option
        for action in getattr(parser, "_deprecated", ())
        for option in action.option_strings
        if option in argv or any(a.startswith(option + "=") for a in argv)
    )
    if deprecated:
        return {"error": f"deprecated in this vLLM: {', '.join(deprecated)}"}
    return {"args": {name: getattr(args, name, None) for name in KEPT}}


def main() -> None:
    import vllm

    lines: list[list[str]] = json.load(sys.stdin)
    parser, validate = serve_parser()
    results = [parse(parser, validate, argv) for argv in lines]
    json.dump({"version": vllm.__version__, "results": results}, sys.stdout, default=str)


if __name__ == "__main__":
    main()
