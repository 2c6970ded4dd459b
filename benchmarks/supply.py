"""Supplying a raw version vs a plain Parquet copy of the same file, then the rebuild.

The supplied file is ``health_records`` from the demo generator (10 million rows by
default, ``SHUYU_BENCH_ROWS`` to change). Each round runs, in fresh processes and
alternating so machine noise hits both alike:

* the plain copy: the file read with pyarrow batch by batch and written again with a
  ``ParquetWriter`` (zstd), nothing else;
* the supply: :func:`shuyu_platform.data.supply.supply` into a fresh state root whose
  current version is the same file: columns, types, nulls and identifier formats of
  every row checked (ID-card checksums and birth dates, mobile numbers), the version
  written, fsynced and hashed, recorded and audited, and made current by the link swap.

Then, once, the rebuild that follows a supply (:func:`shuyu_platform.access.rebuilds.rebuild`):
one tenant's masked view of every visible field and the synthetic twin. Each process
reports its wall time and peak resident memory. The goal is a supply within 1.5x of
the plain copy.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from .memory import measure_in_fresh_process, peak_mib, reset_peak
from .rawdata import DATASET, raw_file, workspace

REPO = Path(__file__).resolve().parents[1]
ROWS = int(os.environ.get("SHUYU_BENCH_ROWS", "10000000"))
ROUNDS = int(os.environ.get("SHUYU_BENCH_ROUNDS", "3"))
GOAL = 1.5


def plain_copy(source: Path, folder: Path) -> Callable[[], dict[str, Any]]:
    """Read ``source`` batch by batch and write it again, as fast as pyarrow goes."""
    from shuyu_platform.data.supply import BATCH_ROWS

    def copy() -> dict[str, Any]:
        parquet = pq.ParquetFile(source)
        out = folder / "plain.parquet"
        with pq.ParquetWriter(out, parquet.schema_arrow, compression="zstd") as writer:
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
                writer.write_batch(batch, row_group_size=BATCH_ROWS)
        return {}

    return copy


def _home(source: Path, folder: Path) -> Any:
    """A fresh state root whose current raw version is ``source`` (adopted as version 1)."""
    from shuyu_platform.core import db
    from shuyu_platform.core.settings import Shuyu
    from shuyu_platform.data import supply

    settings = Shuyu(home=str(folder / "home"), policies_dir=str(REPO / "policies"))
    settings.ensure_zones()
    db.upgrade(settings.db_url)
    os.link(source, settings.zone("raw") / source.name)
    from shuyu_platform.data.policy import load_policies

    policy = load_policies(REPO / "policies")[DATASET]
    with db.session_scope(settings.db_url) as session:
        (settings.zone("raw") / DATASET).mkdir(mode=0o700, exist_ok=True)
        supply._adopt_plain_file(session, settings.zone("raw"), policy)
    supply._link(settings.zone("raw"), policy, 1)
    return settings, policy


def supply_version(source: Path, folder: Path) -> Callable[[], dict[str, Any]]:
    """Validate ``source`` against the policy, store it and make it current."""
    from shuyu_platform.data import supply

    settings, policy = _home(source, folder)

    def run() -> dict[str, Any]:
        done = supply.supply(
            settings.zone("raw"), settings.db_url, policy, source, actor="bench", keep=3
        )
        return {"version": done.version, "rows": done.rows}

    return run


def rebuild(source: Path, folder: Path) -> Callable[[], dict[str, Any]]:
    """One tenant's view of every visible field and the twin, after a supply."""
    from shuyu_platform.access import grants, rebuilds
    from shuyu_platform.core import db
    from shuyu_platform.data import supply
    from shuyu_platform.data.policy import load_policies

    settings, policy = _home(source, folder)
    supply.supply(settings.zone("raw"), settings.db_url, policy, source, actor="bench")
    policies = load_policies(REPO / "policies")
    with db.session_scope(settings.db_url) as session:
        grants.issue(session, policy, tenant="bench", fields=None, actor="bench")

    def run() -> dict[str, Any]:
        rebuild_id = rebuilds.start(settings, DATASET, 2)
        result = rebuilds.rebuild(settings, policies, DATASET, rebuild_id, actor="bench")
        return {"status": result["status"], "failures": result["failures"]}

    return run


MEASUREMENTS = {"plain": plain_copy, "supply": supply_version, "rebuild": rebuild}


def measure(kind: str, source: Path) -> None:
    """Run one measurement in this process and print its result as one JSON line."""
    with tempfile.TemporaryDirectory(prefix="shuyu-bench-supply-", dir=source.parent) as folder:
        work = MEASUREMENTS[kind](source, Path(folder))
        reset_peak()  # the setup (for the rebuild, a supply) is not the work
        started = time.perf_counter()
        details = work()
        seconds = time.perf_counter() - started
        peak = peak_mib()  # VmHWM: ru_maxrss would count the parent's peak too
    print(json.dumps({"seconds": seconds, "peak_mib": peak, **details}))


def run(kind: str, source: Path) -> dict[str, Any]:
    """Run one measurement in a fresh process, so its peak memory is its own."""
    return measure_in_fresh_process("supply", kind, str(source))


def main() -> None:
    """Measure copy and supply ``ROUNDS`` times each, the rebuild once; print the figures."""
    print(f"supply: validate + store + make current vs plain copy, {DATASET}, {ROWS:,} rows")
    with workspace("supply") as folder:
        source = raw_file(folder, ROWS)
        print(f"  file {source.stat().st_size / 2**20:,.0f} MiB, zstd; load {os.getloadavg()}")
        results: dict[str, list[dict[str, Any]]] = {"plain": [], "supply": []}
        for round_number in range(1, ROUNDS + 1):
            order = ("plain", "supply") if round_number % 2 else ("supply", "plain")
            for kind in order:
                results[kind].append(run(kind, source))
            plain, done = results["plain"][-1], results["supply"][-1]
            print(
                f"  round {round_number}: plain {plain['seconds']:.2f} s "
                f"({plain['peak_mib']:.0f} MiB), supply {done['seconds']:.2f} s "
                f"({done['peak_mib']:.0f} MiB)",
                flush=True,
            )
        rebuilt = run("rebuild", source)
    plain_median = statistics.median(r["seconds"] for r in results["plain"])
    supply_median = statistics.median(r["seconds"] for r in results["supply"])
    ratio = supply_median / plain_median
    print(
        f"  plain copy  median {plain_median:6.2f} s   peak RSS "
        f"{max(r['peak_mib'] for r in results['plain']):6.0f} MiB"
    )
    print(
        f"  supply      median {supply_median:6.2f} s   peak RSS "
        f"{max(r['peak_mib'] for r in results['supply']):6.0f} MiB"
    )
    print(
        f"  rebuild (1 view + twin) {rebuilt['seconds']:6.2f} s   peak RSS "
        f"{rebuilt['peak_mib']:6.0f} MiB   {rebuilt['status']}"
        + (f" {rebuilt['failures']}" if rebuilt["failures"] else "")
    )
    verdict = "within" if ratio <= GOAL else "OVER"
    print(f"  ratio {ratio:.2f}x ({verdict} the {GOAL:g}x goal); load {os.getloadavg()}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--measure":
        measure(sys.argv[2], Path(sys.argv[3]))
    else:
        main()
