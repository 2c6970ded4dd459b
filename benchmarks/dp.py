"""DP query engine vs plain Polars, diffprivlib and smartnoise-sql on the same query.

The raw file is ``health_records`` from the demo generator (10 million rows by default,
``--rows`` or ``SHUYU_BENCH_ROWS`` to change). The query is the same everywhere: group by
``district`` (the policy's public key set), the row count and the sum and mean of
``settlement_amount`` clamped to the policy's DP bounds, at ε = 0.25. Each method reads the
Parquet file itself, inside its timing. Each round runs, in fresh processes and in a
rotating order so machine noise hits all alike:

* the DP engine: :meth:`shuyu_platform.dp.opendp_engine.OpenDpEngine.answer`. The first
  query on a file also runs :meth:`~shuyu_platform.dp.engine.Source.check` (a group-by of
  the whole file on ``person_id``, cached per file version), so the first call is timed
  apart from the steady state (the median of the calls after it, in the same process);
* plain Polars, not private: ``scan_parquet`` then ``group_by(...).agg(...)``;
* diffprivlib: the two columns read with pyarrow into pandas, split by district, then
  ``count_nonzero``, ``sum`` and ``mean`` of :mod:`diffprivlib.tools` (ε/3 each) per
  public key; it trusts the data to hold one row per person;
* smartnoise-sql: the three columns read with pyarrow into pandas, ``snsql.from_df``
  (which copies the frame into an in-memory SQLite database) and the SQL query, ε scaled
  so the whole query costs 1. Each call loads the file again, so it runs once per round.

diffprivlib and smartnoise-sql run in whatever Python has them: ``--diffprivlib-python``
and ``--snsql-python`` (or ``SHUYU_BENCH_DIFFPRIVLIB_PYTHON`` / ``SHUYU_BENCH_SNSQL_PYTHON``),
this Python by default. smartnoise-sql pins an old OpenDP and must not go in the
project's venv; give it its own (``python3 -m venv /tmp/snsql-venv`` then ``pip install
smartnoise-sql pyarrow``). A method whose import fails is skipped, and the reason printed.

Each process reports its own wall times and peak resident memory. The goal is a
steady-state DP query within 2x of plain Polars.

The raw file is generated into a temporary folder and removed afterwards, or kept in
``SHUYU_BENCH_DIR`` and reused by later runs with the same row count.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from .memory import REPO, interleaved_rounds, measure_in_fresh_process, peak_mib
from .rawdata import DATASET, raw_file, workspace

ROWS = int(os.environ.get("SHUYU_BENCH_ROWS", "10000000"))
ROUNDS = int(os.environ.get("SHUYU_BENCH_ROUNDS", "5"))
STEADY_CALLS = 3  # calls after the first, per process, for the steady state
GOAL = 2.0
EPSILON = 0.25  # the shipped per-query cap of health_records
KEY = "district"
COLUMN = "settlement_amount"
UNIT = "person_id"
LABELS = {
    "dp": "DP engine",
    "polars": "plain Polars",
    "diffprivlib": "diffprivlib",
    "snsql": "smartnoise-sql",
}

Query = dict[str, Any]  # key, column, keys, lower, upper, epsilon (JSON, for any Python)


# ======================================================================= measurements


def dp_engine(raw: Path, query: Query) -> Callable[[], dict[str, Any]]:
    """Answer the query with Shuyu's OpenDP engine, as the DP service does.

    Imports, the policy and the parsed query are ready before the clock starts: a
    running platform has them already.
    """
    from shuyu_platform.data.policy import load_policy
    from shuyu_platform.dp import query as dp_query
    from shuyu_platform.dp.engine import Source
    from shuyu_platform.dp.opendp_engine import OpenDpEngine

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
    spec = dp_query.parse(body, policy, list(policy.fields))
    source = Source(policy, raw)
    engine = OpenDpEngine()

    def answer() -> dict[str, Any]:
        result = engine.answer(source, spec)
        return {"groups": len(result.rows), "n": sum(row["n"] for row in result.rows)}

    return answer


def plain_polars(raw: Path, query: Query, streaming: bool = False) -> Callable[[], dict[str, Any]]:
    """The same aggregates with Polars (in memory, or its streaming engine), exact."""
    import polars as pl

    engine = "streaming" if streaming else "auto"

    def collect() -> dict[str, Any]:
        column = pl.col(query["column"])
        frame = (
            pl.scan_parquet(raw)
            .group_by(query["key"])
            .agg(pl.len().alias("n"), column.sum().alias("total"), column.mean().alias("avg"))
            .collect(engine=engine)
        )
        return {"groups": frame.height, "n": int(frame["n"].sum())}

    return collect


def diffprivlib_tools(raw: Path, query: Query) -> Callable[[], dict[str, Any]]:
    """Count, sum and mean per public key with :mod:`diffprivlib.tools`, ε/3 each."""
    import diffprivlib.tools as dpt
    import numpy as np

    bounds = (query["lower"], query["upper"])
    epsilon = query["epsilon"] / 3  # three releases per group; groups are disjoint

    def release() -> dict[str, Any]:
        frame = pq.read_table(raw, columns=[query["key"], query["column"]]).to_pandas()
        parts = {
            key: values.to_numpy()
            for key, values in frame.groupby(query["key"], sort=False)[query["column"]]
        }
        total_n = 0.0
        for key in query["keys"]:
            values = parts.get(key, np.empty(0))
            total_n += dpt.count_nonzero(np.ones(values.size, dtype=bool), epsilon=epsilon)
            dpt.sum(values, epsilon=epsilon, bounds=bounds)
            dpt.mean(values, epsilon=epsilon, bounds=bounds)
        return {"groups": len(query["keys"]), "n": float(total_n)}

    return release


def smartnoise_sql(raw: Path, query: Query) -> Callable[[], dict[str, Any]]:
    """The query in SQL through ``snsql.from_df``, one row per ``person_id`` at most.

    The ε given to snsql is scaled so that ``get_privacy_cost`` of the whole query is
    ``query["epsilon"]`` (snsql spends its ε on each noisy aggregate); measured on a
    two-row frame before the clock starts. ``censor_dims`` is off, so every group found
    is released without a threshold (and δ = 0), as close to the DP engine as snsql gets.
    """
    import pandas as pd
    import snsql

    key, column = query["key"], query["column"]
    metadata = {
        "Shuyu": {
            "health": {
                "records": {
                    "row_privacy": False,
                    "max_ids": 1,
                    "censor_dims": False,
                    UNIT: {"type": "string", "private_id": True},
                    key: {"type": "string"},
                    column: {
                        "type": "float",
                        "lower": query["lower"],
                        "upper": query["upper"],
                        "nullable": False,
                    },
                }
            }
        }
    }
    sql = (
        f"SELECT {key}, COUNT(*) AS n, SUM({column}) AS total, AVG({column}) AS mean_value "
        f"FROM health.records GROUP BY {key}"
    )
    tiny = pd.DataFrame({UNIT: ["a", "b"], key: query["keys"][:2], column: [1.0, 2.0]})
    unit_cost, _ = snsql.from_df(
        tiny, privacy=snsql.Privacy(epsilon=1.0, delta=0.0), metadata=metadata
    ).get_privacy_cost(sql)
    privacy = snsql.Privacy(epsilon=query["epsilon"] / float(unit_cost), delta=0.0)

    def release() -> dict[str, Any]:
        started = time.perf_counter()
        frame = pq.read_table(raw, columns=[UNIT, key, column]).to_pandas()
        read = time.perf_counter()
        reader = snsql.from_df(frame, privacy=privacy, metadata=metadata)
        loaded = time.perf_counter()
        rows = reader.execute(sql)
        done = time.perf_counter()
        return {
            "groups": len(rows) - 1,
            "n": float(sum(row[1] for row in rows[1:])),
            "read_s": read - started,
            "load_s": loaded - read,
            "query_s": done - loaded,
        }

    return release


MEASUREMENTS = {
    "dp": dp_engine,
    "polars": plain_polars,
    "diffprivlib": diffprivlib_tools,
    "snsql": smartnoise_sql,
}
#: Calls per process: the first, then the steady state (snsql keeps nothing between
#: calls and loads the file into SQLite each time, so one call is its first and only).
CALLS = {"dp": 1 + STEADY_CALLS, "polars": 1 + STEADY_CALLS, "diffprivlib": 1 + STEADY_CALLS}
#: Import check per method run in another Python: (statement, what to report).
PROBES = {
    "diffprivlib": (
        "import diffprivlib.tools, pyarrow, sklearn; from importlib.metadata import version; "
        "print('diffprivlib', version('diffprivlib'), 'scikit-learn', sklearn.__version__)"
    ),
    "snsql": (
        "import snsql, pyarrow; from importlib.metadata import version; "
        "print('smartnoise-sql', version('smartnoise-sql'), 'opendp', version('opendp'))"
    ),
}


def measure(kind: str, raw: Path, query: Query) -> None:
    """Run one measurement in this process and print its result as one JSON line."""
    work = MEASUREMENTS[kind](raw, query)
    seconds: list[float] = []
    details: dict[str, Any] = {}
    for _ in range(CALLS.get(kind, 1)):
        started = time.perf_counter()
        details = work()
        seconds.append(time.perf_counter() - started)
    steady = statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]
    result = {"first": seconds[0], "seconds": steady, "peak_mib": peak_mib(), **details}
    print(json.dumps(result))


def run(kind: str, python: str, raw: Path, query: Query) -> dict[str, Any]:
    """Run one measurement in a fresh process of ``python``, so its peak memory is its own."""
    return measure_in_fresh_process("dp", kind, str(raw), json.dumps(query), python=python)


def probe(kind: str, python: str) -> tuple[bool, str]:
    """Whether ``python`` can run ``kind``, and its versions or why not."""
    try:
        done = subprocess.run(
            [python, "-c", PROBES[kind]], cwd=REPO, capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return False, f"{python}: {err}"
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return False, f"{python}: {lines[-1] if lines else f'exit {done.returncode}'}"
    return True, f"{python} ({done.stdout.strip()})"


def the_query() -> Query:
    """The query every method answers, with the policy's public keys and bounds."""
    from shuyu_platform.data.policy import load_policy

    policy = load_policy(REPO / "policies" / f"{DATASET}.yaml")
    key, column = policy.fields[KEY].dp, policy.fields[COLUMN].dp
    assert key is not None and key.public_keys is not None
    assert column is not None and column.lower is not None and column.upper is not None
    return {
        "key": KEY,
        "column": COLUMN,
        "keys": list(key.public_keys),
        "lower": float(column.lower),
        "upper": float(column.upper),
        "epsilon": EPSILON,
    }


# ================================================================================ main


def arguments(argv: Sequence[str]) -> argparse.Namespace:
    """Command-line options; defaults come from the environment, as in the other benchmarks."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dp", description=__doc__)
    parser.add_argument("--rows", type=int, default=ROWS, help="rows of the raw file")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds of every method")
    parser.add_argument(
        "--diffprivlib-python",
        default=os.environ.get("SHUYU_BENCH_DIFFPRIVLIB_PYTHON", sys.executable),
        help="Python with diffprivlib and pyarrow (default: this one)",
    )
    parser.add_argument(
        "--snsql-python",
        default=os.environ.get("SHUYU_BENCH_SNSQL_PYTHON", sys.executable),
        help="Python with smartnoise-sql and pyarrow, in its own venv (default: this one)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] = ()) -> None:
    """Measure every method ``rounds`` times; print medians, ratios and peak memory."""
    options = arguments(argv)
    rows, rounds = options.rows, options.rounds
    query = the_query()
    print(
        f"dp: DP engine vs plain Polars, diffprivlib and smartnoise-sql, {DATASET}, "
        f"{rows:,} rows, {rounds} rounds"
    )
    print(
        f"  query: group by {KEY} ({len(query['keys'])} public keys): count, sum and mean "
        f"of {COLUMN} in [{query['lower']:g}, {query['upper']:g}], ε = {query['epsilon']:g}"
    )
    pythons = {"dp": sys.executable, "polars": sys.executable}
    for kind, python in (
        ("diffprivlib", options.diffprivlib_python),
        ("snsql", options.snsql_python),
    ):
        usable, note = probe(kind, python)
        print(f"  {LABELS[kind]}: {note if usable else f'skipped, cannot import it: {note}'}")
        if usable:
            pythons[kind] = python
    with workspace("dp") as folder:
        raw = raw_file(folder, rows)
        print(f"  raw file {raw.stat().st_size / 2**20:,.0f} MiB")
        results = interleaved_rounds(
            list(pythons), rounds, lambda kind: run(kind, pythons[kind], raw, query), 3
        )
    report(results)


def report(results: dict[str, list[dict[str, Any]]]) -> None:
    """Medians per method, the answers' shape, and the ratios to the DP engine."""
    steady = {k: statistics.median(r["seconds"] for r in rs) for k, rs in results.items()}
    first = {k: statistics.median(r["first"] for r in rs) for k, rs in results.items()}
    print(f"  {'method':<16}{'steady median':>15}{'first query':>14}{'peak RSS':>11}   answer")
    for kind, rs in results.items():
        peak = max(r["peak_mib"] for r in rs)
        last = rs[-1]
        answer = f"{last['groups']} groups, n = {last['n']:,.0f}"
        print(
            f"  {LABELS[kind]:<16}{steady[kind]:>13.3f} s{first[kind]:>12.3f} s"
            f"{peak:>7.0f} MiB   {answer}"
        )
    print(
        f"  (steady: median of the {STEADY_CALLS} calls after the first in each process; "
        "smartnoise-sql runs once per process)"
    )
    print(
        f"  DP engine first query - steady = {first['dp'] - steady['dp']:.2f} s "
        f"(the per-file {UNIT} check)"
    )
    if "snsql" in results:
        parts = {
            part: statistics.median(r[part] for r in results["snsql"])
            for part in ("read_s", "load_s", "query_s")
        }
        print(
            f"  smartnoise-sql medians: read {parts['read_s']:.2f} s, "
            f"copy into SQLite {parts['load_s']:.2f} s, query {parts['query_s']:.2f} s"
        )
    ratio = steady["dp"] / steady["polars"]
    verdict = "within" if ratio <= GOAL else "OVER"
    print(
        f"  {'DP engine / plain Polars':<28}{ratio:6.2f}x steady ({verdict} the {GOAL:g}x goal), "
        f"{first['dp'] / first['polars']:.2f}x first query"
    )
    for kind in ("diffprivlib", "snsql"):
        label = f"{LABELS[kind]} / DP engine"
        if kind in results:
            print(
                f"  {label:<28}{steady[kind] / steady['dp']:6.2f}x steady, "
                f"{first[kind] / first['dp']:.2f}x first query"
            )
        else:
            print(f"  {label:<28}   n/a (skipped)")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--measure":
        measure(sys.argv[2], Path(sys.argv[3]), json.loads(sys.argv[4]))
    else:
        main(sys.argv[1:])
