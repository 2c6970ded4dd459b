"""The Tumult engine on Spark (local mode), against the OpenDP engine on the same query.

Spark runs for real: a Tumult driver in ``.venv-tumult`` with ``local[2]``, one driver
for the whole module and one answer, so the test stays bounded. Only a Spark *cluster*
is out of reach here; ``Shuyu.spark_master`` is the one thing that changes for one.

The data: 9 districts of single-row people, plus one person who breaks the policy's
promise of one row each (40 rows, each far above the clamping bound). The OpenDP engine
answers on the data without that person (it refuses a file that breaks the promise);
the Spark engine answers on the file with them, so Tumult's truncation must keep just
one of their rows and the clamp must cut it to the policy's upper bound. A file that
keeps the promise is answered without truncation; which path a file takes is decided
per file version, so a file rewritten to break the promise is truncated again.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from harness import REPO
from shuyu_platform.core.settings import Shuyu
from shuyu_platform.data.policy import DatasetPolicy, load_policies
from shuyu_platform.dp import query
from shuyu_platform.dp.engine import EngineError, Members, Source, load_engine
from shuyu_platform.dp.opendp_engine import OpenDpEngine
from shuyu_platform.dp.spark_engine import SparkEngine, local_cores, spark_properties

UPPER = 50_000.0  # settlement_amount's clamping bound in the shipped policy
EPSILON = 40.0  # large, so the engines' noise is small beside the differences tested
EXTRA_ROWS = 40
HOME = "涪城区"  # where the over-contributing person lives
EXCLUDED = "平武县"  # filtered out by the query


@pytest.fixture(scope="module")
def policy() -> DatasetPolicy:
    """The shipped policy (one row per person), the per-query cap lifted to ε 40."""
    shipped = load_policies(REPO / "policies")["health_records"]
    privacy = shipped.privacy.model_copy(update={"max_epsilon_per_query": EPSILON})
    return shipped.model_copy(update={"privacy": privacy})


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, policy: DatasetPolicy) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("spark-raw")
    keys = policy.fields["district"].dp.public_keys  # type: ignore[union-attr]
    rng = np.random.default_rng(7)
    rows = 20_000
    good = pl.DataFrame(
        {
            "person_id": [f"P{i:06d}" for i in range(rows)],
            "district": rng.choice(list(keys), rows),
            "settlement_amount": rng.gamma(2.0, 2_000.0, rows),
        }
    )
    cheat = pl.DataFrame(
        {
            "person_id": ["P-CHEAT"] * EXTRA_ROWS,
            "district": [HOME] * EXTRA_ROWS,
            "settlement_amount": [1e9] * EXTRA_ROWS,
        }
    )
    good.write_parquet(folder / "good.parquet")
    pl.concat([good, cheat]).write_parquet(folder / "bad.parquet")
    return {"good": folder / "good.parquet", "bad": folder / "bad.parquet"}


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Any:
    home = str(tmp_path_factory.mktemp("home"))
    engine = SparkEngine(Shuyu(home=home), master="local[2]")  # 2 shuffle partitions
    yield engine
    engine.close()


def parsed(policy: DatasetPolicy, **body: Any) -> query.QuerySpec:
    """A checked query on health_records, every field of the policy granted."""
    return query.parse({"dataset": "health_records", **body}, policy, list(policy.fields))


def spec_of(policy: DatasetPolicy) -> query.QuerySpec:
    return parsed(
        policy,
        epsilon=EPSILON,
        # A hostile value: filters are Spark column expressions, never SQL text.
        filters=[{"column": "district", "op": "not_in", "value": [EXCLUDED, "x' OR '1'='1"]}],
        group_by=["district"],
        statistics={
            "n": {"fn": "count"},
            "total": {"fn": "sum", "column": "settlement_amount"},
            "avg": {"fn": "mean", "column": "settlement_amount"},
        },
    )


def count_of(policy: DatasetPolicy) -> query.QuerySpec:
    """The row count of the whole file, all of ε on it."""
    return parsed(policy, epsilon=EPSILON, statistics={"n": {"fn": "count"}})


# Spark's start and Tumult's two evaluations take ~20 s idle, minutes on a loaded machine.
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_spark_agrees_with_opendp_and_enforces_the_policy_bounds(
    spark: SparkEngine, policy: DatasetPolicy, files: dict[str, Path]
) -> None:
    spec = spec_of(policy)
    estimate = spark.estimate(Source(policy, files["bad"]), spec)
    assert spark.driver.process is None  # a preview needs no Spark and reads no row
    scales = {n["primitive"]: n["scale"] for n in estimate.noise}
    # ε split over two primitives; one row per person; sum bound 50,000.
    assert scales == {
        "__n": pytest.approx(2 / EPSILON),
        "__s_settlement_amount": 2 * UPPER / EPSILON,
    }

    answer = spark.answer(Source(policy, files["bad"]), spec)  # checks Tumult's scales too
    reference = OpenDpEngine().answer(Source(policy, files["good"]), spec)
    opendp_scales = {n["primitive"]: n["scale"] for n in reference.estimate.noise}
    keys = policy.fields["district"].dp.public_keys  # type: ignore[union-attr]
    assert [r["district"] for r in answer.rows] == list(keys)  # public key order

    exact = (
        pl.read_parquet(files["good"])
        .group_by("district")
        .agg(pl.len().alias("n"), pl.col("settlement_amount").clip(0, UPPER).sum().alias("total"))
    )
    truth = {r["district"]: r for r in exact.iter_rows(named=True)}
    for mine, theirs in zip(answer.rows, reference.rows, strict=True):
        district = mine["district"]
        extra_n, extra_total = (1, UPPER) if district == HOME else (0, 0.0)  # truncated, clamped
        if district == EXCLUDED:
            expected_n, expected_total = 0, 0.0
        else:
            expected_n, expected_total = truth[district]["n"], truth[district]["total"]
        for name, extra, expected in (
            ("n", extra_n, expected_n),
            ("total", extra_total, expected_total),
        ):
            primitive = "__n" if name == "n" else "__s_settlement_amount"
            # Laplace sd is √2·b; six sd of the difference of two independent draws.
            tolerance = 6 * math.sqrt(2 * (scales[primitive] ** 2 + opendp_scales[primitive] ** 2))
            assert abs(mine[name] - extra - theirs[name]) <= tolerance + 1e-6, (district, name)
            assert abs(mine[name] - extra - expected) <= 6 * math.sqrt(2) * scales[primitive]
            assert mine[f"{name}_ci_low"] <= mine[name] <= mine[f"{name}_ci_high"]
        if district not in (HOME, EXCLUDED):
            assert mine["avg"] == pytest.approx(theirs["avg"], abs=50.0)
    # Without truncation the cheat would add 40 rows; without the clamp, 4e10.
    home = next(r for r in answer.rows if r["district"] == HOME)
    assert home["n"] < truth[HOME]["n"] + 2
    assert home["total"] < truth[HOME]["total"] + 2 * UPPER


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_file_replaced_at_the_same_path_is_answered_from_its_new_rows(
    spark: SparkEngine, policy: DatasetPolicy, files: dict[str, Path], tmp_path: Path
) -> None:
    # The driver caches each answer's truncated rows; none may outlive the answer, or
    # Spark, which finds a cache by its plan (the path), would answer from old rows.
    spec = count_of(policy)
    path = tmp_path / "health_records.parquet"
    rows = pl.read_parquet(files["good"])
    counts = []
    for size in (len(rows), len(rows) // 4):
        rows.head(size).write_parquet(path)
        counts.append(spark.answer(Source(policy, path), spec).rows[0]["n"])
    scale = 1 / EPSILON  # one row per person, all of ε on the count
    assert abs(counts[0] - len(rows)) <= 30 * scale
    assert abs(counts[1] - len(rows) // 4) <= 30 * scale


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_contribution_bound_is_counted_per_file_version(
    spark: SparkEngine, policy: DatasetPolicy, files: dict[str, Path], tmp_path: Path
) -> None:
    # The attack: a file checked once as keeping the promise, then rewritten in place
    # with a person of 40 rows. Truncation is skipped only while the promise holds.
    spec = count_of(policy)
    path = tmp_path / "health_records.parquet"
    replies = []
    for name in ("good", "bad"):
        path.write_bytes(files[name].read_bytes())
        plan = spark.plan(Source(policy, path), spec)
        plan["path"] = str(path)
        replies.append(spark.driver.request({"op": "answer", "plan": plan}))
    assert [reply["truncated"] for reply in replies] == [False, True]
    # One pass over the rows that keep the promise, Tumult's session to enforce it.
    assert [reply["one_pass"] for reply in replies] == [True, False]
    for name, noise in replies[0]["noise"].items():  # the same noise either way
        assert noise["mechanism"] == replies[1]["noise"][name]["mechanism"]
        assert noise["scale"] == pytest.approx(replies[1]["noise"][name]["scale"], rel=1e-9)
    truth = len(pl.read_parquet(files["good"]))
    scale = 1 / EPSILON
    for reply in replies:  # the cheat's 40 rows count as one
        assert abs(reply["rows"][0]["__n"] - truth) <= 1 + 30 * scale


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_nan_in_a_filtered_column_changes_a_count_by_one_row_at_most(
    spark: SparkEngine, policy: DatasetPolicy, files: dict[str, Path], tmp_path: Path
) -> None:
    # Parquet's statistics of a column with a NaN made Spark's filter pushdown skip the
    # whole row group: one row turned a count of thousands into 0, far beyond the one
    # row of sensitivity the noise is scaled to.
    rows = pl.read_parquet(files["good"])
    nan = rows.head(1).with_columns(
        pl.lit("P-NAN").alias("person_id"), pl.lit(float("nan")).alias("settlement_amount")
    )
    path = tmp_path / "health_records.parquet"
    pl.concat([rows, nan]).write_parquet(path)
    spec = parsed(
        policy,
        epsilon=EPSILON,
        filters=[{"column": "settlement_amount", "op": ">", "value": 2000}],
        statistics={"n": {"fn": "count"}},
    )
    truth = rows.filter(pl.col("settlement_amount") > 2000).height
    assert truth > 1000
    (answer,) = spark.answer(Source(policy, path), spec).rows
    assert abs(answer["n"] - truth) <= 1 + 30 / EPSILON  # the NaN row may count as > 2000


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_one_pass_adds_tumult_cores_noise_of_the_promised_scale(
    spark: SparkEngine, policy: DatasetPolicy, files: dict[str, Path]
) -> None:
    # The benchmark's query at the benchmark's ε, on a file that keeps the promise: one
    # Spark pass, then noise on the driver. Noise that is missing, or not of the scale
    # the engine checks, shows in the spread of the released values around the truth.
    spec = parsed(
        policy,
        epsilon=0.25,
        group_by=["district"],
        statistics={"n": {"fn": "count"}, "total": {"fn": "sum", "column": "settlement_amount"}},
    )
    source = Source(policy, files["good"])
    plan = spark.plan(source, spec) | {"path": str(files["good"])}
    exact = (
        pl.read_parquet(files["good"])
        .group_by("district")
        .agg(pl.len().alias("__n"), pl.col("settlement_amount").clip(0, UPPER).sum())
    )
    truth = {r["district"]: r for r in exact.iter_rows(named=True)}
    scales = {"__n": 1 / 0.125, "__s_settlement_amount": UPPER / 0.125}
    errors: dict[str, list[float]] = {name: [] for name in scales}
    for _ in range(8):
        reply = spark.driver.request({"op": "answer", "plan": plan})
        assert reply["one_pass"] is True and reply["truncated"] is False
        assert {n: v["scale"] for n, v in reply["noise"].items()} == pytest.approx(scales)
        assert {v["mechanism"] for v in reply["noise"].values()} == {"geometric", "laplace"}
        assert [row["district"] for row in reply["rows"]] == list(plan["keyset"]["district"])
        for row in reply["rows"]:
            assert isinstance(row["__n"], int)
            errors["__n"].append(row["__n"] - truth[row["district"]]["__n"])
            column = "settlement_amount"
            errors["__s_settlement_amount"].append(
                row["__s_settlement_amount"] - truth[row["district"]][column]
            )
    for name, scale in scales.items():
        # 72 draws; the mean absolute value of Laplace(b) noise is b, its sd b/√72.
        spread = float(np.mean(np.abs(errors[name])))
        assert 0.5 * scale <= spread <= 1.5 * scale, (name, spread, scale)
        assert abs(float(np.mean(errors[name]))) <= 0.6 * scale  # centred on the truth
    # With one_pass off, the same query takes Tumult's session, at the same scales.
    reply = spark.driver.request({"op": "answer", "plan": plan | {"one_pass": False}})
    assert reply["one_pass"] is False
    assert {n: v["scale"] for n, v in reply["noise"].items()} == pytest.approx(scales)


#: Run by the Tumult venv's Python, in one Spark for both cases below (the JVM's start
#: is most of its time); argument: the cases as JSON; prints the results as JSON.
IN_THE_DRIVER_VENV = """
import itertools, json, os, sys
sys.path.insert(0, sys.argv[1])
os.environ["PYSPARK_PYTHON"] = sys.executable
import tumult_driver as driver
from pyspark.sql import SparkSession
from tmlt.core.utils.grouped_dataframe import GroupedDataFrame

cases, results = json.loads(sys.argv[2]), {}
spark = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false")
spark = spark.config("spark.sql.shuffle.partitions", "1").getOrCreate()

# "core": the one-pass aggregates of a plan, and Tumult Core's CountGrouped and
# SumGrouped (whose sensitivities it uses) on the same rows, grouped by the same key set.
plan = cases["core"]
frame = driver._prepared(spark, plan, with_unit=False)
names = [key["name"] for key in plan["keys"]]
groups = list(itertools.product(*(plan["keyset"][name] for name in names)))
keys = spark.createDataFrame(groups, schema=", ".join(f"`{n}` string" for n in names))
core = [dict(zip(names, group)) for group in groups]
for primitive in plan["primitives"]:
    aggregation = driver._core_aggregation(plan, primitive)
    columns = [*names] + ([driver._summed(primitive)] if primitive["fn"] == "sum" else [])
    result = aggregation(GroupedDataFrame(frame.select(columns), keys))
    values = {tuple(row[n] for n in names): row[primitive["name"]] for row in result.collect()}
    for row, group in zip(core, groups):
        row[primitive["name"]] = values[group]
results["core"] = {"one_pass": driver._exact(plan, frame), "core": core}

# "swap": the driver's handle on a file rewritten (given a cheat of 40 rows) after its
# count and before Spark reads its rows, on each path.
plan, good, bad = cases["swap"]["plan"], cases["swap"]["good"], cases["swap"]["bad"]
prepared = driver._prepared

def swapped_then_prepared(spark, plan, **options):
    with open(bad, "rb") as source, open(plan["path"], "wb") as target:
        target.write(source.read())
    return prepared(spark, plan, **options)

replies = [driver.handle(spark, {"op": "answer", "plan": plan})]
driver._prepared = swapped_then_prepared
with open(good, "rb") as source, open(plan["path"], "wb") as target:
    target.write(source.read())  # a new version: counted again, keeps the promise
replies.append(driver.handle(spark, {"op": "answer", "plan": plan}))
with open(good, "rb") as source, open(plan["path"], "wb") as target:
    target.write(source.read())  # again, answered by Tumult's session this time
replies.append(driver.handle(spark, {"op": "answer", "plan": plan | {"one_pass": False}}))
results["swap"] = [{k: r.get(k) for k in ("ok", "truncated", "error")} for r in replies]
print(json.dumps(results))
"""


def core_case(policy: DatasetPolicy, folder: Path) -> dict[str, Any]:
    """A plan of counts and sums (of squares too) over rows that each need a rule: keys
    outside the key set, null keys, a public key with no rows, null and NaN values,
    values beyond the clamping bounds."""
    keys = list(policy.fields["district"].dp.public_keys)  # type: ignore[union-attr]
    district = [*keys[:-1] * 3, "外省", None, keys[0], keys[1], keys[2], keys[3]]
    n = len(district)
    amount = [float(i * 997 % 7000) for i in range(n)]
    amount[-4:] = [None, float("nan"), -500.0, 9e9]
    dosage = [float(i * 131 % 2500) for i in range(n)]
    dosage[:4] = [None, float("nan"), -3.0, 1e7]
    path = folder / "health_records.parquet"
    pl.DataFrame(
        {
            "person_id": [f"P{i}" for i in range(n)],
            "district": district,
            "sex": (["M", "F", None] * n)[:n],
            "dosage_mg": dosage,
            "settlement_amount": amount,
        },
        strict=False,
    ).write_parquet(path)
    spec = parsed(
        policy,
        epsilon=1.0,
        filters=[{"column": "sex", "op": "!=", "value": "F"}],
        group_by=["district", {"column": "dosage_mg", "bins": [0, 1000]}],
        statistics={
            "n": {"fn": "count"},
            "total": {"fn": "sum", "column": "settlement_amount"},
            "spread": {"fn": "variance", "column": "dosage_mg"},
        },
    )
    engine = SparkEngine(Shuyu(home=str(folder / "home")), master="local[1]")
    return engine.plan(Source(policy, path), spec) | {"path": str(path)}


@pytest.fixture(scope="module")
def in_the_driver_venv(
    policy: DatasetPolicy, files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The results of :data:`IN_THE_DRIVER_VENV`, run by the driver's Python."""
    core, swap = tmp_path_factory.mktemp("core"), tmp_path_factory.mktemp("swap")
    path = swap / "health_records.parquet"
    path.write_bytes(files["good"].read_bytes())
    engine = SparkEngine(Shuyu(home=str(swap / "home")), master="local[1]")
    plan = engine.plan(Source(policy, path), count_of(policy)) | {"path": str(path)}
    cases = {
        "core": core_case(policy, core),
        "swap": {"plan": plan, "good": str(files["good"]), "bad": str(files["bad"])},
    }
    done = subprocess.run(
        [
            engine.settings.spark_python,
            "-c",
            IN_THE_DRIVER_VENV,
            str(REPO / "hub" / "shuyu_platform" / "dp"),
            json.dumps(cases),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
        cwd=swap,  # Tumult's temporary tables go to Spark's warehouse in the cwd
    )
    return {"cases": cases, **json.loads(done.stdout.strip().splitlines()[-1])}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_one_pass_computes_what_tumult_cores_aggregations_compute(
    policy: DatasetPolicy, in_the_driver_venv: dict[str, Any]
) -> None:
    plan = in_the_driver_venv["cases"]["core"]
    assert {p["fn"] for p in plan["primitives"]} == {"count", "sum"}
    assert any(p.get("square") for p in plan["primitives"])
    mine, core = in_the_driver_venv["core"]["one_pass"], in_the_driver_venv["core"]["core"]
    keys = list(policy.fields["district"].dp.public_keys)  # type: ignore[union-attr]
    assert len(mine) == len(keys) * 3  # every district, three dosage bins
    for ours, theirs in zip(mine, core, strict=True):
        assert ours.keys() == theirs.keys()
        for name, value in theirs.items():
            if name.startswith("__"):
                assert ours[name] == pytest.approx(value, rel=1e-12), (theirs, name)
            else:
                assert ours[name] == value  # the group's key
    # Counted: a public district, sex M (a null matches no comparison), a dosage to bin.
    rows = pl.read_parquet(plan["path"])
    kept = [
        d in keys and s == "M" and x is not None and not math.isnan(x)
        for d, s, x in zip(rows["district"], rows["sex"], rows["dosage_mg"], strict=True)
    ]
    assert sum(row["__n"] for row in mine) == sum(kept) > 0
    assert any(row["__n"] == 0 for row in mine)  # the empty district, and more


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_file_rewritten_between_its_count_and_its_read_is_not_released(
    in_the_driver_venv: dict[str, Any],
) -> None:
    # Spark reads rows lazily, after the count that decided to skip the truncation: a
    # file replaced in between would be answered from unchecked rows, untruncated.
    first, *swapped = in_the_driver_venv["swap"]
    assert first == {"ok": True, "truncated": False, "error": None}
    assert len(swapped) == 2  # one pass, then Tumult's session
    for reply in swapped:
        assert reply["ok"] is False and "changed" in reply["error"]


def conf_of(engine: SparkEngine) -> dict[str, str]:
    """The driver's Spark properties, as its command line passes them."""
    command = engine.driver.command
    pairs = [command[i + 1] for i, arg in enumerate(command) if arg == "--conf"]
    keys = [pair.partition("=")[0] for pair in pairs]
    assert len(keys) == len(set(keys))  # each property once: what the driver runs with
    return dict(pair.split("=", 1) for pair in pairs)


def test_shuffle_partitions_follow_a_local_master_unless_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert [local_cores(m) for m in ("local", "local[3]", "local[4,2]", "spark://h:7077")] == [
        1,
        3,
        4,
        None,
    ]
    monkeypatch.setattr("os.cpu_count", lambda: 6)
    assert local_cores("local[*]") == 6
    home = str(tmp_path)
    local = conf_of(SparkEngine(Shuyu(home=home), master="local[2]"))
    assert local["spark.sql.shuffle.partitions"] == "2"
    assert local["spark.sql.adaptive.enabled"] == "true"
    assert local["spark.sql.adaptive.coalescePartitions.enabled"] == "true"
    assert local["spark.ui.enabled"] == "false"
    cluster = conf_of(SparkEngine(Shuyu(home=home), master="spark://spark-master:7077"))
    assert "spark.sql.shuffle.partitions" not in cluster  # Spark's own default
    # The operator's setting wins over the default, and the engine's argument over both.
    settings = Shuyu(home=home, spark_conf=["spark.sql.shuffle.partitions=64"])
    assert conf_of(SparkEngine(settings, master="local[2]"))["spark.sql.shuffle.partitions"] == "64"
    engine = SparkEngine(settings, master="local[2]", conf=["spark.sql.adaptive.enabled=false"])
    assert conf_of(engine)["spark.sql.adaptive.enabled"] == "false"
    # The benchmark's plain Spark SQL gets the same properties as the engine's driver.
    assert spark_properties("local[2]", settings.spark_conf) == [
        f"{k}={v}" for k, v in conf_of(SparkEngine(settings, master="local[2]")).items()
    ]


def test_spark_properties_are_checked_when_configured() -> None:
    with pytest.raises(ValueError, match=r"spark\.key=value"):
        Shuyu(spark_conf=["spark.executor.memory=8g", "--jars=/tmp/evil.jar"])


def test_a_missing_driver_or_raw_file_is_a_clear_503_before_spark(
    tmp_path: Path, policy: DatasetPolicy, files: dict[str, Path]
) -> None:
    spec = spec_of(policy)
    settings = Shuyu(home=str(tmp_path), spark_python=str(tmp_path / "no-such-python"))
    engine = SparkEngine(settings)
    with pytest.raises(EngineError, match="raw data of health_records is not available") as err:
        engine.estimate(Source(policy, tmp_path / "missing.parquet"), spec)
    assert err.value.status == 503
    with pytest.raises(EngineError, match=r"cannot start the Spark driver.*make install-tumult"):
        engine.answer(Source(policy, files["good"]), spec)


def test_a_join_with_an_import_is_refused_before_anything_is_spent(
    tmp_path: Path, policy: DatasetPolicy, files: dict[str, Path]
) -> None:
    # Answered over every row, the join's restriction would silently be lost.
    engine = SparkEngine(Shuyu(home=str(tmp_path)))
    members = Members("person_id", b"k" * 32, frozenset({"I-0"}))
    source = Source(policy, files["good"], members=members)
    for call in (engine.estimate, engine.answer):
        with pytest.raises(EngineError, match="joined with an import") as err:
            call(source, spec_of(policy))
        assert err.value.status == 422
    assert engine.driver.process is None


def test_the_service_loads_it_by_name_from_its_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHUYU_HOME", str(tmp_path))
    monkeypatch.setenv("SHUYU_SPARK_MASTER", "spark://spark-master:7077")
    monkeypatch.setenv("SHUYU_SPARK_CONF", "spark.executor.memory=8g spark.executor.cores=4")
    engine = load_engine("shuyu_platform.dp.spark_engine:SparkEngine")
    assert isinstance(engine, SparkEngine) and engine.name == "tumult-spark"
    command = engine.driver.command
    assert command[command.index("--master") + 1] == "spark://spark-master:7077"
    assert "spark.executor.memory=8g" in command and "spark.executor.cores=4" in command
    assert engine.driver.process is None  # Spark starts on the first answer, not before
