"""A small progress bar: redrawn in place with \\r on a terminal, plain periodic lines otherwise."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

BAR_WIDTH = 24
TTY_EVERY_S = 0.25
PLAIN_EVERY_S = 10.0


def format_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "--:--"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


@dataclass
class Tally:
    """What a batch of `total` items has come to: done, failed, cost, scores and pace."""

    total: int = 0
    done: int = 0
    failed: int = 0
    cost_usd: float = 0.0
    scores: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @property
    def finished(self) -> int:
        return self.done + self.failed

    @property
    def mean_score(self) -> float | None:
        return sum(self.scores) / len(self.scores) if self.scores else None

    def count_done(self, cost_usd: float = 0.0, score: float | None = None) -> None:
        self.done += 1
        self.cost_usd += cost_usd
        if score is not None:
            self.scores.append(score)

    def rate_per_min(self) -> float:
        elapsed = time.monotonic() - self.started
        return 60.0 * self.finished / elapsed if elapsed > 0 else 0.0

    def eta_s(self) -> float | None:
        if self.finished == 0:
            return None
        elapsed = time.monotonic() - self.started
        return elapsed / self.finished * (self.total - self.finished)


class ProgressBar:
    """A `Tally` drawn on `stream` (default stderr), in place on a terminal, at most every
    `every_s` seconds (default 0.25 s on a terminal, 10 s otherwise)."""

    def __init__(
        self,
        total: int,
        *,
        stream: TextIO | None = None,
        tty: bool | None = None,
        every_s: float | None = None,
        label: str = "distill",
    ):
        self.tally = Tally(total)
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.every_s = (
            every_s if every_s is not None else (TTY_EVERY_S if self.tty else PLAIN_EVERY_S)
        )
        self.label = label
        self._last_draw = float("-inf")
        self._width = 0

    def succeeded(self, cost_usd: float = 0.0, score: float | None = None) -> None:
        self.tally.count_done(cost_usd, score)
        self.update()

    def failure(self) -> None:
        self.tally.failed += 1
        self.update()

    def render(self) -> str:
        tally = self.tally
        fraction = tally.finished / tally.total if tally.total else 1.0
        filled = round(BAR_WIDTH * fraction)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        mean = tally.mean_score
        score = f"{mean:.3f}" if mean is not None else "-"
        return (
            f"{self.label} [{bar}] {tally.finished}/{tally.total} {100 * fraction:3.0f}% | "
            f"done {tally.done} failed {tally.failed} | {tally.rate_per_min():.1f}/min | "
            f"ETA {format_duration(tally.eta_s())} | ${tally.cost_usd:.4f} | "
            f"mean score {score}"
        )

    def update(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_draw < self.every_s:
            return
        self._last_draw = now
        line = self.render()
        if self.tty:
            padding = " " * max(0, self._width - len(line))
            self.stream.write("\r" + line + padding)
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """A line of its own (a warning) without breaking the bar."""
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.stream.write(text + "\n")
        self.stream.flush()
        if self.tty:
            self._last_draw = float("-inf")
            self.update()

    def close(self) -> None:
        self.update(force=True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
