"""The layers of cord_proxy, read from the imports with `ast` (tests/module_graph.py).

Every import counts: at module level, inside a function, and under ``if TYPE_CHECKING:``.
For the cycles too: a function-local or TYPE_CHECKING import that closes a loop hides the
loop from the interpreter without removing it, and a lazy import made to dodge a loop is
what these rules are here to retire. An import also runs the ``__init__`` of the packages
above the imported module, so the cycle check follows those edges as well (but not the
packages above the importing module itself, which are running already).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from itertools import pairwise
from pathlib import Path

import pytest

from tests.module_graph import (
    Function,
    Import,
    Module,
    import_graph,
    read_package,
    shortest_cycle,
    strongly_connected,
    within,
)

PACKAGE = Path(__file__).resolve().parent.parent / "cord_proxy"

# What the engine may never import: the server, the wire, the runtime, the data and distill
# modules, and the batch, UI and command layers.
OUTSIDE_DECODING = (
    "cord_proxy.server",
    "cord_proxy.connections",
    "cord_proxy.protocol",
    "cord_proxy.completion",
    "cord_proxy.runtime",
    "cord_proxy.data",
    "cord_proxy.dataset",
    "cord_proxy.export",
    "cord_proxy.distill",
    "cord_proxy.batches",
    "cord_proxy.ui",
    "cord_proxy.cli",
)
# The step contract teachers share with the engine (think tags included) is teachers.base,
# so teachers/ needs nothing at all from decoding/.
CONFIG_MAY_IMPORT = frozenset({"cord_proxy.errors", "cord_proxy.decoding.options"})

Modules = Mapping[str, Module]


def _imports_in(modules: Modules, package: str) -> list[tuple[str, Import]]:
    return [
        (name, imp)
        for name, module in sorted(modules.items())
        if within(name, package)
        for imp in module.imports
    ]


def _says(name: str, imp: Import) -> str:
    return f"{name} imports {imp.target}, {imp.where()}"


def decoding_problems(modules: Modules) -> list[str]:
    return [
        _says(name, imp)
        for name, imp in _imports_in(modules, "cord_proxy.decoding")
        if any(within(imp.target, outside) for outside in OUTSIDE_DECODING)
    ]


def teachers_problems(modules: Modules) -> list[str]:
    return [
        _says(name, imp)
        for name, imp in _imports_in(modules, "cord_proxy.teachers")
        if within(imp.target, "cord_proxy.decoding")
    ]


def config_problems(modules: Modules) -> list[str]:
    module = modules.get("cord_proxy.config")
    imports = module.imports if module is not None else ()
    return [
        _says("cord_proxy.config", imp) for imp in imports if imp.target not in CONFIG_MAY_IMPORT
    ]


def cycle_problems(modules: Modules) -> list[str]:
    """One shortest cycle through each module of each loop, each cycle said once."""
    graph = import_graph(modules)
    seen: set[tuple[str, ...]] = set()
    problems: list[str] = []
    for component in strongly_connected(graph):
        for start in component:
            cycle = shortest_cycle(graph, start, component)
            key = _rotated(cycle[:-1])
            if key in seen:
                continue
            seen.add(key)
            steps = [_step(graph, a, b) for a, b in pairwise(cycle)]
            problems.append("import cycle: " + " -> ".join(cycle) + "".join(steps))
    return sorted(problems)


def _rotated(cycle: list[str]) -> tuple[str, ...]:
    first = cycle.index(min(cycle))
    return tuple(cycle[first:] + cycle[:first])


def _step(graph: Mapping[str, Mapping[str, Import]], source: str, target: str) -> str:
    imp = graph[source][target]
    via = "" if imp.target == target else f" (which runs the __init__ of {target})"
    return f"\n    {source} {imp.where()}{via}"


@pytest.fixture(scope="module")
def modules() -> Modules:
    found = read_package(PACKAGE)
    # Not vacuous: the reader sees the whole package and the imports in it.
    assert {"cord_proxy", "cord_proxy.config", "cord_proxy.decoding.beam"} <= set(found)
    assert any(i.target == "cord_proxy.errors" for i in found["cord_proxy.config"].imports)
    return found


RULES = {
    "decoding-imports-no-outer-layer": decoding_problems,
    "teachers-import-nothing-from-decoding": teachers_problems,
    "config-imports-only-errors-and-options": config_problems,
    "no-import-cycles": cycle_problems,
}


@pytest.mark.parametrize("rule", RULES)
def test_the_layers_hold(modules: Modules, rule: str) -> None:
    problems = RULES[rule](modules)
    assert not problems, f"{rule}:\n" + "\n\n".join(problems)


# --- the checker itself, on planted trees ---------------------------------------------------


def _plant(root: Path, files: Mapping[str, str]) -> Modules:
    for relative, text in files.items():
        path = root / "cord_proxy" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return read_package(root / "cord_proxy")


CLEAN = {
    "__init__.py": "from cord_proxy.decoding import decode\n",
    "errors.py": "class CordError(Exception): ...\n",
    "config.py": "from cord_proxy.errors import CordError\nfrom .decoding.options import X\n",
    "decoding/__init__.py": "from .beam import decode\n",
    "decoding/options.py": "X = 1\n",
    "decoding/beam.py": "from cord_proxy.teachers.base import Teacher\ndef decode(): ...\n",
    "teachers/__init__.py": "from cord_proxy.teachers.base import Teacher\n",
    "teachers/base.py": "from cord_proxy import errors\nclass Teacher: ...\n",
    "server.py": "from cord_proxy.decoding import decode\nfrom cord_proxy.config import X\n",
}


def test_a_clean_planted_tree_passes(tmp_path: Path) -> None:
    modules = _plant(tmp_path, CLEAN)
    assert len(modules) == len(CLEAN)
    assert modules["cord_proxy.decoding.beam"].functions == (Function("decode", 2, 1),)
    for check in RULES.values():
        assert check(modules) == []


def test_the_checker_finds_planted_layer_violations(tmp_path: Path) -> None:
    modules = _plant(
        tmp_path,
        {
            **CLEAN,
            "decoding/beam.py": (
                "from typing import TYPE_CHECKING\n"
                "from ..server import app\n"
                "if TYPE_CHECKING:\n    from cord_proxy.data.records import Row\n"
                "def decode():\n    import cord_proxy.runtime\n"
            ),
            "teachers/base.py": (
                "class Teacher:\n    def f(self):\n        from ..decoding import x\n"
            ),
            "config.py": "from cord_proxy.errors import E\nfrom cord_proxy.teachers import base\n",
            "decoding/segment.py": "from cord_proxy import cli\nimport cord_proxy.ui.routes as r\n",
            "cli.py": "",
            "ui/__init__.py": "",
            "ui/routes.py": "",
        },
    )
    assert decoding_problems(modules) == [
        "cord_proxy.decoding.beam imports cord_proxy.server, line 2: from ..server import app",
        "cord_proxy.decoding.beam imports cord_proxy.data.records, "
        "line 4: from cord_proxy.data.records import Row (under TYPE_CHECKING)",
        "cord_proxy.decoding.beam imports cord_proxy.runtime, "
        "line 6: import cord_proxy.runtime (in a function)",
        "cord_proxy.decoding.segment imports cord_proxy.cli, line 1: from cord_proxy import cli",
        "cord_proxy.decoding.segment imports cord_proxy.ui.routes, "
        "line 2: import cord_proxy.ui.routes as r",
    ]
    assert teachers_problems(modules) == [
        "cord_proxy.teachers.base imports cord_proxy.decoding, "
        "line 3: from ..decoding import x (in a function)"
    ]
    assert config_problems(modules) == [
        "cord_proxy.config imports cord_proxy.teachers.base, "
        "line 2: from cord_proxy.teachers import base"
    ]


def test_the_checker_finds_planted_cycles(tmp_path: Path) -> None:
    modules = _plant(
        tmp_path,
        {
            **CLEAN,
            # a loop closed by a function-local import
            "a.py": "import cord_proxy.b\n",
            "b.py": "def f():\n    from cord_proxy.a import x\n",
            # a loop through a package's __init__: importing decoding.options runs
            # decoding/__init__, which runs beam, whose teachers run the config again
            "teachers/__init__.py": "from cord_proxy.teachers.client import Client\n",
            "teachers/client.py": "from cord_proxy.config import X\n",
        },
    )
    problems = cycle_problems(modules)
    assert len(problems) == 2, problems
    assert problems[0] == (
        "import cycle: cord_proxy.a -> cord_proxy.b -> cord_proxy.a"
        "\n    cord_proxy.a line 1: import cord_proxy.b"
        "\n    cord_proxy.b line 2: from cord_proxy.a import x (in a function)"
    )
    assert problems[1].startswith(
        "import cycle: cord_proxy.config -> cord_proxy.decoding -> cord_proxy.decoding.beam"
        " -> cord_proxy.teachers -> cord_proxy.teachers.client -> cord_proxy.config"
    )
    assert (
        "cord_proxy.config line 2: from .decoding.options import X"
        " (which runs the __init__ of cord_proxy.decoding)"
    ) in problems[1]


def test_the_module_table_lists_every_module_and_the_longest_functions(tmp_path: Path) -> None:
    _plant(tmp_path, CLEAN)
    script = PACKAGE.parent / "scripts" / "modules.py"
    out = subprocess.run(
        [sys.executable, str(script), "1", str(tmp_path / "cord_proxy")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "| config | 2 | decoding.options, errors |" in out
    assert "| server | 2 | config, decoding |" in out
    assert f"{len(CLEAN)} modules" in out
    assert "| 1 | decoding.beam:decode | 2 |" in out
    assert "functions over 60 lines: 0" in out
