"""Benchmarks: ratios measured side by side in one run, medians over repeats.

Run all of them with ``make bench`` (or ``.venv/bin/python -m benchmarks``), or one
with ``.venv/bin/python -m benchmarks spawn``.
"""
