"""The README's tables of the request: the decoding options, the standard chat fields and the
Responses fields, each rendered from its one definition (decoding/options.py,
request_fields.py, responses/fields.py).

``python -m cord_proxy.options_doc`` prints them; ``--write README.md`` rewrites them in place.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

from cord_proxy.decoding.options import CONFIG, CORD, DecodeOptions, bounds_of, set_by
from cord_proxy.protocol import CordFields
from cord_proxy.request_fields import fields_table, table_cell
from cord_proxy.responses.fields import FIELDS as RESPONSES_FIELDS

BEGIN = "<!-- options table: python -m cord_proxy.options_doc --write README.md -->"
END = "<!-- end of options table -->"
FIELDS_BEGIN = "<!-- fields table: python -m cord_proxy.options_doc --write README.md -->"
FIELDS_END = "<!-- end of fields table -->"
RESPONSES_BEGIN = "<!-- responses table: python -m cord_proxy.options_doc --write README.md -->"
RESPONSES_END = "<!-- end of responses table -->"
HEADER = "| option | default | bounds | set by | meaning |\n|---|---|---|---|---|"


def options_table() -> str:
    """Every option of a request: the ``cord`` fields first, then the decoding options."""
    rows = [
        _row(name, info, _default(info.default), "`cord`")
        for name, info in CordFields.model_fields.items()
    ]
    rows += [
        _row(name, info, _default(info.default), _setter(name))
        for name, info in DecodeOptions.model_fields.items()
    ]
    return "\n".join([HEADER, *rows])


def with_table(readme: str) -> str:
    """The README text with its options and fields tables (between their markers) anew."""
    readme = _replaced(readme, BEGIN, END, options_table())
    readme = _replaced(readme, FIELDS_BEGIN, FIELDS_END, fields_table())
    return _replaced(readme, RESPONSES_BEGIN, RESPONSES_END, fields_table(RESPONSES_FIELDS))


def _replaced(readme: str, begin: str, end: str, table: str) -> str:
    head, found, rest = readme.partition(begin)
    _, found_end, tail = rest.partition(end)
    if not found or not found_end:
        raise ValueError(f"the README has no markers {begin} ... {end}")
    return f"{head}{begin}\n{table}\n{end}{tail}"


def _row(name: str, info: FieldInfo, default: str, setter: str) -> str:
    meaning = table_cell(info.description or "")
    return f"| `{name}` | {default} | {bounds_of(info)} | {setter} | {meaning} |"


def _default(value: Any) -> str:
    if value is None or value == ():
        return "—"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple):
        return ", ".join(f"`{item}`" for item in value)
    return f"`{value}`"


def _setter(name: str) -> str:
    who = set_by(name)
    if who == CORD:
        return "`cord`, config"
    if who == CONFIG:
        return "config"
    return f"`{who}` (standard field), config"


def main() -> None:
    parser = argparse.ArgumentParser(description="Print the options table, or rewrite a README's.")
    parser.add_argument("--write", type=Path, help="the README whose table to rewrite")
    args = parser.parse_args()
    if args.write is None:
        print(options_table(), fields_table(), fields_table(RESPONSES_FIELDS), sep="\n\n")
        return
    args.write.write_text(with_table(args.write.read_text(encoding="utf-8")), encoding="utf-8")


if __name__ == "__main__":
    main()
