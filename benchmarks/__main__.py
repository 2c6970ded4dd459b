"""Run the benchmarks named on the command line (default: all)."""

from __future__ import annotations

import sys

from . import dp, egress, gateway, spawn, views

BENCHMARKS = {
    "spawn": spawn.main,
    "views": views.main,
    "dp": dp.main,
    "egress": egress.main,
    "gateway": gateway.main,
}


def main() -> None:
    """Run each requested benchmark in turn."""
    names = sys.argv[1:] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        sys.exit(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}")
    for name in names:
        BENCHMARKS[name]()


if __name__ == "__main__":
    main()
