"""What a distill run did: problems read, resumed, done and failed, cost and scores."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cord_proxy.distill.settings import DistillSettings
from cord_proxy.progress import Tally, format_duration

BAD_LINES_SHOWN = 20


@dataclass
class Summary(Tally):
    """The run's `Tally`, with what it read and resumed, and how it ended."""

    problems: int = 0
    bad_lines: list[tuple[int, str]] = field(default_factory=list)
    already_done: int = 0
    wall_s: float = 0.0
    interrupted: bool = False
    output_records: int = 0

    @property
    def problems_per_min(self) -> float:
        return 60.0 * self.done / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def exit_status(self) -> int:
        """0: all done; 1: some failed; 130: interrupted."""
        return 130 if self.interrupted else (1 if self.failed else 0)

    def add(self, record: dict[str, Any]) -> tuple[float, float | None]:
        """Count a finished record; returns its cost and score (None when unscored)."""
        cost = float(record.get("cost_usd") or 0.0)
        score = record.get("score")
        score = float(score) if isinstance(score, int | float) else None
        self.count_done(cost, score)
        return cost, score

    def render(self, settings: DistillSettings) -> str:
        mean = f"{self.mean_score:.3f}" if self.mean_score is not None else "-"
        state = "interrupted (rerun the same command to resume)" if self.interrupted else "done"
        return "\n".join(
            [
                f"distill {state}",
                f"  input:      {self.problems} problems in {settings.input}{self._bad()}",
                f"  resumed:    {self.already_done} already in the output",
                f"  this run:   {self.done} done, {self.failed} failed in "
                f"{format_duration(self.wall_s)} ({self.problems_per_min:.1f} problems/min)",
                f"  cost:       ${self.cost_usd:.4f} this run",
                f"  mean score: {mean} this run",
                f"  output:     {settings.output} ({self.output_records} records)",
                f"  failures:   {settings.failures} ({self.failed} this run)",
            ]
        )

    def _bad(self) -> str:
        if not self.bad_lines:
            return ""
        numbers = ", ".join(str(n) for n, _ in self.bad_lines[:BAD_LINES_SHOWN])
        more = " ..." if len(self.bad_lines) > BAD_LINES_SHOWN else ""
        return f" ({len(self.bad_lines)} bad lines skipped: {numbers}{more})"
