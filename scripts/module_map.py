"""Render the module map of docs/architecture.md: a line per package and per module of
cord_proxy, from the first paragraph of each one's docstring.

    .venv/bin/python scripts/module_map.py --write   # rewrite the map in docs/architecture.md
    .venv/bin/python scripts/module_map.py --check   # exit 1 when the map is stale
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "cord_proxy"
DOC = REPO / "docs" / "architecture.md"
BEGIN = "<!-- module map: .venv/bin/python scripts/module_map.py --write -->"
END = "<!-- end of the module map -->"


def summary(path: Path) -> str:
    """The first paragraph of a module's docstring, on one line ('(no docstring)' if none)."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or "(no docstring)"
    return " ".join(doc.split("\n\n", 1)[0].split())


def package_lines(package: Path, depth: int) -> list[str]:
    indent = "  " * depth
    name = package.relative_to(REPO).as_posix() + "/"
    lines = [f"{indent}- `{name}`: {summary(package / '__init__.py')}"]
    for child in sorted(package.iterdir()):
        if child.is_dir() and (child / "__init__.py").is_file():
            lines += package_lines(child, depth + 1)
        elif child.suffix == ".py" and child.name != "__init__.py":
            lines.append(f"{indent}  - `{child.name}`: {summary(child)}")
    return lines


def render() -> str:
    return "\n".join([BEGIN, *package_lines(PACKAGE, 0), END])


def with_map(text: str) -> str:
    """`text` (docs/architecture.md) with its module map replaced by a fresh rendering."""
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return head + render() + tail


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite the map in place")
    parser.add_argument("--check", action="store_true", help="exit 1 when the map is stale")
    parser.add_argument("--doc", type=Path, default=DOC, help="the page that holds the map")
    args = parser.parse_args(argv)
    current = args.doc.read_text(encoding="utf-8")
    fresh = with_map(current)
    if args.write:
        args.doc.write_text(fresh, encoding="utf-8")
    elif args.check and fresh != current:
        print(f"{args.doc} is stale: run scripts/module_map.py --write")
        return 1
    elif not args.check:
        print(render())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
