"""Benchmarks of cord-proxy: fan-out efficiency, proxy overhead, load, and real teachers.

Run ``python -m bench --help``. The simulated teacher (`bench.simteacher`) is a fixture.
"""
