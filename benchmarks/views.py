"""Masked view build vs a plain Parquet copy of the same raw file.

The raw file is ``health_records`` from the demo generator (10 million rows by default,
``SHUYU_BENCH_ROWS`` to change). Each round runs, in fresh processes and alternating so
machine noise hits both alike:

* the plain copy: every row group read with pyarrow and written again with a
  ``ParquetWriter`` and the same compression (zstd), nothing else;
* the view build: :func:`shuyu_platform.data.views.build_view` with every visible field and
  the policy's attacker model, which hashes the raw file, counts quasi-identifier classes
  and (class, diagnosis) pairs at every generalisation level, chooses the level, measures
  the re-identification risk (prosecutor risk, uniques, lowest l, group-mean errors),
  masks, suppresses, shuffles in a keyed order, writes, fsyncs and hashes the view.

Each process reports its own wall time and peak resident memory, so the two peaks are
measured apart. The goal is a view build within 2x of the plain copy.

The raw file is generated into a temporary folder and removed afterwards, or kept in
``SHUYU_BENCH_DIR`` and reused by later runs with the same row count.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from .memory import measure_in_fresh_process, peak_mib
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
    them already.
    """
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
    started = time.perf_counter()
    details = work()
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "peak_mib": peak_mib(), **details}))


def run(kind: str, raw: Path, out: Path) -> dict[str, Any]:
    """Run one measurement in a fresh process, so its peak memory is its own."""
    result = measure_in_fresh_process("views", kind, str(raw), str(out))
    out.unlink(missing_ok=True)
    return result


# ================================================================================ main


def main() -> None:
    """Measure both, ``ROUNDS`` times each, and print medians, the ratio and peak memory."""
    print(f"views: masked view build vs plain copy, {DATASET}, {ROWS:,} rows, {ROUNDS} rounds")
    with workspace("views") as folder:
        raw = raw_file(folder, ROWS)
        print(f"  raw file {raw.stat().st_size / 2**20:,.0f} MiB, {COMPRESSION}")
        results: dict[str, list[dict[str, Any]]] = {"plain": [], "view": []}
        for round_number in range(1, ROUNDS + 1):
            order = ("plain", "view") if round_number % 2 else ("view", "plain")
            for kind in order:
                results[kind].append(run(kind, raw, folder / f"bench-{kind}.parquet"))
            plain, view = results["plain"][-1], results["view"][-1]
            print(
                f"  round {round_number}: plain {plain['seconds']:.2f} s "
                f"({plain['peak_mib']:.0f} MiB), view {view['seconds']:.2f} s "
                f"({view['peak_mib']:.0f} MiB)",
                flush=True,
            )
    plain_median = statistics.median(r["seconds"] for r in results["plain"])
    view_median = statistics.median(r["seconds"] for r in results["view"])
    plain_peak = max(r["peak_mib"] for r in results["plain"])
    view_peak = max(r["peak_mib"] for r in results["view"])
    ratio = view_median / plain_median
    last = results["view"][-1]
    print(f"  plain copy   median {plain_median:6.2f} s   peak RSS {plain_peak:6.0f} MiB")
    print(f"  masked view  median {view_median:6.2f} s   peak RSS {view_peak:6.0f} MiB")
    print(
        f"  view rows {last['rows_out']:,} "
        f"({last['rows_suppressed']:,} suppressed in {last['classes_suppressed']:,} classes)"
    )
    print(f"  level {last['level']} of {last['levels']} counted; risk: {last['risk']}")
    verdict = "within" if ratio <= GOAL else "OVER"
    print(f"  ratio {ratio:.2f}x ({verdict} the {GOAL:g}x goal)")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--measure":
        measure(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))
    else:
        main()
