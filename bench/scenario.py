"""The simulated teachers and the problems every benchmark arm shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cord_proxy.config import TeacherConfig

# Three teachers of different speeds: seconds per generated token.
SPEEDS = (("fast", 0.006), ("medium", 0.012), ("slow", 0.024))


@dataclass(frozen=True)
class SimProfile:
    """How the simulated teachers behave; `time_scale` multiplies every latency."""

    teachers: int = 3
    steps: int = 10
    time_scale: float = 1.0
    fixed_s: float = 0.03
    score_fixed_s: float = 0.03
    prefill_per_token_s: float = 0.00005
    jitter_sigma: float = 0.25
    step_tokens: tuple[int, int] = (16, 48)
    seed: int = 7

    def specs(self) -> dict[str, dict[str, Any]]:
        """One simulator config per teacher, named ``fast``, ``medium``, ``slow``, ``fast2``..."""
        specs: dict[str, dict[str, Any]] = {}
        for index in range(self.teachers):
            label, per_token = SPEEDS[index % len(SPEEDS)]
            name = label if index < len(SPEEDS) else f"{label}{index // len(SPEEDS) + 1}"
            specs[name] = {
                "fixed_s": round(self.fixed_s * self.time_scale, 9),
                "per_token_s": round(per_token * self.time_scale, 9),
                "prefill_per_token_s": round(self.prefill_per_token_s * self.time_scale, 9),
                "score_fixed_s": round(self.score_fixed_s * self.time_scale, 9),
                "jitter_sigma": self.jitter_sigma,
                "steps": self.steps,
                "step_tokens": list(self.step_tokens),
            }
        return specs

    def describe(self) -> dict[str, Any]:
        return {"seed": self.seed, "models": self.specs()}


def teacher_config(
    name: str, base_url: str, model: str, *, max_concurrency: int = 1024, temperature: float = 0.6
) -> TeacherConfig:
    return TeacherConfig(
        name=name,
        base_url=base_url,
        model=model,
        temperature=temperature,
        max_concurrency=max_concurrency,
        timeout=600.0,
    )


def question(index: int, tag: str | None = "q") -> tuple[str, str]:
    """A simple arithmetic problem and its answer; a `tag` makes every index distinct."""
    a, b = 17 + 13 * index, 29 + 7 * index
    head = f"[{tag}{index}] " if tag is not None else ""
    return f"{head}What is {a} + {b}? Answer with the number.", str(a + b)
