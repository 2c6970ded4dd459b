"""The Spark driver of the Tumult engine: runs in ``.venv-tumult``, never in the platform.

Tumult Analytics pins older pandas and numpy (and PySpark 3.5) than the platform's, so
it cannot be imported by the platform service. :class:`~.spark_engine.SparkEngine`
starts this file as a script with the Tumult venv's Python (``Shuyu.spark_python``); it
imports only the standard library, PySpark and Tumult, never ``shuyu_platform``.

Protocol: one JSON object per line on stdin, one JSON reply per line on stdout, in
order. A pipe pair rather than a socket or HTTP port because the driver serves exactly
one platform process: nothing else can reach a pipe, so there is no port to firewall
and no credential to hand over; the driver's life is tied to its parent (it exits at
end of input); and requests are serialised by construction. Spark, py4j and the JVM
log to stdout in places, so the real stdout is kept on a private descriptor and file
descriptor 1 is pointed at stderr before Spark starts.

Requests (``op``):

``ping``
    Nothing; says the driver is alive.
``answer``
    The noisy primitives of a plan, one row per public group, the noise mechanism and
    scale Tumult used for each (the engine compares them with what it promised), and
    which path answered (``truncated``, ``one_pass``).

A plan (built by :mod:`.spark_engine` from a checked query) names the Parquet file,
the grant's row filter and the tenant's filters, the privacy unit and its contribution
bound, the group keys (public key sets or histogram bins) and the primitives: counts,
clamped sums (of a value or its square) and quantiles, each spending ``epsilon``.
Rows are prepared row by row with Spark SQL (filters, bins, nulls and NaN as the lower
bound). What follows depends on whether the file keeps the policy's promise that no
unit has more than ``max_contributions`` rows, which the driver counts once per file
version (:func:`_worst_contribution`, one aggregation over the unit column, remembered
for the driver's life):

* the promise holds: the rows are "add or remove up to ``max_contributions`` rows"
  apart, with nothing to truncate. This is the OpenDP engine's model (it refuses files
  that break the promise). A plan of counts and sums (``one_pass``, on by default) is
  then answered by :func:`_one_pass`: every primitive's exact aggregate per public group
  from one Spark pass, as plain Spark SQL computes it, and Tumult Core's noise on the
  driver, of the scale Tumult Core's own sensitivity and privacy functions give. A plan
  with a quantile, or with ``one_pass`` off, goes to a Tumult Analytics ``Session``
  told ``AddMaxRows``, which evaluates each primitive as a query of its own;
* the promise is broken: a ``Session`` told "add or remove every row of one privacy
  unit" (``AddRowsWithID``) with ``MaxRowsPerID(max_contributions)`` enforced, so a
  unit's rows beyond the bound are dropped by Tumult's truncation, not trusted. The
  truncation runs once per answer, into a cached view every primitive reads.

Every path adds noise of the same scales (the engine checks them on every answer),
and nothing cached outlives the answer.

Replies: ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any

VALUE = "__v_{}"  # a summed or ranked column, clamped, nulls and NaN as the lower bound
SQUARE = "__sq_{}"  # its square
TRUNCATED = "truncated"  # the view of the rows with the contribution bound enforced
ONE_PASS = ("count", "sum")  # the primitives :func:`_one_pass` answers together


def _prepared(spark: Any, plan: dict[str, Any], with_unit: bool) -> Any:
    """The rows of the plan: granted, filtered, keys as strings, values clamped.

    ``with_unit``: with the privacy unit's column, which only a truncation needs.
    Without it (the widest column) and with no cache, each primitive's pass reads only
    its own columns from Parquet: on 10M rows an answer took 3 s instead of the 8.5 s
    of caching every column for the primitives to share.
    """
    from pyspark.sql import functions as F

    frame = spark.read.parquet(plan["path"])
    for column, values in plan.get("row_filter", {}).items():
        frame = frame.filter(F.col(column).isin(list(values)))
    for item in plan.get("filters", []):
        frame = frame.filter(_filter(F, item))
    columns = []
    unit = plan.get("unit")
    if unit and with_unit:
        columns.append(F.col(unit))
    for key in plan["keys"]:
        if key.get("edges") is None:
            columns.append(F.col(key["column"]).cast("string").alias(key["name"]))
            continue
        value = F.col(key["column"]).cast("double")
        edges, labels = key["edges"], key["labels"]
        binned = F.when(value.isNull() | F.isnan(value), F.lit(None))
        for edge, label in zip(edges, labels, strict=False):
            binned = binned.when(value < F.lit(float(edge)), F.lit(label))
        columns.append(binned.otherwise(F.lit(labels[-1])).alias(key["name"]))
    values = {p["column"]: p for p in plan["primitives"] if p.get("column")}
    for name, primitive in values.items():
        raw = F.col(name).cast("double")
        low, high = primitive["bounds"]
        value = F.when(raw.isNull() | F.isnan(raw), F.lit(float(low))).otherwise(raw)
        value = F.least(F.greatest(value, F.lit(float(low))), F.lit(float(high)))
        columns.append(value.alias(VALUE.format(name)))
        if any(p.get("square") and p["column"] == name for p in plan["primitives"]):
            columns.append((value * value).alias(SQUARE.format(name)))
    if len(columns) == 0:
        columns.append(F.lit(1).alias("__row"))
    return frame.select(columns)


def _filter(F: Any, item: dict[str, Any]) -> Any:
    """The Spark predicate of one checked filter (null never matches a comparison)."""
    column, op, value = F.col(item["column"]), item["op"], item.get("value")
    match op:
        case "==":
            return column == F.lit(value)
        case "!=":
            return column != F.lit(value)
        case "<":
            return column < F.lit(value)
        case "<=":
            return column <= F.lit(value)
        case ">":
            return column > F.lit(value)
        case ">=":
            return column >= F.lit(value)
        case "in":
            return column.isin(list(value))
        case "not_in":
            return column.isNotNull() & ~column.isin(list(value))
        case "is_null":
            return column.isNull()
        case "not_null":
            return column.isNotNull()
    raise ValueError(f"unknown filter op {op!r}")


#: Worst rows per unit of each (file version, unit column) the driver has counted.
_CHECKED: dict[tuple[Any, ...], int] = {}


def _version(spark: Any, path: str) -> tuple[Any, ...]:
    """What identifies one version of the file at ``path``.

    A local file: device, inode, size, modification and change time (a file rewritten
    in place, even given back its old size and mtime, has a new change time). Other
    storage: length and modification time as Hadoop's file system reports them.
    """
    if "://" not in path or path.startswith("file:"):
        st = os.stat(path.removeprefix("file://").removeprefix("file:"))
        return ("local", st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    jvm = spark.sparkContext._jvm
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    fs = hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    status = fs.getFileStatus(hadoop_path)
    return ("hadoop", status.getLen(), status.getModificationTime())


def _worst_contribution(spark: Any, plan: dict[str, Any]) -> tuple[int, tuple[Any, ...]]:
    """Most rows any privacy unit has in the whole file, counted once per file version;
    and that version.

    Over the raw file, before any filter, as the OpenDP engine's check does: the
    promise is about the file. Rows without a unit count as one unit.
    """
    from pyspark.sql import functions as F

    version = _version(spark, plan["path"])
    key = (plan["path"], plan["unit"], version)
    if key not in _CHECKED:
        counts = spark.read.parquet(plan["path"]).groupBy(plan["unit"]).count()
        worst = counts.agg(F.max("count")).first()[0]
        _CHECKED[key] = int(worst or 0)
    return _CHECKED[key], version


def _session(plan: dict[str, Any], frame: Any, budget: float, truncate: bool) -> Any:
    """A Tumult session over the prepared rows, protecting one privacy unit.

    ``truncate``: the file breaks the contribution bound, so Tumult is told the unit
    column and drops the excess; otherwise every unit has at most the bound's rows.
    """
    from tmlt.analytics import AddMaxRows, AddRowsWithID, PureDPBudget, Session

    unit = plan.get("unit")
    change = AddRowsWithID(id_column=unit) if truncate else AddMaxRows(plan["contributions"])
    return Session.from_dataframe(
        privacy_budget=PureDPBudget(budget),
        source_id="rows",
        dataframe=frame,
        protected_change=change,
    )


def _truncated(session: Any, plan: dict[str, Any]) -> str:
    """The source every primitive reads: the rows with ``MaxRowsPerID`` enforced, cached.

    Tumult truncates by hashing every column of every row and ranking a unit's rows
    (a sort and two windows over the whole table), and did so twice in each primitive's
    query: once for ``enforce`` and once more as the aggregation applies the constraint.
    A view enforcing the bound once, cached, lets every primitive of the answer share
    that first truncation (the second, inside each aggregation, then finds nothing to
    drop). The view is a transformation: it spends no budget and leaves the noise
    scales as they were (the engine checks them against the preview on every answer).
    """
    from tmlt.analytics import MaxRowsPerID, QueryBuilder

    truncated = QueryBuilder("rows").enforce(MaxRowsPerID(plan["contributions"]))
    session.create_view(truncated, TRUNCATED, cache=True)
    return TRUNCATED


def _query(
    plan: dict[str, Any], source: str, keyset: Any, primitive: dict[str, Any], truncate: bool
) -> Any:
    """The Tumult query of one primitive, grouped by the public keys if any.

    It reads only the columns it needs (the keys, its value, and the unit when the
    bound is enforced): a truncating aggregation hashes every column it is given, and
    otherwise Spark reads from Parquet only the columns the query uses.
    """
    from tmlt.analytics import QueryBuilder

    name, fn = primitive["name"], primitive["fn"]
    column = None
    if fn != "count":
        pattern = SQUARE if primitive.get("square") else VALUE
        column = pattern.format(primitive["column"])
    builder: Any = QueryBuilder(source)
    needed = [*([plan["unit"]] if truncate else []), *(key["name"] for key in plan["keys"])]
    needed += [column] if column else []
    if needed:  # a plain count of all rows keeps the frame's placeholder column
        builder = builder.select(needed)
    if keyset is not None:
        builder = builder.groupby(keyset)
    if column is None:
        return builder.count(name=name)
    low, high = primitive["low"], primitive["high"]
    if fn == "sum":
        return builder.sum(column, low, high, name=name)
    return builder.quantile(column, primitive["q"], low, high, name=name)


def _grouped_domain(plan: dict[str, Any], primitive: dict[str, Any]) -> Any:
    """Tumult Core's domain of the grouped rows one primitive aggregates.

    The keys are strings (null allowed: a null key is in no key set); a summed column is
    a float clamped by :func:`_prepared`, never null, NaN or infinite.
    """
    from tmlt.core.domains.spark_domains import (
        SparkFloatColumnDescriptor,
        SparkGroupedDataFrameDomain,
        SparkStringColumnDescriptor,
    )

    names = [key["name"] for key in plan["keys"]]
    schema: dict[str, Any] = {name: SparkStringColumnDescriptor(allow_null=True) for name in names}
    if primitive["fn"] == "sum":
        schema[_summed(primitive)] = SparkFloatColumnDescriptor(
            allow_nan=False, allow_inf=False, allow_null=False
        )
    return SparkGroupedDataFrameDomain(schema=schema, groupby_columns=names)


def _summed(primitive: dict[str, Any]) -> str:
    """The prepared column a sum primitive adds up."""
    return (SQUARE if primitive.get("square") else VALUE).format(primitive["column"])


def _core_aggregation(plan: dict[str, Any], primitive: dict[str, Any]) -> Any:
    """Tumult Core's ``CountGrouped`` or ``SumGrouped`` of one primitive, over the keys.

    :func:`_core_measurement` takes its sensitivity from it; the tests check that
    :func:`_exact` computes what it computes.
    """
    from tmlt.core.metrics import SumOf, SymmetricDifference
    from tmlt.core.transformations.spark_transformations.agg import CountGrouped, SumGrouped
    from tmlt.core.utils.exact_number import ExactNumber

    domain, metric = _grouped_domain(plan, primitive), SumOf(SymmetricDifference())
    if primitive["fn"] == "count":
        return CountGrouped(domain, metric, count_column=primitive["name"])
    return SumGrouped(
        domain,
        metric,
        measure_column=_summed(primitive),
        lower=ExactNumber.from_float(float(primitive["low"]), round_up=False),
        upper=ExactNumber.from_float(float(primitive["high"]), round_up=True),
        sum_column=primitive["name"],
    )


def _core_measurement(plan: dict[str, Any], primitive: dict[str, Any]) -> tuple[Any, Any]:
    """Tumult Core's noise for one count or sum primitive, and its scale, checked.

    The sensitivity is the ``stability_function`` of the primitive's Tumult Core
    aggregation (:func:`_core_aggregation`): under "add or remove up to ``k`` rows" the
    rows are ``k`` apart, and grouping by public keys keeps that distance (Tumult Core's
    ``GroupBy`` is 1-stable). The noise is Tumult Core's, geometric for a count and
    Laplace for a float sum, added to every group's value by ``AddNoiseToSeries``, of
    scale sensitivity / ε. Tumult Core's ``privacy_function`` must then say that the
    primitive spends at most its ε, or nothing is answered. These are the mechanisms
    and scales Tumult Analytics picks for the same query (the engine checks the scale).
    """
    from tmlt.core.domains.numpy_domains import NumpyFloatDomain
    from tmlt.core.measurements.noise_mechanisms import AddGeometricNoise, AddLaplaceNoise
    from tmlt.core.measurements.pandas_measurements.series import AddNoiseToSeries
    from tmlt.core.utils.exact_number import ExactNumber

    epsilon = ExactNumber.from_float(float(plan["epsilon"]), round_up=False)
    sensitivity = _core_aggregation(plan, primitive).stability_function(int(plan["contributions"]))
    scale = sensitivity / epsilon
    if primitive["fn"] == "count":
        noise = AddNoiseToSeries(AddGeometricNoise(alpha=scale))
    else:
        noise = AddNoiseToSeries(AddLaplaceNoise(NumpyFloatDomain(), scale=scale))
    if not noise.privacy_function(sensitivity) <= epsilon:
        raise RuntimeError(f"{primitive['name']} would spend more than its epsilon")
    return noise, scale


def _exact(plan: dict[str, Any], frame: Any) -> list[dict[str, Any]]:
    """Every count and sum primitive of the plan, exact, for every group of the key set.

    One Spark pass: the same aggregates as Tumult Core's ``CountGrouped`` and
    ``SumGrouped`` (a sum clamps its column to the primitive's bounds again, as
    ``SumGrouped`` does), all in one ``groupBy().agg()``, as plain Spark SQL computes
    them, over the rows of the key set only: at most one row per public group comes
    back to the driver. Then, as Tumult's join with the key set does: one row per group
    of the key set, in its order, zero where the group has no rows, and groups outside
    the key set (a null key included) dropped.
    """
    from pyspark.sql import functions as F

    aggregates = []
    for primitive in plan["primitives"]:
        if primitive["fn"] == "count":
            aggregates.append(F.count(F.lit(1)).alias(primitive["name"]))
            continue
        low, high = F.lit(float(primitive["low"])), F.lit(float(primitive["high"]))
        clamped = F.least(F.greatest(F.col(_summed(primitive)), low), high)
        aggregates.append(F.sum(clamped).alias(primitive["name"]))
    names = [key["name"] for key in plan["keys"]]
    # Each group once, even were a key set to list a key twice: one noisy value each.
    keyset = [list(dict.fromkeys(plan["keyset"][name])) for name in names]
    for name, keys in zip(names, keyset, strict=True):
        # Rows outside the key set (a null key too) never reach a group: the driver
        # collects at most one row per public group, however many values the raw has.
        frame = frame.filter(F.col(name).isin(keys))
    grouped = frame.groupBy(*names) if names else frame
    found = {}
    for row in grouped.agg(*aggregates).collect():
        values = row.asDict()
        found[tuple(values[name] for name in names)] = values
    rows = []
    for group in itertools.product(*keyset):
        values = found.get(group, {})
        row: dict[str, Any] = dict(zip(names, group, strict=True))
        for primitive in plan["primitives"]:
            exact = values.get(primitive["name"]) or 0  # no rows: 0 (Spark's sum says null)
            row[primitive["name"]] = int(exact) if primitive["fn"] == "count" else float(exact)
        rows.append(row)
    return rows


def _one_pass(plan: dict[str, Any], frame: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The noisy counts and sums of a plan from one pass over its rows.

    Tumult Analytics evaluates each primitive as a query of its own: a pass over the
    rows, a join with the key set, the noise as a Python UDF on Spark's workers, then a
    random repartition, a sort and a table write of the result (its defence against
    side channels in a distributed result). For a count and a sum that is two passes
    and about a second of fixed work each, against plain Spark SQL's one pass
    (``python -m benchmarks spark``: 3.5 to 4x). Here the exact aggregates of every
    primitive come from one pass, a few rows per public group (:func:`_exact`), and
    Tumult Core's noise is added to them on the driver (:func:`_core_measurement`).
    The result is built on the driver in the key set's order from noisy values only,
    so there is no partitioning or ordering of a distributed result to sanitise.
    """
    import pandas as pd

    rows = _exact(plan, frame)
    noise: dict[str, Any] = {}
    for primitive in plan["primitives"]:
        name, is_count = primitive["name"], primitive["fn"] == "count"
        measurement, scale = _core_measurement(plan, primitive)
        exact = pd.Series([row[name] for row in rows], dtype="int64" if is_count else "float64")
        cast = int if is_count else float
        for row, noisy in zip(rows, measurement(exact), strict=True):
            row[name] = cast(noisy)
        mechanism = "geometric" if is_count else "laplace"
        # The nearest float, for the engine's check; the noise used the exact scale.
        noise[name] = {"mechanism": mechanism, "scale": float(scale.expr)}
    return rows, noise


def _noise(info: list[dict[str, Any]]) -> dict[str, Any]:
    """Tumult's noise description of one primitive, as JSON."""
    entry = info[0] if info else {}
    mechanism = entry.get("noise_mechanism")
    return {
        "mechanism": getattr(mechanism, "name", str(mechanism)).lower(),
        "scale": float(entry["noise_parameter"]) if "noise_parameter" in entry else None,
    }


def _in_session(
    spark: Any, plan: dict[str, Any], frame: Any, truncate: bool
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The noisy primitives of a plan from a Tumult Analytics session, one query each.

    ``truncate``: the file breaks the contribution bound, which Tumult then enforces.
    """
    from tmlt.analytics import KeySet, PureDPBudget

    epsilon, primitives = float(plan["epsilon"]), plan["primitives"]
    try:
        session = _session(plan, frame, epsilon * len(primitives), truncate)
        source = _truncated(session, plan) if truncate else "rows"
        # One key set for every primitive, cached: its rows come from Python only once.
        keyset = KeySet.from_dict(plan["keyset"]) if plan["keys"] else None
        if keyset is not None:
            keyset.cache()
        names = [key["name"] for key in plan["keys"]]
        noise: dict[str, Any] = {}
        merged: dict[tuple[Any, ...], dict[str, Any]] = {}
        for i, primitive in enumerate(primitives):
            name, query = primitive["name"], _query(plan, source, keyset, primitive, truncate)
            # The last one takes what is left, so float rounding never overdraws.
            last = i == len(primitives) - 1
            budget = session.remaining_privacy_budget if last else PureDPBudget(epsilon)
            noise[name] = _noise(session._noise_info(query, budget))  # before evaluating
            for row in session.evaluate(query, budget).collect():
                values = row.asDict()
                group = tuple(values[k] for k in names)
                merged.setdefault(group, dict(zip(names, group, strict=True)))[name] = values[name]
        return list(merged.values()), noise
    finally:
        # Nothing cached outlives its answer: Spark finds a cache by its plan, so a
        # truncation left cached would answer the next query on the same path from the
        # rows of a file since replaced. Tumult 0.21's ``delete_view`` leaves the view's
        # cache in place, hence everything, at once (one request at a time here).
        spark.catalog.clearCache()


def handle(spark: Any, request: dict[str, Any]) -> dict[str, Any]:
    """Answer one request of the protocol."""
    op = request.get("op")
    if op == "ping":
        return {"ok": True}
    if op != "answer":
        return {"ok": False, "error": f"unknown op {op!r}"}
    plan = request["plan"]
    checked: tuple[Any, ...] | None = None
    truncate = False
    if plan.get("unit"):
        worst, checked = _worst_contribution(spark, plan)
        truncate = worst > plan["contributions"]
    frame = _prepared(spark, plan, with_unit=truncate)
    one_pass = not truncate and plan.get("one_pass", False)
    one_pass = one_pass and all(p["fn"] in ONE_PASS for p in plan["primitives"])
    if one_pass:
        rows, noise = _one_pass(plan, frame)
    else:
        rows, noise = _in_session(spark, plan, frame, truncate)
    if not truncate and checked is not None and _version(spark, plan["path"]) != checked:
        # Spark reads lazily: rows of a file replaced since its count were unchecked.
        return {"ok": False, "error": "the raw file changed during the answer; retry"}
    return {"ok": True, "noise": noise, "rows": rows, "truncated": truncate, "one_pass": one_pass}


def main() -> None:
    """Start Spark, say ready, then answer requests until stdin closes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--conf", action="append", default=[], help="key=value Spark property")
    args = parser.parse_args()
    replies = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # Spark, py4j and the JVM must never write into the protocol
    sys.stdout = sys.stderr
    # Python workers must import Tumult too: in local mode they are this venv's Python.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    from importlib.metadata import version

    from pyspark.sql import SparkSession

    # Tumult keeps temporary tables in Spark's warehouse: never in the service's folder.
    warehouse = tempfile.mkdtemp(prefix="shuyu-spark-warehouse-")
    builder = SparkSession.builder.master(args.master).appName("shuyu-dp-tumult")
    builder = builder.config("spark.sql.warehouse.dir", warehouse)
    for pair in args.conf:
        key, _, value = pair.partition("=")
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    ready = {"ok": True, "spark": spark.version, "tumult": version("tmlt.analytics")}
    replies.write(json.dumps(ready) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        started = time.monotonic()
        try:
            reply = handle(spark, json.loads(line))
        except Exception as err:  # any failure is one refused request, not a dead driver
            reply = {"ok": False, "error": f"{type(err).__name__}: {err}"[:2000]}
        reply["seconds"] = round(time.monotonic() - started, 3)
        replies.write(json.dumps(reply, default=str) + "\n")
    from tmlt.analytics.utils import cleanup

    cleanup()
    spark.stop()
    shutil.rmtree(warehouse, ignore_errors=True)


if __name__ == "__main__":
    main()
