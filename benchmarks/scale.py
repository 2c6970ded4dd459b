"""Out of core: the DP engine and the view build on a big file, against plain streaming.

The raw file is ``health_records`` from the demo generator, 100 million rows by default
(``--rows`` for a quick run; ``SHUYU_BENCH_DIR`` keeps the file for later runs, since
100M rows take a long while to generate and about 5.5 GB). Each round runs, in fresh
processes and in a rotating order so machine noise hits all alike:

* ``dp``: the DP engine answering the ``dp`` benchmark's query (group by district:
  count, sum and mean of the settlement amount, ε 0.25), as the service does, with the
  default memory limit (``Shuyu.data_memory_limit``, 2 GiB). Its privacy-unit check
  was done once before the rounds (``check`` below), so its first query is what a
  service pays for a file it has not read since it started (both it and Polars answer
  the query on a small file first, so library loading is not counted);
* ``polars``: the same aggregates with plain Polars' streaming engine, not private;
* ``view``: the masked view of every visible field (:func:`build_view`);
* ``copy``: a plain pyarrow streaming copy of the file (row group by row group).

``check`` is the one-time cost of a new file version: the privacy-unit check with no
record, timed once before the rounds. Every process reports its wall times and peak
resident memory (``VmHWM``). Goals: DP steady ≤ 1.5x Polars streaming, DP first query
≤ 2x Polars' first, DP peak ≤ 2 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import dp as dp_bench
from . import views as views_bench
from .memory import (
    MIB,
    REPO,
    load_average,
    measure_in_fresh_process,
    peak_mib,
    reset_peak,
    rotations,
)
from .rawdata import DATASET, raw_file, workspace

ROWS = int(os.environ.get("SHUYU_BENCH_ROWS", "100000000"))
ROUNDS = int(os.environ.get("SHUYU_BENCH_ROUNDS", "3"))
STEADY_CALLS = 2
GOALS = {"steady": 1.5, "first": 2.0, "peak_mib": 2048.0}
LABELS = {
    "dp": "DP engine",
    "polars": "Polars streaming",
    "view": "masked view build",
    "copy": "pyarrow streaming copy",
    "check": "privacy-unit check (once per file version)",
}


def unit_check(raw: Path, _query: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """The privacy-unit check of a file version not yet seen (its record removed)."""
    from shuyu_platform.data.policy import load_policy
    from shuyu_platform.dp.unit_check import _worst, check_file, record_path

    privacy = load_policy(REPO / "policies" / f"{DATASET}.yaml").privacy

    def check() -> dict[str, Any]:
        record_path(raw).unlink(missing_ok=True)
        _worst.cache_clear()
        check_file(raw, privacy.privacy_unit, privacy.max_contributions)
        return json.loads(record_path(raw).read_text())

    return check


def _warm_file(raw: Path) -> Path:
    """A small file of the same dataset beside the big one, for warming up."""
    from shuyu_platform.data import demodata

    folder = raw.parent / "warm"
    path = folder / raw.name
    if not path.exists():
        demodata.generate(folder, rows=1_000, datasets=DATASET)
    return path


def _out(raw: Path) -> Path:
    return raw.with_name(f"scale-out-{os.getpid()}.parquet")


MEASUREMENTS: dict[str, Callable[[Path], Callable[[], dict[str, Any]]]] = {
    "dp": lambda raw: dp_bench.dp_engine(raw, dp_bench.the_query()),
    "polars": lambda raw: dp_bench.plain_polars(raw, dp_bench.the_query(), streaming=True),
    "view": lambda raw: views_bench.view_build(raw, _out(raw)),
    "copy": lambda raw: views_bench.plain_copy(raw, _out(raw)),
    "check": lambda raw: unit_check(raw, {}),
}
CALLS = {"dp": 1 + STEADY_CALLS, "polars": 1 + STEADY_CALLS}


def measure(kind: str, raw: Path) -> None:
    """Run one measurement in this process and print its result as one JSON line.

    The DP engine and Polars first answer the same query on a small file (as a running
    service has answered others), so ``first`` is the first query on *this* file, not
    the loading of their libraries.
    """
    work = MEASUREMENTS[kind](raw)
    if kind in CALLS:
        MEASUREMENTS[kind](_warm_file(raw))()
    reset_peak()  # imports and setup are not the work
    seconds: list[float] = []
    details: dict[str, Any] = {}
    try:
        for _ in range(CALLS.get(kind, 1)):
            started = time.perf_counter()
            details = work()
            seconds.append(time.perf_counter() - started)
    finally:
        _out(raw).unlink(missing_ok=True)
    steady = statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]
    keep = {k: v for k, v in details.items() if isinstance(v, int | float | str)}
    print(json.dumps({"first": seconds[0], "seconds": steady, "peak_mib": peak_mib(), **keep}))


def run(kind: str, raw: Path) -> dict[str, Any]:
    """One measurement in a fresh process, so its peak memory is its own."""
    result = measure_in_fresh_process("scale", kind, str(raw))
    result["load"] = os.getloadavg()[0]
    return result


def arguments(argv: Sequence[str]) -> argparse.Namespace:
    """Command-line options (defaults from the environment, as in the other benchmarks)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks scale", description=__doc__)
    parser.add_argument("--rows", type=int, default=ROWS, help="rows of the raw file")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds of every method")
    parser.add_argument(
        "--only", default="dp,polars,view,copy", help="methods to run, comma-separated"
    )
    return parser.parse_args(list(argv))


def main(argv: Sequence[str] = ()) -> None:
    """Check once, then measure every method ``rounds`` times; print medians and ratios."""
    options = arguments(argv)
    kinds = [k for k in options.only.split(",") if k]
    print(
        f"scale: {DATASET}, {options.rows:,} rows, {options.rounds} rounds, "
        f"{', '.join(LABELS[k] for k in kinds)}; {load_average()}"
    )
    results: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    with workspace("scale") as folder:
        raw = raw_file(folder, options.rows)
        _warm_file(raw)
        print(f"  raw file {raw.stat().st_size / MIB:,.0f} MiB")
        check = run("check", raw)
        print(
            f"  {LABELS['check']}: {check['seconds']:.1f} s, peak {check['peak_mib']:.0f} MiB "
            f"(load {check['load']:.1f})",
            flush=True,
        )
        for number, order in rotations(kinds, options.rounds):
            for kind in order:
                results[kind].append(run(kind, raw))
                last = results[kind][-1]
                print(
                    f"  round {number} {kind}: {last['seconds']:.2f} s (first "
                    f"{last['first']:.2f} s), peak {last['peak_mib']:.0f} MiB, "
                    f"load {last['load']:.1f}",
                    flush=True,
                )
    report(results)


def report(results: dict[str, list[dict[str, Any]]]) -> None:
    """Medians, peaks and the ratios against the goals."""
    med = {
        k: {f: statistics.median(r[f] for r in rs) for f in ("seconds", "first", "load")}
        for k, rs in results.items()
    }
    peak = {k: max(r["peak_mib"] for r in rs) for k, rs in results.items()}
    print(f"  {'method':<26}{'steady':>10}{'first':>10}{'peak RSS':>12}{'load':>7}")
    for kind in results:
        print(
            f"  {LABELS[kind]:<26}{med[kind]['seconds']:>8.2f} s{med[kind]['first']:>8.2f} s"
            f"{peak[kind]:>8.0f} MiB{med[kind]['load']:>7.1f}"
        )
    if {"dp", "polars"} <= results.keys():
        steady = med["dp"]["seconds"] / med["polars"]["seconds"]
        first = med["dp"]["first"] / med["polars"]["first"]
        print(
            f"  DP / Polars streaming: {steady:.2f}x steady "
            f"({_verdict(steady, GOALS['steady'])} {GOALS['steady']:g}x), "
            f"{first:.2f}x first query ({_verdict(first, GOALS['first'])} {GOALS['first']:g}x), "
            f"DP peak {peak['dp']:.0f} MiB ({_verdict(peak['dp'], GOALS['peak_mib'])} 2 GiB), "
            f"Polars peak {peak['polars']:.0f} MiB"
        )
    if {"view", "copy"} <= results.keys():
        ratio = med["view"]["seconds"] / med["copy"]["seconds"]
        print(
            f"  view build / pyarrow copy: {ratio:.2f}x, peaks {peak['view']:.0f} / "
            f"{peak['copy']:.0f} MiB"
        )


def _verdict(value: float, goal: float) -> str:
    return "within" if value <= goal else "OVER"


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--measure":
        measure(sys.argv[2], Path(sys.argv[3]))
    else:
        main(sys.argv[1:])
