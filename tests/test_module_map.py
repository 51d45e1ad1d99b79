"""The module map of docs/architecture.md is the code's (scripts/module_map.py renders it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "module_map.py"


def map_tool(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(SCRIPT), *args]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def test_the_module_map_names_every_module_with_its_docstring() -> None:
    checked = map_tool("--check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    for module in (REPO / "cord_proxy").rglob("*.py"):
        package = module.parent.relative_to(REPO).as_posix()
        shown = f"`{package}/`" if module.name == "__init__.py" else f"`{module.name}`"
        assert shown in text, module
    assert "(no docstring)" not in text


def test_a_stale_map_is_caught_and_rewritten(tmp_path: Path) -> None:
    page = tmp_path / "architecture.md"
    current = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    line = next(ln for ln in current.splitlines() if "`round.py`" in ln)
    page.write_text(current.replace(line + "\n", ""), encoding="utf-8")
    stale = map_tool("--check", "--doc", str(page))
    assert stale.returncode == 1 and "stale" in stale.stdout
    assert map_tool("--write", "--doc", str(page)).returncode == 0
    assert page.read_text(encoding="utf-8") == current


MODULE_LINE_LIMIT = 400  # one concept a module: a longer one holds two (issue 21)


def test_no_module_is_over_the_line_limit() -> None:
    lengths = {
        module.relative_to(REPO).as_posix(): len(module.read_text(encoding="utf-8").splitlines())
        for module in (REPO / "cord_proxy").rglob("*.py")
    }
    longer = {name: n for name, n in lengths.items() if n > MODULE_LINE_LIMIT}
    assert longer == {}, f"modules over {MODULE_LINE_LIMIT} lines: {longer}"
