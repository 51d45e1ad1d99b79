"""Print the options table, or rewrite it in a README (``--write README.md``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cord_proxy.options_doc import options_table, with_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", type=Path, help="the README whose table to rewrite")
    args = parser.parse_args()
    if args.write is None:
        print(options_table())
        return
    args.write.write_text(with_table(args.write.read_text(encoding="utf-8")), encoding="utf-8")


if __name__ == "__main__":
    main()
