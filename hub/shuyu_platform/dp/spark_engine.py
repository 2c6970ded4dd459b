"""The DP engine for data beyond one machine: Tumult Analytics on Apache Spark.

Choose it with ``c.Shuyu.dp_engine = "shuyu_platform.dp.spark_engine:SparkEngine"``.
It answers the same checked :class:`~.query.QuerySpec` as the OpenDP engine, under the
same policy bounds (privacy unit and ``max_contributions``, clamping bounds, public key
sets, the query's ε), and like every engine it only computes: the ledger debits and the
audit chain stay in the DP service (:mod:`.budget`, ``service/dp_api.py``).

Tumult pins older pandas, numpy and PySpark than the platform, so Tumult runs in a venv
of its own (``.venv-tumult``, ``Shuyu.spark_python``) as a Spark driver process,
:mod:`.tumult_driver`, that this engine starts on first use and talks to over a pipe
(one JSON line per request and reply; the driver's docstring says why a pipe). Spark
runs where ``Shuyu.spark_master`` says: ``local[*]`` on this machine, or a cluster.

The query is decomposed into the same noisy primitives as the OpenDP engine's (a row
count, clamped sums of a column and of its square, quantiles), each spending an equal
share of ε; means and variances are post-processing, with intervals simulated from the
known noise exactly as the OpenDP engine does. The noise scales are known before any row
is read (count: ``k / ε_i``, discrete Laplace; sum over ``[low, high]``:
``k · max(|low|, |high|) / ε_i``, Laplace; ``k`` the contribution bound), so a preview
needs no Spark at all, and each answer checks that Tumult used exactly those scales.

The policy promises that no privacy unit has more than ``max_contributions`` rows. The
OpenDP engine checks that on the platform's machine and refuses a file that breaks it;
this engine has Spark count it instead, once per file version (one aggregation over the
unit column, remembered by the driver), since a Spark-sized file is no file to scan on
the platform's machine. A file that keeps the promise is answered as the OpenDP engine
would, with no truncation (Tumult's truncation sorts every row by unit, and was most of
an answer's time); one that breaks it is still answered, with the bound enforced by
Tumult's ``MaxRowsPerID``, which drops the excess rows. Counts and sums over a file
that keeps the promise are answered from one Spark pass with Tumult Core's noise
(``Shuyu.spark_one_pass``), everything else by a Tumult Analytics session. Every path
adds noise of the same scales; :mod:`.tumult_driver` has the details.
"""

from __future__ import annotations

import atexit
import itertools
import json
import math
import os
import queue
import re
import subprocess
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import numpy as np
import polars as pl

from ..core.settings import Shuyu
from .engine import Answer, Engine, EngineError, Estimate, Source
from .opendp_engine import (
    _Column,
    _len_name,
    _quantile_name,
    _square_name,
    _sum_name,
    _values,
    preview_statistics,
    release_statistic,
)
from .query import Bins, QuerySpec

#: The driver, run as a script by the Tumult venv's Python (it imports no platform code).
DRIVER = Path(__file__).with_name("tumult_driver.py")
#: Seconds to wait for Spark to start, and for one answer.
START_SECONDS = 300.0
ANSWER_SECONDS = 3600.0
#: Spark properties of every driver (``Shuyu.spark_conf`` adds to or overrides them):
#: no web UI; adaptive execution on (Spark's default since 3.2, stated so that it holds),
#: merging small shuffle partitions; no filter pushdown into Parquet, whose statistics
#: of a float column holding a NaN made Spark skip whole row groups (one NaN row turned
#: a filtered count of 14,778 into 0, while the noise covers a change of one row). See
#: :func:`spark_properties` for shuffle partitions.
DEFAULT_CONF = (
    "spark.ui.enabled=false",
    "spark.sql.adaptive.enabled=true",
    "spark.sql.adaptive.coalescePartitions.enabled=true",
    "spark.sql.parquet.filterPushdown=false",
)
SHUFFLE_PARTITIONS = "spark.sql.shuffle.partitions"
_LOCAL = re.compile(r"local(?:\[(\*|\d+)(?:,\s*\d+)?\])?")
_DISTRIBUTION = {
    "count": "discrete Laplace (Tumult, geometric)",
    "sum": "Laplace (Tumult, float)",
    "quantile": "exponential mechanism (Tumult)",
}


def local_cores(master: str) -> int | None:
    """The cores of a local master (``local``, ``local[N]``, ``local[*]``,
    ``local[N,F]``), or None for a cluster's."""
    match = _LOCAL.fullmatch(master.strip())
    if match is None:
        return None
    cores = match.group(1)
    if cores is None:
        return 1
    return (os.cpu_count() or 1) if cores == "*" else max(1, int(cores))


def spark_properties(master: str, *overrides: Iterable[str]) -> list[str]:
    """The driver's Spark properties: defaults, then each list of ``overrides`` in turn.

    A local master gets one shuffle partition per core instead of Spark's 200: the
    truncation by privacy unit that every answer caches ends in a shuffle, a cached
    plan keeps its partitions (adaptive execution does not merge them), so each later
    stage over it ran 200 tasks on a machine of a few cores; measured on 200,000 rows,
    ``local[2]``, an answer took about 16 s of CPU with 200 partitions, 7 s with 2.
    A cluster keeps Spark's default (or what ``spark_conf`` says). Later entries win;
    each key appears once, so the driver's command line shows what it runs with.
    """
    merged = dict(pair.split("=", 1) for pair in DEFAULT_CONF)
    cores = local_cores(master)
    if cores is not None:
        merged[SHUFFLE_PARTITIONS] = str(cores)
    for pairs in overrides:
        for pair in pairs:
            key, _, value = pair.partition("=")
            merged[key] = value
    return [f"{key}={value}" for key, value in merged.items()]


class Driver:
    """One Tumult Spark driver process and its request/reply pipe.

    Requests are serialised (one lock); a reader thread hands reply lines to a queue so
    a wait can time out. A driver that died or timed out is killed and the request
    fails with :class:`~.engine.EngineError`; the next request starts a fresh one.
    """

    def __init__(self, command: list[str], log_path: Path | None) -> None:
        self.command = command
        self.log_path = log_path
        self.process: subprocess.Popen[str] | None = None
        self.replies: queue.Queue[str | None] = queue.Queue()
        self.lock = threading.Lock()
        self.versions: dict[str, Any] = {}

    def _start(self) -> None:
        log: IO[Any] | int = subprocess.DEVNULL
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                encoding="utf-8",
                bufsize=1,
            )
        except OSError as err:
            raise EngineError(
                f"cannot start the Spark driver ({self.command[0]}): {err}; "
                "run `make install-tumult` or set c.Shuyu.spark_python"
            ) from None
        finally:
            if not isinstance(log, int):
                log.close()
        self.replies = queue.Queue()
        threading.Thread(target=self._read, args=(self.process,), daemon=True).start()
        self.versions = self._reply(START_SECONDS)

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.replies.put(line)
        self.replies.put(None)

    def _reply(self, timeout: float) -> dict[str, Any]:
        try:
            line = self.replies.get(timeout=timeout)
        except queue.Empty:
            self.close()
            raise EngineError(f"the Spark driver gave no answer in {timeout:.0f} s") from None
        if line is None:
            self.close()
            raise EngineError(f"the Spark driver stopped; see {self.log_path}")
        reply: dict[str, Any] = json.loads(line)
        if not reply.get("ok"):
            raise EngineError(f"the Spark engine failed: {reply.get('error')}")
        return reply

    def request(self, body: dict[str, Any], timeout: float = ANSWER_SECONDS) -> dict[str, Any]:
        """Send one request and wait for its reply (starting the driver if needed)."""
        with self.lock:
            if self.process is None or self.process.poll() is not None:
                self._start()
            assert self.process is not None and self.process.stdin is not None
            try:
                self.process.stdin.write(json.dumps(body) + "\n")
                self.process.stdin.flush()
            except OSError:
                self.close()
                raise EngineError(f"the Spark driver stopped; see {self.log_path}") from None
            return self._reply(timeout)

    def close(self) -> None:
        """End the driver: end of input first, then a kill if it lingers."""
        process, self.process = self.process, None
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.close()
            process.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()


class SparkEngine:
    """Tumult Analytics on Spark, in a driver process of its own venv."""

    name = "tumult-spark"

    def __init__(
        self,
        settings: Shuyu | None = None,
        *,
        master: str | None = None,
        conf: list[str] | None = None,
    ) -> None:
        self.settings = settings or Shuyu()
        self.master = master or self.settings.spark_master
        properties = spark_properties(self.master, self.settings.spark_conf, conf or [])
        command = [self.settings.spark_python, str(DRIVER), "--master", self.master]
        for pair in properties:
            command += ["--conf", pair]
        log = self.settings.zone("logs") / "dp-spark-driver.log"
        self.driver = Driver(command, log)
        atexit.register(self.driver.close)

    def close(self) -> None:
        """Stop the driver (it restarts on the next answer)."""
        self.driver.close()

    # ---------------------------------------------------------------------- plans
    def _location(self, source: Source) -> str:
        """Where Spark reads the raw file: shared storage if configured, else its path."""
        base = self.settings.spark_raw_url.rstrip("/")
        if base:
            return f"{base}/{source.policy.raw_file}"
        if not source.path.is_file():
            raise EngineError(
                f"the raw data of {source.policy.dataset} is not available; tell the operator"
            )
        return str(source.path)

    def plan(self, source: Source, spec: QuerySpec) -> dict[str, Any]:
        """The driver's plan of ``spec``: rows, keys and primitives, all from the policy."""
        if source.members is not None:
            # The import's pseudonyms would have to be recomputed over the raw rows in
            # Spark, with the platform's keyed function; refused before any ε is spent,
            # never answered over every row as though the join were not there.
            raise EngineError(
                "the Spark engine does not answer queries joined with an import; "
                "ask without the join",
                status=422,
            )
        policy = source.policy
        columns = {
            s.column: _Column.of(policy, s.column) for s in spec.statistics if s.column is not None
        }
        primitives: list[dict[str, Any]] = []
        if any(s.fn in ("count", "mean", "variance") for s in spec.statistics):
            primitives.append({"name": _len_name(), "fn": "count"})
        for name in sorted(
            {s.column for s in spec.statistics if s.fn in ("sum", "mean", "variance")}
        ):
            c = columns[name]
            bounds = [c.lower, c.upper]
            primitives.append(
                {
                    "name": _sum_name(name),
                    "fn": "sum",
                    "column": name,
                    "bounds": bounds,
                    "low": c.lower,
                    "high": c.upper,
                }
            )
        for name in sorted({s.column for s in spec.statistics if s.fn == "variance"}):
            c = columns[name]
            low = 0.0 if c.lower <= 0 <= c.upper else min(c.lower**2, c.upper**2)
            primitives.append(
                {
                    "name": _square_name(name),
                    "fn": "sum",
                    "column": name,
                    "square": True,
                    "bounds": [c.lower, c.upper],
                    "low": low,
                    "high": max(c.lower**2, c.upper**2),
                }
            )
        for s in spec.statistics:
            if s.fn == "quantile":
                c = columns[s.column or ""]
                primitives.append(
                    {
                        "name": _quantile_name(s),
                        "fn": "quantile",
                        "column": c.name,
                        "q": s.q,
                        "bounds": [c.lower, c.upper],
                        "low": c.lower,
                        "high": c.upper,
                    }
                )
        keys: list[dict[str, Any]] = []
        keyset: dict[str, list[str]] = {}
        for key in spec.group_by:
            if isinstance(key, Bins):
                keys.append({"name": key.name, "column": key.column, "edges": list(key.edges),
                             "labels": list(key.labels)})  # fmt: skip
                keyset[key.name] = list(key.labels)
            else:
                settings = policy.fields[key].dp
                assert settings is not None and settings.public_keys is not None
                keys.append({"name": key, "column": key})
                keyset[key] = [str(v) for v in settings.public_keys]
        return {
            "row_filter": {k: list(v) for k, v in source.row_filter.items()},
            "filters": [f.as_dict() for f in spec.filters],
            "unit": policy.privacy.privacy_unit,
            "contributions": source.contributions,
            "keys": keys,
            "keyset": keyset,
            "primitives": primitives,
            "epsilon": spec.epsilon / len(primitives),
            "one_pass": self.settings.spark_one_pass,
        }

    def _noise(self, plan: dict[str, Any], alpha: float) -> dict[str, dict[str, Any]]:
        """Per primitive: distribution, scale and interval half-width, before any row."""
        epsilon, k = plan["epsilon"], plan["contributions"]
        noise: dict[str, dict[str, Any]] = {}
        for p in plan["primitives"]:
            half: float | None = None
            if p["fn"] == "count":
                scale = k / epsilon
                # discrete Laplace: smallest t with P(|X| > t) <= alpha
                tail = scale * math.log(2 / (alpha * (1 + math.exp(-1 / scale))))
                half = float(max(0, math.ceil(tail) - 1))
            elif p["fn"] == "sum":
                scale = k * max(abs(p["low"]), abs(p["high"])) / epsilon
                half = scale * math.log(1 / alpha)
            else:
                scale = None  # the exponential mechanism's error depends on the data
            noise[p["name"]] = {
                "primitive": p["name"],
                "aggregate": p["fn"],
                "distribution": _DISTRIBUTION[p["fn"]],
                "scale": scale,
                "ci_half_width": half,
            }
        return noise

    # -------------------------------------------------------------------- Engine
    def estimate(self, source: Source, spec: QuerySpec) -> Estimate:
        """Cost and expected accuracy; computed from the policy alone (no Spark, no row)."""
        self._location(source)
        plan = self.plan(source, spec)
        return self._estimate(source, spec, self._noise(plan, spec.alpha))

    def _estimate(
        self, source: Source, spec: QuerySpec, noise: dict[str, dict[str, Any]]
    ) -> Estimate:
        columns = {
            s.column: _Column.of(source.policy, s.column) for s in spec.statistics if s.column
        }
        return Estimate(
            epsilon=spec.epsilon,
            alpha=spec.alpha,
            noise=list(noise.values()),
            statistics=preview_statistics(spec, columns, noise),
        )

    def answer(self, source: Source, spec: QuerySpec) -> Answer:
        """Release the noisy answer (the caller has debited the ledger)."""
        plan = self.plan(source, spec)
        plan["path"] = self._location(source)
        noise = self._noise(plan, spec.alpha)
        reply = self.driver.request({"op": "answer", "plan": plan})
        for name, used in reply["noise"].items():
            promised = noise[name]["scale"]
            if promised is not None and not math.isclose(used["scale"], promised, rel_tol=1e-9):
                raise EngineError(
                    f"Tumult used noise of scale {used['scale']} for {name}, the plan "
                    f"promised {promised}; nothing is released",
                    status=500,
                )
        estimate = self._estimate(source, spec, noise)
        key_names = spec.key_names()
        if key_names:  # public key order, every group present
            order = pl.DataFrame(
                list(itertools.product(*plan["keyset"].values())),
                schema=dict.fromkeys(key_names, pl.String),
                orient="row",
            )
            released = order.join(
                pl.DataFrame(reply["rows"], infer_schema_length=None),
                on=key_names,
                how="left",
                maintain_order="left",
            )
        else:
            released = pl.DataFrame(reply["rows"], infer_schema_length=None)
        columns = {
            s.column: _Column.of(source.policy, s.column) for s in spec.statistics if s.column
        }
        rng = np.random.default_rng()
        n = _values(released, _len_name())
        table: dict[str, list[Any]] = {k: released[k].to_list() for k in key_names}
        names = list(key_names)
        for s in spec.statistics:
            c = columns.get(s.column or "")
            total = _values(released, _sum_name(c.name)) if c else None
            squares = _values(released, _square_name(c.name)) if c else None
            quantiles = released[_quantile_name(s)].to_list() if s.fn == "quantile" else None
            value, low, high = release_statistic(
                s, c, noise, spec.alpha, rng, n=n, total=total, squares=squares,
                quantiles=quantiles,
            )  # fmt: skip
            table[s.name], table[f"{s.name}_ci_low"], table[f"{s.name}_ci_high"] = value, low, high
            names += [s.name, f"{s.name}_ci_low", f"{s.name}_ci_high"]
        rows = [
            dict(zip(names, values, strict=True))
            for values in zip(*(table[c] for c in names), strict=True)
        ]
        return Answer(estimate=estimate, columns=names, rows=rows)


_: type[Engine] = SparkEngine  # it implements the protocol
