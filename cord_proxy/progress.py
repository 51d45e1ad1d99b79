"""A small progress bar: redrawn in place with \\r on a terminal, plain periodic lines otherwise."""

from __future__ import annotations

import sys
import time
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


class ProgressBar:
    """Done, failed, rate, ETA, running cost and mean score of a batch of `total` items."""

    def __init__(
        self,
        total: int,
        *,
        stream: TextIO | None = None,
        tty: bool | None = None,
        every_s: float | None = None,
        label: str = "distill",
    ):
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.every_s = (
            every_s if every_s is not None else (TTY_EVERY_S if self.tty else PLAIN_EVERY_S)
        )
        self.label = label
        self.done = 0
        self.failed = 0
        self.cost_usd = 0.0
        self._scores: list[float] = []
        self.started = time.monotonic()
        self._last_draw = float("-inf")
        self._width = 0

    @property
    def mean_score(self) -> float | None:
        return sum(self._scores) / len(self._scores) if self._scores else None

    def rate_per_min(self) -> float:
        elapsed = time.monotonic() - self.started
        return 60.0 * (self.done + self.failed) / elapsed if elapsed > 0 else 0.0

    def eta_s(self) -> float | None:
        finished = self.done + self.failed
        if finished == 0:
            return None
        elapsed = time.monotonic() - self.started
        return elapsed / finished * (self.total - finished)

    def succeeded(self, cost_usd: float = 0.0, score: float | None = None) -> None:
        self.done += 1
        self.cost_usd += cost_usd
        if score is not None:
            self._scores.append(score)
        self.update()

    def failure(self) -> None:
        self.failed += 1
        self.update()

    def render(self) -> str:
        finished = self.done + self.failed
        fraction = finished / self.total if self.total else 1.0
        filled = round(BAR_WIDTH * fraction)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        mean = self.mean_score
        score = f"{mean:.3f}" if mean is not None else "-"
        return (
            f"{self.label} [{bar}] {finished}/{self.total} {100 * fraction:3.0f}% | "
            f"done {self.done} failed {self.failed} | {self.rate_per_min():.1f}/min | "
            f"ETA {format_duration(self.eta_s())} | ${self.cost_usd:.4f} | "
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
