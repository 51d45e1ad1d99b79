"""Walking the README (issue 26): its shell and Python fences, their marks, and how a runnable
one is pointed at the suite's proxy and teacher, with nothing changed but host and port.

A fence's mark is an HTML comment on the line right before it, which GitHub does not render:

    <!-- runnable -->
    <!-- not-runnable: REASON -->
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: the fence languages that must carry a mark
LANGUAGES = ("bash", "sh", "shell", "console", "python", "py")
SHELL = ("bash", "sh", "shell", "console")

RUNNABLE = "<!-- runnable -->"
MARK = re.compile(r"^<!-- (?:(?P<runnable>runnable)|not-runnable: (?P<reason>\S.*?)) -->$")
ANY_MARK = re.compile(r"^\s*<!-- *(?:not-)?runnable\b")
OPEN = re.compile(r"^(?P<indent> *)```(?P<lang>[\w+-]*)\s*$")

#: the README's addresses, by port: what each is in the suite's walk
PROXY_PORT, TEACHER_PORT = 8400, 8401
ADDRESS = re.compile(r"\b(?:127\.0\.0\.1|localhost):(?P<port>84\d\d)\b")
#: `teachers check` without --config checks the local teacher on its default port, 8401; the
#: walk names that port (`--teacher-port`), the one part of the command that is an address
TEACHERS_CHECK = re.compile(
    r"(cord-proxy|-m cord_proxy) teachers check\b(?![^\n]*--(?:config|teacher-port))"
)


@dataclass(frozen=True)
class Fence:
    line: int  # 1-based line of the opening ```
    lang: str
    indent: str
    body: str  # dedented by the fence's indent
    mark: str | None  # the line before the fence, stripped

    @property
    def runnable(self) -> bool:
        return self.mark == RUNNABLE

    @property
    def reason(self) -> str | None:
        match = MARK.match(self.mark or "")
        return match.group("reason") if match else None

    @property
    def marked(self) -> bool:
        return self.mark is not None and MARK.match(self.mark) is not None

    @property
    def label(self) -> str:
        return f"README.md:{self.line} ({self.lang})"


def fences(text: str) -> list[Fence]:
    """Every fenced block of the text, in order, with the line before it if it is a mark."""
    lines = text.splitlines()
    found: list[Fence] = []
    index = 0
    while index < len(lines):
        opened = OPEN.match(lines[index])
        if not opened:
            index += 1
            continue
        indent, lang = opened.group("indent"), opened.group("lang")
        close = re.compile(rf"^{indent}```\s*$")
        end = index + 1
        while end < len(lines) and not close.match(lines[end]):
            end += 1
        body = "\n".join(line.removeprefix(indent) for line in lines[index + 1 : end]) + "\n"
        before = lines[index - 1].strip() if index else ""
        mark = before if ANY_MARK.match(before) else None
        found.append(Fence(index + 1, lang, indent, body, mark))
        index = end + 1
    return found


def stray_marks(text: str) -> list[int]:
    """Lines holding a mark that is not right before a fence (a mark that marks nothing)."""
    lines = text.splitlines()
    return [
        number
        for number, line in enumerate(lines, 1)
        if ANY_MARK.match(line) and (number >= len(lines) or not OPEN.match(lines[number]))
    ]


def checked(text: str) -> list[Fence]:
    """The fences that must carry a mark: shell commands and Python snippets."""
    return [fence for fence in fences(text) if fence.lang in LANGUAGES]


@dataclass(frozen=True)
class Addresses:
    """Where the walk's proxy and teacher listen (the README says 127.0.0.1:8400 and :8401)."""

    proxy: str  # host:port
    teacher: str  # host:port

    def substitute(self, text: str) -> str:
        """The text with the README's proxy and teacher addresses replaced by the walk's.

        Any other port of the README's (8402 `view`, 8403 the dataset example) is left as it
        is: nothing listens there in the walk, so a runnable snippet that names one fails."""
        served = {PROXY_PORT: self.proxy, TEACHER_PORT: self.teacher}

        def replace(match: re.Match[str]) -> str:
            return served.get(int(match.group("port")), match.group(0))

        return ADDRESS.sub(replace, text)

    def command(self, text: str) -> str:
        """A snippet as the walk runs it: its addresses, and the teacher's port made explicit
        where a command uses the default one."""
        port = self.teacher.rsplit(":", 1)[1]
        if TEACHERS_CHECK.search(text) and not self.teacher.startswith("127.0.0.1:"):
            raise ValueError(f"`teachers check` checks 127.0.0.1 only, not {self.teacher}")
        return TEACHERS_CHECK.sub(rf"\g<0> --teacher-port {port}", self.substitute(text))


def walk_root(repo: Path, root: Path, addresses: Addresses) -> Path:
    """A stand-in for the repository's root to run snippets from: every tracked top-level
    entry and `.venv` linked, except `clients/`, copied with the addresses substituted (a
    client's default URL is the README's proxy). Files the snippets write land here, not in
    the repository."""
    root.mkdir(parents=True, exist_ok=True)
    tracked = {path.split("/", 1)[0] for path in _tracked(repo)} | {".venv"}
    for name in sorted(tracked):
        source = repo / name
        if name == "clients":
            shutil.copytree(source, root / name)
            for path in (root / name).rglob("*"):
                if path.is_file() and path.suffix in (".py", ".sh"):
                    text = path.read_text(encoding="utf-8")
                    path.write_text(addresses.substitute(text), encoding="utf-8")
        elif source.exists():
            (root / name).symlink_to(source)
    return root


def _tracked(repo: Path) -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=repo, capture_output=True, text=True, check=True
    )
    return [path for path in listed.stdout.split("\0") if path]
