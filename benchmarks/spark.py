"""The Spark engine (Tumult Analytics) vs the OpenDP engine and plain Spark SQL.

The raw file is ``health_records`` from the demo generator (1 million rows by default,
``--rows`` or ``SHUYU_BENCH_SPARK_ROWS``). The query is the one of ``benchmarks dp``:
group by ``district`` (the policy's public keys), the row count and the sum and mean of
``settlement_amount`` clamped to the policy's bounds, ε = 0.25. Each round runs, in
fresh processes and a rotating order:

* the Spark engine: :meth:`shuyu_platform.dp.spark_engine.SparkEngine.answer`, which
  starts a Tumult driver (``.venv-tumult``) with Spark in local mode; the file keeps
  its contribution bound, so the count and the sum come from one Spark pass with
  Tumult Core's noise (``Shuyu.spark_one_pass``, the default);
* the same engine with ``spark_one_pass`` off: a Tumult Analytics query per primitive;
* the OpenDP engine: :meth:`~shuyu_platform.dp.opendp_engine.OpenDpEngine.answer`;
* plain Spark SQL, not private, in the Tumult venv's PySpark with the same master and
  properties: the same aggregates over the same Parquet file, clamped alike.

The first call of a process (Spark's JVM start, Tumult's imports, the OpenDP engine's
per-file check) is timed apart from the steady state, the median of the calls after it.
Peak memory is the largest summed resident set of the measuring process and all its
descendants (the driver and its JVM), sampled every 50 ms. The goal is the Spark engine
within 2x of plain Spark SQL.
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

from .memory import REPO, PeakTree, interleaved_rounds, measure_in_fresh_process

ROWS = int(os.environ.get("SHUYU_BENCH_SPARK_ROWS", "1000000"))
ROUNDS = int(os.environ.get("SHUYU_BENCH_ROUNDS", "3"))
STEADY_CALLS = 2
GOAL = 2.0
MASTER = os.environ.get("SHUYU_BENCH_SPARK_MASTER", "local[2]")
LABELS = {
    "tumult": "Spark engine",
    "session": "  one pass off",
    "opendp": "OpenDP engine",
    "sparksql": "plain Spark SQL",
}

Query = dict[str, Any]


# ================================================================= measurements


def tumult(raw: Path, query: Query) -> tuple[Callable[[], dict[str, Any]], Callable[[], None]]:
    """The Spark engine, as the DP service calls it (driver started on the first call)."""
    import tempfile

    from shuyu_platform.core.settings import Shuyu
    from shuyu_platform.dp.engine import Source
    from shuyu_platform.dp.spark_engine import SparkEngine

    spec, policy = _spec(query)
    home = tempfile.mkdtemp(prefix="shuyu-bench-spark-")
    settings = Shuyu(home=home, spark_one_pass=query.get("one_pass", True))
    engine = SparkEngine(settings, master=query["master"])
    source = Source(policy, raw)

    def answer() -> dict[str, Any]:
        result = engine.answer(source, spec)
        return {"groups": len(result.rows), "n": sum(row["n"] for row in result.rows)}

    return answer, engine.close


def _spec(query: Query) -> tuple[Any, Any]:
    from shuyu_platform.data.policy import load_policy
    from shuyu_platform.dp import query as dp_query

    from .dp import DATASET

    policy = load_policy(REPO / "policies" / f"{DATASET}.yaml")
    body = {
        "dataset": DATASET,
        "epsilon": query["epsilon"],
        "group_by": [query["key"]],
        "statistics": {
            "n": {"fn": "count"},
            "total": {"fn": "sum", "column": query["column"]},
            "avg": {"fn": "mean", "column": query["column"]},
        },
    }
    return dp_query.parse(body, policy, list(policy.fields)), policy


def opendp(raw: Path, query: Query) -> tuple[Callable[[], dict[str, Any]], Callable[[], None]]:
    """The OpenDP engine on the same file (``benchmarks dp``'s measurement)."""
    from .dp import dp_engine

    return dp_engine(raw, query), lambda: None


def sparksql(raw: Path, query: Query) -> tuple[Callable[[], dict[str, Any]], Callable[[], None]]:
    """The same aggregates in Spark SQL, exact and not private (runs in .venv-tumult)."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(query["master"]).appName("shuyu-bench-sparksql")
    for pair in query["conf"]:
        key, _, value = pair.partition("=")
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    key, column = query["key"], query["column"]
    low, high = query["lower"], query["upper"]
    value = f"least(greatest(coalesce(nanvl({column}, {low}), {low}), {low}), {high})"
    sql = (
        f"SELECT {key}, count(*) AS n, sum({value}) AS total, avg({value}) AS avg "
        f"FROM records GROUP BY {key}"
    )

    def collect() -> dict[str, Any]:
        spark.read.parquet(str(raw)).createOrReplaceTempView("records")
        rows = spark.sql(sql).collect()
        return {"groups": len(rows), "n": float(sum(row["n"] for row in rows))}

    return collect, spark.stop


def session(raw: Path, query: Query) -> tuple[Callable[[], dict[str, Any]], Callable[[], None]]:
    """The Spark engine with ``spark_one_pass`` off: a Tumult Analytics query per primitive."""
    return tumult(raw, query | {"one_pass": False})


MEASUREMENTS = {"tumult": tumult, "session": session, "opendp": opendp, "sparksql": sparksql}


def measure(kind: str, raw: Path, query: Query) -> None:
    """Run one measurement in this process and print its result as one JSON line."""
    peak = PeakTree()
    work, close = MEASUREMENTS[kind](raw, query)
    seconds: list[float] = []
    details: dict[str, Any] = {}
    for _ in range(1 + STEADY_CALLS):
        started = time.perf_counter()
        details = work()
        seconds.append(time.perf_counter() - started)
    peak_mib = peak.stop()
    close()
    result = {
        "first": seconds[0],
        "seconds": statistics.median(seconds[1:]),
        "peak_mib": peak_mib,
        **details,
    }
    print(json.dumps(result))


def run(kind: str, python: str, raw: Path, query: Query) -> dict[str, Any]:
    """Run one measurement in a fresh process of ``python``."""
    return measure_in_fresh_process("spark", kind, str(raw), json.dumps(query), python=python)


# ================================================================================ main


def arguments(argv: Sequence[str]) -> argparse.Namespace:
    """Command-line options; defaults come from the environment."""
    from shuyu_platform.core.settings import Shuyu

    parser = argparse.ArgumentParser(prog="python -m benchmarks.spark", description=__doc__)
    parser.add_argument("--rows", type=int, default=ROWS, help="rows of the raw file")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds of every method")
    parser.add_argument("--master", default=MASTER, help="Spark master (default local[2])")
    parser.add_argument(
        "--tumult-python",
        default=Shuyu().spark_python,
        help="Python of the Tumult venv (default: Shuyu.spark_python)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] = ()) -> None:
    """Measure every method ``rounds`` times; print medians, ratios and peak memory."""
    from shuyu_platform.core.settings import Shuyu
    from shuyu_platform.dp.spark_engine import spark_properties

    from .dp import COLUMN, KEY, the_query
    from .rawdata import DATASET, raw_file, workspace

    options = arguments(argv)
    rows, rounds = options.rows, options.rounds
    # Plain Spark SQL runs with the properties the engine's driver gets on this master.
    conf = spark_properties(options.master, Shuyu().spark_conf)
    query = the_query() | {"master": options.master, "conf": conf}
    print(
        f"spark: Spark engine (Tumult) vs OpenDP engine and plain Spark SQL, {DATASET}, "
        f"{rows:,} rows, {rounds} rounds, master {options.master}"
    )
    print(
        f"  query: group by {KEY} ({len(query['keys'])} public keys): count, sum and mean "
        f"of {COLUMN} in [{query['lower']:g}, {query['upper']:g}], ε = {query['epsilon']:g}"
    )
    print(f"  machine load (1, 5, 15 min): {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    pythons = {
        "tumult": sys.executable,
        "session": sys.executable,
        "opendp": sys.executable,
        "sparksql": options.tumult_python,
    }
    with workspace("spark") as folder:
        raw = raw_file(folder, rows)
        print(f"  raw file {raw.stat().st_size / 2**20:,.0f} MiB")
        results = interleaved_rounds(
            list(pythons), rounds, lambda kind: run(kind, pythons[kind], raw, query), 2
        )
    print(f"  machine load (1, 5, 15 min): {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    report(results)


def report(results: dict[str, list[dict[str, Any]]]) -> None:
    """Medians per method and the ratios of the Spark engine to the others."""
    steady = {k: statistics.median(r["seconds"] for r in rs) for k, rs in results.items()}
    first = {k: statistics.median(r["first"] for r in rs) for k, rs in results.items()}
    print(f"  {'method':<17}{'steady median':>15}{'first call':>13}{'peak RSS':>11}   answer")
    for kind, rs in results.items():
        peak = max(r["peak_mib"] for r in rs)
        last = rs[-1]
        print(
            f"  {LABELS[kind]:<17}{steady[kind]:>13.2f} s{first[kind]:>11.2f} s"
            f"{peak:>7.0f} MiB   {last['groups']} groups, n = {last['n']:,.0f}"
        )
    print(
        f"  (steady: median of the {STEADY_CALLS} calls after the first in each process; "
        "peak RSS: the process with its driver and JVM)"
    )
    ratio = steady["tumult"] / steady["sparksql"]
    verdict = "within" if ratio <= GOAL else "OVER"
    print(
        f"  {'Spark engine / plain Spark SQL':<32}{ratio:6.2f}x steady ({verdict} the "
        f"{GOAL:g}x goal), {first['tumult'] / first['sparksql']:.2f}x first call"
    )
    print(
        f"  {'Spark engine / OpenDP engine':<32}{steady['tumult'] / steady['opendp']:6.2f}x "
        f"steady, {first['tumult'] / first['opendp']:.2f}x first call"
    )


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--measure":
        measure(sys.argv[2], Path(sys.argv[3]), json.loads(sys.argv[4]))
    else:
        main(sys.argv[1:])
