"""Print a markdown table of every cord_proxy module: its lines and the cord_proxy modules it
imports, then the N longest functions (N: the first argument, default 15) and how many
functions are over 60 lines.

    .venv/bin/python scripts/modules.py [N] [PACKAGE_DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cord_proxy.testing.module_graph import Module, read_package  # noqa: E402

LONG = 60


def _short(name: str, package: str) -> str:
    return name.removeprefix(package + ".") if name != package else name


def module_table(modules: dict[str, Module], package: str) -> list[str]:
    rows = ["| module | lines | imports from " + package + " |", "|---|---:|---|"]
    for name, module in sorted(modules.items()):
        targets = sorted({_short(i.target, package) for i in module.imports} - {name})
        rows.append(f"| {_short(name, package)} | {module.lines} | {', '.join(targets)} |")
    total = sum(m.lines for m in modules.values())
    rows.append(f"\n{len(modules)} modules, {total} lines")
    return rows


def function_table(modules: dict[str, Module], package: str, most: int) -> list[str]:
    functions = [
        (f.lines, f"{_short(name, package)}:{f.name}", f.line)
        for name, module in modules.items()
        for f in module.functions
    ]
    functions.sort(key=lambda row: (-row[0], row[1]))
    rows = [f"\nThe {most} longest functions:\n", "| lines | function | line |", "|---:|---|---:|"]
    rows += [f"| {lines} | {name} | {line} |" for lines, name, line in functions[:most]]
    over = sum(1 for lines, _, _ in functions if lines > LONG)
    rows.append(f"\nfunctions over {LONG} lines: {over}")
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("most", nargs="?", type=int, default=15, help="longest functions shown")
    parser.add_argument("root", nargs="?", type=Path, default=REPO / "cord_proxy")
    args = parser.parse_args(argv)
    most, root = args.most, args.root
    modules = read_package(root)
    print("\n".join(module_table(modules, root.name) + function_table(modules, root.name, most)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
