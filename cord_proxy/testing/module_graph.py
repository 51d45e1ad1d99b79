"""The modules of a package as `ast` reads them: their imports, their functions, the cycles.

Shared by tests/test_layering.py (the layering rules) and scripts/modules.py (the table of
modules). It reads source only and imports nothing it reads.

An import counts when it names a module of a package read (or of a package named in `also`,
such as ``tests``, to catch imports of it). It names the module that runs: ``from
cord_proxy.teachers import base`` is the module ``cord_proxy.teachers.base`` when that file
exists, else the package ``cord_proxy.teachers``.
Python also runs the ``__init__`` of every package above that module, so an import brings in
those packages too (`Import.packages`), except the packages above the importing module
itself, which are already running when it runs.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Import:
    """One module named by one import statement."""

    target: str
    line: int
    statement: str
    local: bool = False  # inside a function
    type_checking: bool = False  # under ``if TYPE_CHECKING:``
    packages: tuple[str, ...] = ()  # the packages above `target` whose __init__ it runs

    def where(self) -> str:
        kind = " (in a function)" if self.local else ""
        kind += " (under TYPE_CHECKING)" if self.type_checking else ""
        return f"line {self.line}: {self.statement}{kind}"


@dataclass(frozen=True)
class Function:
    name: str  # Class.method, or outer.inner for a nested function
    line: int
    lines: int


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    lines: int
    is_package: bool
    imports: tuple[Import, ...] = ()
    functions: tuple[Function, ...] = ()

    def dependencies(self) -> dict[str, Import]:
        """Every module this one makes run, the imported ones and their packages, with the
        first import that does it."""
        found: dict[str, Import] = {}
        for imp in self.imports:
            for name in (imp.target, *imp.packages):
                found.setdefault(name, imp)
        found.pop(self.name, None)
        return found


def module_name(root: Path, path: Path) -> str:
    """``cord_proxy/teachers/base.py`` -> ``cord_proxy.teachers.base`` (root: the package)."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def read_package(root: Path) -> dict[str, Module]:
    """Every module of the package at `root` (a folder with an ``__init__.py``), by name."""
    return read_packages([root])


def read_packages(roots: Iterable[Path], also: Iterable[str] = ()) -> dict[str, Module]:
    """Every module of the packages at `roots`, by name, with their imports of one another
    and of the top-level packages named in `also`."""
    paths = {module_name(root, p): p for root in roots for p in sorted(root.rglob("*.py"))}
    known = frozenset(paths)
    tops = frozenset({name.split(".")[0] for name in paths} | set(also))
    return {name: _read_module(name, path, known, tops) for name, path in paths.items()}


def _read_module(name: str, path: Path, known: frozenset[str], tops: frozenset[str]) -> Module:
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    is_package = path.name == "__init__.py"
    reader = _Reader(name, is_package, known, tops, source)
    reader.visit(tree)
    return Module(
        name=name,
        path=path,
        lines=len(source.splitlines()),
        is_package=is_package,
        imports=tuple(reader.imports),
        functions=tuple(reader.functions),
    )


@dataclass
class _Reader(ast.NodeVisitor):
    module: str
    is_package: bool
    known: frozenset[str]
    tops: frozenset[str]  # the top-level packages whose imports count
    source: str
    imports: list[Import] = field(default_factory=list)
    functions: list[Function] = field(default_factory=list)
    _scope: list[str] = field(default_factory=list)
    _in_function: int = 0
    _in_type_checking: int = 0

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        name = ".".join([*self._scope, node.name])
        end = node.end_lineno or node.lineno
        self.functions.append(Function(name, node.lineno, end - node.lineno + 1))
        self._scope.append(node.name)
        self._in_function += 1
        self.generic_visit(node)
        self._in_function -= 1
        self._scope.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._scope.append(node.name)
        self.generic_visit(node)
        self._scope.pop()

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self.visit(node.test)
        self._in_type_checking += 1
        for child in node.body:
            self.visit(child)
        self._in_type_checking -= 1
        for child in node.orelse:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = self._absolute(node)
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            self._add(submodule if submodule in self.known else base, node)

    def _absolute(self, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        package = self.module.split(".")
        if not self.is_package:
            package = package[:-1]
        package = package[: len(package) - (node.level - 1)]
        return ".".join([*package, *([node.module] if node.module else [])])

    def _add(self, target: str, node: ast.Import | ast.ImportFrom) -> None:
        if target.split(".")[0] not in self.tops:
            return
        statement = " ".join((ast.get_source_segment(self.source, node) or "").split())
        self.imports.append(
            Import(
                target=target,
                line=node.lineno,
                statement=statement,
                local=self._in_function > 0,
                type_checking=self._in_type_checking > 0,
                packages=tuple(p for p in _parents(target) if not _is_above(p, self.module)),
            )
        )


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _is_above(package: str, module: str) -> bool:
    return module == package or module.startswith(package + ".")


def within(name: str, prefix: str) -> bool:
    """`name` is the module `prefix` or lies in the package `prefix`."""
    return _is_above(prefix, name)


# --- cycles -----------------------------------------------------------------------------------


Graph = Mapping[str, Iterable[str]]


def import_graph(modules: Mapping[str, Module]) -> dict[str, dict[str, Import]]:
    """Module -> the modules it makes run (within `modules`) -> the import that does it."""
    return {
        name: {t: imp for t, imp in module.dependencies().items() if t in modules}
        for name, module in modules.items()
    }


def strongly_connected(graph: Graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    for start in sorted(graph):
        if start not in index:
            _tarjan(start, graph, index, low, stack, on_stack, found)
    return [sorted(c) for c in found if len(c) > 1]


def _tarjan(
    start: str,
    graph: Graph,
    index: dict[str, int],
    low: dict[str, int],
    stack: list[str],
    on_stack: set[str],
    found: list[list[str]],
) -> None:
    work: list[tuple[str, Iterator[str]]] = []

    def enter(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        work.append((node, iter(sorted(graph.get(node, ())))))

    enter(start)
    while work:
        node, edges = work[-1]
        nxt = next(edges, None)
        if nxt is not None:
            if nxt not in index:
                enter(nxt)
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
            continue
        work.pop()
        if work:
            low[work[-1][0]] = min(low[work[-1][0]], low[node])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            found.append(component)


def shortest_cycle(graph: Graph, start: str, members: Iterable[str]) -> list[str]:
    """A shortest path start -> ... -> start inside `members` (breadth first)."""
    allowed = set(members)
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in sorted(graph.get(node, ())):
            if nxt not in allowed:
                continue
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if nxt not in came_from:
                came_from[nxt] = node
                queue.append(nxt)
    return []
