"""What a distill run reads, writes and how hard it tries."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class DistillSettings:
    input: Path
    output: Path
    failures: Path
    concurrency: int = 4
    retries: int = 2
    retry_backoff_s: float = 1.0
    cord: dict[str, Any] = field(default_factory=dict)


def default_failures_path(output: Path) -> Path:
    name = output.name.removesuffix(".jsonl")
    return output.with_name(f"{name}.failures.jsonl")
