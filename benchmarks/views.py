"""Masked view build vs a plain Parquet copy of the same raw file.

The raw file is ``health_records`` from the demo generator (10 million rows by default;
``--rows`` or ``SHUYU_BENCH_ROWS`` to change, ``--rounds`` or ``SHUYU_BENCH_ROUNDS`` for the
rounds). Each round runs, in fresh processes and alternating so machine noise hits both
alike:

* the plain copy: every row group read with pyarrow and written again with a
  ``ParquetWriter`` and the same compression (zstd), nothing else;
* the view build: :func:`shuyu_platform.data.views.build_view` with every visible field and
  the policy's attacker model, which hashes the raw file, counts quasi-identifier classes
  and (class, diagnosis) pairs at every generalisation level, chooses the level, measures
  the re-identification risk (prosecutor risk, uniques, lowest l, group-mean errors),
  masks, suppresses, shuffles in a keyed order, writes, fsyncs and hashes the view.

Each process reports its own wall time, CPU time (user + system, all its threads, and
the build's helper process that masks keyed columns, see
:mod:`shuyu_platform.data.keyed_ahead`) and peak resident memory (the build's peak plus
its helper's: the sum of the two peaks, an upper bound of what they held at once), so
the two kinds are measured apart. The goal is a view build
within 2x of the plain copy. On a shared machine the wall-time ratio moves with the
load of other processes (printed with each round); the CPU-time ratio much less.

The raw file is generated into a temporary folder and removed afterwards, or kept in
``SHUYU_BENCH_DIR`` and reused by later runs with the same row count.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from .memory import load_average, measure_in_fresh_process, peak_mib, rotations
from .rawdata import DATASET, raw_file, workspace

REPO = Path(__file__).resolve().parents[1]
ROWS = int(os.environ.get("SHUYU_BENCH_ROWS", "10000000"))
ROUNDS = int(os.environ.get("SHUYU_BENCH_ROUNDS", "3"))
COMPRESSION = "zstd"
GOAL = 2.0


# ======================================================================= measurements


def plain_copy(raw: Path, out: Path) -> Callable[[], dict[str, Any]]:
    """Read every row group of ``raw`` and write it to ``out``, as fast as pyarrow goes."""

    def copy() -> dict[str, Any]:
        source = pq.ParquetFile(raw)
        with pq.ParquetWriter(out, source.schema_arrow, compression=COMPRESSION) as writer:
            for index in range(source.num_row_groups):
                writer.write_table(source.read_row_group(index))
        return {}

    return copy


def view_build(raw: Path, out: Path) -> Callable[[], dict[str, Any]]:
    """Build the masked view of every visible field of ``raw`` at ``out``.

    Imports and the policy are loaded before the clock starts: a running platform has
    them already. That includes pandas, which the platform service imports (the egress
    checks) and which pyarrow imports on its first conversion of a Python value (a
    ``fill_null(0)``): half a second of CPU that would otherwise fall inside the first
    build of a fresh process.
    """
    import pandas  # noqa: F401  (see above)

    from shuyu_platform.data.masking import tenant_key
    from shuyu_platform.data.policy import load_policy
    from shuyu_platform.data.views import build_view

    policy = load_policy(REPO / "policies" / f"{DATASET}.yaml")
    key = tenant_key(b"benchmark master secret, not a real one", "bench")

    def build() -> dict[str, Any]:
        report = build_view(
            policy,
            raw,
            out,
            key=key,
            fields=list(policy.visible_fields()),
            reference_date=date.today(),
        )
        risk = report.risk
        assert risk is not None
        return {
            "rows_out": report.rows_out,
            "rows_suppressed": report.rows_suppressed,
            "classes_suppressed": report.classes_suppressed,
            "level": risk.level,
            "levels": 1 + max(len(f.hierarchy) for f in policy.fields.values()),
            "risk": risk.summary(),
        }

    return build


MEASUREMENTS = {"plain": plain_copy, "view": view_build}


def measure(kind: str, raw: Path, out: Path) -> None:
    """Run one measurement in this process and print its result as one JSON line."""
    work = MEASUREMENTS[kind](raw, out)
    cpu = _cpu_seconds()
    started = time.perf_counter()
    details = work()
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu
    helper_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu": cpu,
                "peak_mib": peak_mib() + helper_mib,
                "helper_mib": helper_mib,
                **details,
            }
        )
    )


def _cpu_seconds() -> float:
    """User and system CPU time of this process so far, all threads, and of the child
    processes it has waited for (the build's keyed-column helper)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def run(kind: str, raw: Path, out: Path) -> dict[str, Any]:
    """Run one measurement in a fresh process, so its peak memory is its own."""
    result = measure_in_fresh_process("views", kind, str(raw), str(out))
    out.unlink(missing_ok=True)
    return result


# ================================================================================ main


def main(argv: Sequence[str] = ()) -> None:
    """Measure both, ``--rounds`` times each, and print medians, the ratios and peak memory."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks views")
    parser.add_argument("--rows", type=int, default=ROWS, help="rows of the raw file")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="measurements of each")
    args = parser.parse_args(list(argv))
    print(
        f"views: masked view build vs plain copy, {DATASET}, {args.rows:,} rows, "
        f"{args.rounds} rounds"
    )
    with workspace("views") as folder:
        raw = raw_file(folder, args.rows)
        print(f"  raw file {raw.stat().st_size / 2**20:,.0f} MiB, {COMPRESSION}; {load_average()}")
        results: dict[str, list[dict[str, Any]]] = {"plain": [], "view": []}
        for round_number, order in rotations(list(results), args.rounds):
            for kind in order:
                results[kind].append(run(kind, raw, folder / f"bench-{kind}.parquet"))
            plain, view = results["plain"][-1], results["view"][-1]
            print(
                f"  round {round_number}: plain {plain['seconds']:.2f} s "
                f"(CPU {plain['cpu']:.2f} s, {plain['peak_mib']:.0f} MiB), "
                f"view {view['seconds']:.2f} s "
                f"(CPU {view['cpu']:.2f} s, {view['peak_mib']:.0f} MiB); {load_average()}",
                flush=True,
            )
    medians = {
        kind: {
            measure: statistics.median(r[measure] for r in rounds) for measure in ("seconds", "cpu")
        }
        for kind, rounds in results.items()
    }
    peaks = {kind: max(r["peak_mib"] for r in rounds) for kind, rounds in results.items()}
    for kind, label in (("plain", "plain copy "), ("view", "masked view")):
        print(
            f"  {label}  median {medians[kind]['seconds']:6.2f} s   "
            f"CPU {medians[kind]['cpu']:6.2f} s   peak RSS {peaks[kind]:6.0f} MiB"
        )
    last = results["view"][-1]
    print(
        f"  view rows {last['rows_out']:,} "
        f"({last['rows_suppressed']:,} suppressed in {last['classes_suppressed']:,} classes)"
    )
    print(f"  level {last['level']} of {last['levels']} counted; risk: {last['risk']}")
    ratio = medians["view"]["seconds"] / medians["plain"]["seconds"]
    cpu_ratio = medians["view"]["cpu"] / medians["plain"]["cpu"]
    verdict = "within" if ratio <= GOAL else "OVER"
    print(
        f"  ratio {ratio:.2f}x wall ({verdict} the {GOAL:g}x goal), {cpu_ratio:.2f}x CPU; "
        f"{load_average()}"
    )


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--measure":
        measure(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))
    else:
        main(sys.argv[1:])
