"""The fan-out arm reports each figure as the median of its runs (bench/fanout.py)."""

from __future__ import annotations

from bench.fanout import median_run


def test_each_number_is_its_median_and_the_cpu_range_is_kept() -> None:
    runs = [
        {"wall_s": 3.0, "teacher_calls": 280, "proxy_cpu_ms_per_call": 0.9, "score": -1.0},
        {"wall_s": 1.0, "teacher_calls": 290, "proxy_cpu_ms_per_call": 0.5, "score": -3.0},
        {"wall_s": 2.0, "teacher_calls": 283, "proxy_cpu_ms_per_call": 0.7, "score": -2.0},
    ]

    merged = median_run(runs)

    assert merged["wall_s"] == 2.0
    assert merged["teacher_calls"] == 283
    assert merged["proxy_cpu_ms_per_call"] == 0.7
    assert merged["score"] == -2.0
    assert merged["proxy_cpu_ms_per_call_range"] == [0.5, 0.9]


def test_what_is_not_a_number_is_the_first_run_s() -> None:
    runs = [
        {"proxy_cpu_ms_per_call": 0.6, "teachers": ["fast"], "flag": True},
        {"proxy_cpu_ms_per_call": 0.4, "teachers": ["slow"], "flag": False},
    ]

    merged = median_run(runs)

    assert merged["teachers"] == ["fast"]
    assert merged["flag"] is True
    assert merged["proxy_cpu_ms_per_call"] == 0.5
