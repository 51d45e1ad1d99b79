"""The layers of cord_proxy and bench, read from the imports with `ast` (tests/module_graph.py).

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
from collections.abc import Iterable, Mapping
from itertools import pairwise
from pathlib import Path

import pytest

from cord_proxy.testing.module_graph import (
    Function,
    Import,
    Module,
    import_graph,
    read_packages,
    shortest_cycle,
    strongly_connected,
    within,
)

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "cord_proxy"
BENCH = REPO / "bench"
TESTS = "tests"

# The HTTP face: the api/ package (routes, middlewares, SSE writers, the app and its
# connections). Every rule that keeps the server out keeps all of it out.
HTTP_FACE = ("cord_proxy.api",)
# It stands on top: within cord_proxy, only the commands that serve it import it. (The engine
# and the data have rules of their own that name it: each import is said by one rule.)
HTTP_FACE_USERS = (*HTTP_FACE, "cord_proxy.cli", "cord_proxy.ui.view")
HTTP_FACE_RULED_ELSEWHERE = ("cord_proxy.decoding", "cord_proxy.data")
# What the engine may never import: the HTTP face, the wire, the runtime, the attempts, the
# data, distill and ray modules, and the batch, UI and command layers.
OUTSIDE_DECODING = (
    *HTTP_FACE,
    "cord_proxy.protocol",
    "cord_proxy.completion",
    "cord_proxy.runtime",
    "cord_proxy.attempts",
    "cord_proxy.data",
    "cord_proxy.distill",
    "cord_proxy.ray",
    "cord_proxy.batches",
    "cord_proxy.ui",
    "cord_proxy.cli",
)
# The step contract teachers share with the engine (think tags included) is teachers.base,
# so teachers/ needs nothing at all from decoding/.
OUTSIDE_TEACHERS = ("cord_proxy.decoding",)
# The server's batches and the distill command share a core (cord_proxy.attempts): batches
# stand on no command.
OUTSIDE_BATCHES = ("cord_proxy.distill", "cord_proxy.ray", "cord_proxy.cli")
# Records take plain values: data knows neither the runtime's request plan nor what stands
# on it.
OUTSIDE_DATA = (
    "cord_proxy.runtime",
    "cord_proxy.attempts",
    *HTTP_FACE,
    "cord_proxy.batches",
    "cord_proxy.distill",
    "cord_proxy.ray",
    "cord_proxy.ui",
    "cord_proxy.cli",
)
# Leaves import nothing of cord_proxy; the config imports only leaves.
LEAVES = (
    "cord_proxy.errors",
    "cord_proxy.roles",
    "cord_proxy.decoding.options",
    "cord_proxy.request_fields",
)
CONFIG_MAY_IMPORT = frozenset(LEAVES)
# Test support shared with bench and scripts; nothing else in cord_proxy stands on it.
TESTING = "cord_proxy.testing"
# Named by a rule before the module exists: an empty rule until it lands (none today).
PLANNED: frozenset[str] = frozenset()

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


def _forbidden(modules: Modules, package: str, outside: tuple[str, ...]) -> list[str]:
    """The imports by `package`'s modules of any module within `outside`."""
    return [
        _says(name, imp)
        for name, imp in _imports_in(modules, package)
        if any(within(imp.target, o) for o in outside)
    ]


def decoding_problems(modules: Modules) -> list[str]:
    return _forbidden(modules, "cord_proxy.decoding", OUTSIDE_DECODING)


def teachers_problems(modules: Modules) -> list[str]:
    return _forbidden(modules, "cord_proxy.teachers", OUTSIDE_TEACHERS)


def batches_problems(modules: Modules) -> list[str]:
    return _forbidden(modules, "cord_proxy.batches", OUTSIDE_BATCHES)


def data_problems(modules: Modules) -> list[str]:
    return _forbidden(modules, "cord_proxy.data", OUTSIDE_DATA)


def http_face_problems(modules: Modules) -> list[str]:
    return [
        _says(name, imp)
        for name, imp in _imports_in(modules, "cord_proxy")
        if any(within(imp.target, face) for face in HTTP_FACE)
        and not any(within(name, m) for m in (*HTTP_FACE_USERS, *HTTP_FACE_RULED_ELSEWHERE))
    ]


def imports_from_tests_problems(modules: Modules) -> list[str]:
    """bench and cord_proxy import nothing from tests (what they share is cord_proxy.testing)."""
    return _forbidden(modules, "cord_proxy", (TESTS,)) + _forbidden(modules, "bench", (TESTS,))


def imports_of_testing_problems(modules: Modules) -> list[str]:
    return [
        _says(name, imp)
        for name, imp in _imports_in(modules, "cord_proxy")
        if within(imp.target, TESTING) and not within(name, TESTING)
    ]


def leaf_problems(modules: Modules) -> list[str]:
    return [problem for leaf in LEAVES for problem in _forbidden(modules, leaf, ("cord_proxy",))]


def config_problems(modules: Modules) -> list[str]:
    module = modules.get("cord_proxy.config")
    imports = module.imports if module is not None else ()
    return [
        _says("cord_proxy.config", imp) for imp in imports if imp.target not in CONFIG_MAY_IMPORT
    ]


def cycle_problems(modules: Modules) -> list[str]:
    """One shortest cycle through each module of each loop of cord_proxy, each said once."""
    graph = import_graph({n: m for n, m in modules.items() if within(n, "cord_proxy")})
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


def unknown_names(
    modules: Modules, names: Iterable[str], planned: frozenset[str] = PLANNED
) -> list[str]:
    """The cord_proxy modules a rule names that do not exist (and are not planned)."""
    return sorted(
        name
        for name in set(names) - planned
        if within(name, "cord_proxy") and not any(within(m, name) for m in modules)
    )


def _read(*roots: Path) -> Modules:
    return read_packages([r for r in roots if r.is_dir()], also=(TESTS,))


@pytest.fixture(scope="module")
def modules() -> Modules:
    found = _read(PACKAGE, BENCH)
    # Not vacuous: the reader sees both packages and the imports in them, tests' included.
    assert {"cord_proxy", "cord_proxy.config", "cord_proxy.decoding.beam"} <= set(found)
    assert {"bench", "bench.faultteacher"} <= set(found)
    assert any(i.target == "cord_proxy.errors" for i in found["cord_proxy.config"].imports)
    assert any(within(i.target, TESTING) for i in found["bench.faultteacher"].imports)
    return found


RULES = {
    "decoding-imports-no-outer-layer": decoding_problems,
    "teachers-import-nothing-from-decoding": teachers_problems,
    "config-imports-only-leaves": config_problems,
    "leaves-import-nothing-of-cord_proxy": leaf_problems,
    "batches-import-nothing-from-distill": batches_problems,
    "data-imports-nothing-from-runtime": data_problems,
    "only-the-commands-import-the-http-face": http_face_problems,
    "bench-and-cord_proxy-import-nothing-from-tests": imports_from_tests_problems,
    "only-tests-and-bench-import-cord_proxy.testing": imports_of_testing_problems,
    "no-import-cycles": cycle_problems,
}
NAMED = (
    *OUTSIDE_DECODING,
    *OUTSIDE_TEACHERS,
    *OUTSIDE_BATCHES,
    *OUTSIDE_DATA,
    *LEAVES,
    *HTTP_FACE_USERS,
    TESTING,
    "cord_proxy.decoding",
    "cord_proxy.teachers",
    "cord_proxy.batches",
    "cord_proxy.data",
    "cord_proxy.config",
)


@pytest.mark.parametrize("rule", RULES)
def test_the_layers_hold(modules: Modules, rule: str) -> None:
    problems = RULES[rule](modules)
    assert not problems, f"{rule}:\n" + "\n\n".join(problems)


def test_the_rules_name_only_modules_that_exist(modules: Modules) -> None:
    assert unknown_names(modules, NAMED) == []


# --- the checker itself, on planted trees ---------------------------------------------------


def _plant(root: Path, files: Mapping[str, str], bench: Mapping[str, str] | None = None) -> Modules:
    """A scratch cord_proxy (`files`) and bench (`bench`) under `root`, read as the real ones."""
    for package, planted in (("cord_proxy", files), ("bench", bench or {})):
        for relative, text in planted.items():
            path = root / package / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return _read(root / "cord_proxy", root / "bench")


CLEAN = {
    "__init__.py": "from cord_proxy.decoding import decode\n",
    "errors.py": "class CordError(Exception): ...\n",
    "config.py": "from cord_proxy.errors import CordError\nfrom .decoding.options import X\n",
    "decoding/__init__.py": "from .beam import decode\n",
    "decoding/options.py": "X = 1\n",
    "decoding/beam.py": "from cord_proxy.teachers.base import Teacher\ndef decode(): ...\n",
    "teachers/__init__.py": "from cord_proxy.teachers.base import Teacher\n",
    "teachers/base.py": "from cord_proxy import errors\nclass Teacher: ...\n",
    "api/__init__.py": "",
    "api/app.py": "from cord_proxy.decoding import decode\nfrom cord_proxy.config import X\n",
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
                "from ..api.app import create_app\n"
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
        "cord_proxy.decoding.beam imports cord_proxy.api.app, "
        "line 2: from ..api.app import create_app",
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


# A wider clean tree: every layer the newer rules name, each importing what it may.
WIDE = {
    **CLEAN,
    "roles.py": "Role = str\n",
    "runtime.py": "from cord_proxy.decoding import decode\nfrom cord_proxy.roles import Role\n",
    "attempts.py": "from cord_proxy.runtime import run_job\n",
    "data/__init__.py": "",
    "data/records.py": (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from cord_proxy.decoding.job import DecodeJob\n"
    ),
    "decoding/job.py": "from cord_proxy.roles import role_gaps\n",
    "distill/__init__.py": "",
    "distill/run.py": "from cord_proxy.attempts import with_retries\n",
    "batches/__init__.py": "",
    "batches/runner.py": (
        "from cord_proxy.attempts import with_retries\nfrom cord_proxy.data.records import r\n"
    ),
    "api/chat.py": "from cord_proxy.runtime import run_job\nfrom cord_proxy.data import records\n",
    "testing/__init__.py": "",
    "testing/fake_vllm_wire.py": "BOS = 2\n",
}
WIDE_BENCH = {
    "__init__.py": "",
    "faultteacher.py": "from cord_proxy.testing import fake_vllm_wire as wire\n",
    "load.py": "from bench.faultteacher import wire\nfrom cord_proxy.api.chat import x\n",
}
# Each rule broken on purpose: (cord_proxy files, bench files) planted over the wide tree,
# and what that rule, and no other, says.
BROKEN: dict[str, tuple[dict[str, str], dict[str, str], list[str]]] = {
    "batches-import-nothing-from-distill": (
        {"batches/output.py": "def f():\n    from cord_proxy.distill.run import ProblemFailed\n"},
        {},
        [
            "cord_proxy.batches.output imports cord_proxy.distill.run, "
            "line 2: from cord_proxy.distill.run import ProblemFailed (in a function)"
        ],
    ),
    "data-imports-nothing-from-runtime": (
        {
            "data/records.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from cord_proxy.runtime import ChatJob\n"
            ),
            "data/sink.py": "from cord_proxy.api import chat\n",
        },
        {},
        [
            "cord_proxy.data.records imports cord_proxy.runtime, "
            "line 3: from cord_proxy.runtime import ChatJob (under TYPE_CHECKING)",
            "cord_proxy.data.sink imports cord_proxy.api.chat, "
            "line 1: from cord_proxy.api import chat",
        ],
    ),
    "bench-and-cord_proxy-import-nothing-from-tests": (
        {"testing/fake_vllm_wire.py": "from tests.support.fakes import ScriptedFakeTeacher\n"},
        {
            "faultteacher.py": "from tests import fake_vllm_wire as wire\n",
            "ui_large_file.py": "def f():\n    import tests.ui.browser\n",
        },
        [
            "cord_proxy.testing.fake_vllm_wire imports tests.support.fakes, "
            "line 1: from tests.support.fakes import ScriptedFakeTeacher",
            "bench.faultteacher imports tests, line 1: from tests import fake_vllm_wire as wire",
            "bench.ui_large_file imports tests.ui.browser, "
            "line 2: import tests.ui.browser (in a function)",
        ],
    ),
    "only-tests-and-bench-import-cord_proxy.testing": (
        {"api/app.py": "from cord_proxy.testing.fake_vllm_wire import BOS\n"},
        {},
        [
            "cord_proxy.api.app imports cord_proxy.testing.fake_vllm_wire, "
            "line 1: from cord_proxy.testing.fake_vllm_wire import BOS"
        ],
    ),
    "only-the-commands-import-the-http-face": (
        {"metrics.py": "from cord_proxy.api.state import METRICS\n"},
        {},
        [
            "cord_proxy.metrics imports cord_proxy.api.state, "
            "line 1: from cord_proxy.api.state import METRICS"
        ],
    ),
    "leaves-import-nothing-of-cord_proxy": (
        {"roles.py": "from cord_proxy.errors import CordError\n"},
        {},
        [
            "cord_proxy.roles imports cord_proxy.errors, "
            "line 1: from cord_proxy.errors import CordError"
        ],
    ),
    "decoding-imports-no-outer-layer": (  # the api package counts as the server does
        {"decoding/job.py": "from cord_proxy.api import chat_events\n"},
        {},
        [
            "cord_proxy.decoding.job imports cord_proxy.api, "
            "line 1: from cord_proxy.api import chat_events"
        ],
    ),
}


def test_the_wide_planted_tree_passes(tmp_path: Path) -> None:
    modules = _plant(tmp_path, WIDE, WIDE_BENCH)
    assert len(modules) == len(WIDE) + len(WIDE_BENCH)
    assert {rule: check(modules) for rule, check in RULES.items()} == {rule: [] for rule in RULES}


@pytest.mark.parametrize("rule", BROKEN)
def test_each_newer_rule_fails_when_broken_on_purpose(tmp_path: Path, rule: str) -> None:
    files, bench, said = BROKEN[rule]
    modules = _plant(tmp_path, {**WIDE, **files}, {**WIDE_BENCH, **bench})
    assert RULES[rule](modules) == said
    assert [r for r, check in RULES.items() if check(modules)] == [rule]


def test_a_stale_name_in_a_rule_is_found(tmp_path: Path) -> None:
    modules = _plant(tmp_path, CLEAN)
    names = ["cord_proxy.dataset", "cord_proxy.api", "cord_proxy.decoding", "cord_proxy.export"]
    assert unknown_names(modules, names) == ["cord_proxy.dataset", "cord_proxy.export"]
    names.append("cord_proxy.responses")  # no such module yet: planned, so not stale
    planned = frozenset({"cord_proxy.responses"})
    assert unknown_names(modules, names, planned) == ["cord_proxy.dataset", "cord_proxy.export"]
    assert unknown_names(modules, names) == [
        "cord_proxy.dataset",
        "cord_proxy.export",
        "cord_proxy.responses",
    ]


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
    assert "| api.app | 2 | config, decoding |" in out
    assert f"{len(CLEAN)} modules" in out
    assert "| 1 | decoding.beam:decode | 2 |" in out
    assert "functions over 60 lines: 0" in out
