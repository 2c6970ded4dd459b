"""Run the benchmarks named on the command line (default: all).

Options after the names go to the benchmarks that take them:
``python -m benchmarks load --seconds 10 --users 5``.
"""

from __future__ import annotations

import inspect
import sys

from . import dp, egress, gateway, jobs, load, metering, scale, spark, spawn, supply, views

BENCHMARKS = {
    "spawn": spawn.main,
    "views": views.main,
    "dp": dp.main,
    "egress": egress.main,
    "gateway": gateway.main,
    "load": load.main,
    "jobs": jobs.main,
    "supply": supply.main,
    "metering": metering.main,
    "scale": scale.main,
    "spark": spark.main,
}


def main() -> None:
    """Run each requested benchmark in turn."""
    args = sys.argv[1:]
    if args[:1] in (["-h"], ["--help"]):
        print(__doc__.strip())
        print(f"\nbenchmarks: {', '.join(BENCHMARKS)}")
        return
    split = next((i for i, a in enumerate(args) if a.startswith("-")), len(args))
    names, options = args[:split] or list(BENCHMARKS), args[split:]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        sys.exit(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}")
    rigid = [n for n in names if not inspect.signature(BENCHMARKS[n]).parameters]
    if options and rigid:
        sys.exit(f"benchmark(s) {rigid} take no options; given {options}")
    for name in names:
        if options:
            BENCHMARKS[name](options)
        else:
            BENCHMARKS[name]()


if __name__ == "__main__":
    main()
