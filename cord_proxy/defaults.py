"""The embedded default: the local CPU teacher as three homogeneous teachers, one ensemble."""

from __future__ import annotations

from cord_proxy.config import CordConfig, EnsembleConfig, ServerConfig, TeacherConfig
from cord_proxy.decoding.options import DecodeOptions

DEFAULT_ENSEMBLE = "cord"
DEFAULT_TEMPERATURES = (0.5, 0.6, 0.7)
LOCAL_MODEL = "gemma3-270m"

CPU_DEFAULTS = DecodeOptions(
    beam_width=2,
    thinking_budget=256,
    answer_budget=48,
    max_step_tokens=64,
    max_steps=4,
)
"""Small budgets: a 270M model on two CPU cores writes about 24 tokens a second."""


def default_config(teacher_url: str, host: str = "127.0.0.1", port: int = 8400) -> CordConfig:
    teachers = tuple(
        TeacherConfig(
            name=f"gemma-t{temperature}",
            base_url=teacher_url,
            model=LOCAL_MODEL,
            temperature=temperature,
            timeout=300.0,
        )
        for temperature in DEFAULT_TEMPERATURES
    )
    ensemble = EnsembleConfig(
        name=DEFAULT_ENSEMBLE, teachers=tuple(t.name for t in teachers), defaults=CPU_DEFAULTS
    )
    return CordConfig(
        server=ServerConfig(host=host, port=port), teachers=teachers, ensembles=(ensemble,)
    )
