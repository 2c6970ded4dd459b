"""The default DP engine: OpenDP's Polars measurements over the raw Parquet, in process.

How a query becomes one OpenDP measurement:

1. The :class:`~.engine.Source` scans the raw file lazily and applies the grant's rows
   and the tenant's filters (row-by-row transformations, so they keep the guarantee).
2. Each requested statistic is decomposed into noisy *primitives* that OpenDP releases:
   a row count (``pl.len().dp.noise()``), integer sums (``dp.sum``) of the column and
   of its square, and quantiles (``dp.quantile``, the exponential mechanism). Columns
   are clamped to the policy's bounds and, for sums, put in integer units of a fixed
   resolution (0.01 for floats, 1 for integers) first: OpenDP's integer sums have an
   exact sensitivity, where float sums pay for rounding error that grows with the row
   count. A mean is sum / count, a variance sum-of-squares / count − mean², both
   post-processing of released values.
3. Groups come from the policy's public key sets (or the tenant's histogram bins) and
   are joined to the answer as an explicit key set, so a group with no rows gets a
   noisy zero and which groups exist is never revealed.
4. OpenDP builds the measurement for the plan with one *global scale*; its privacy
   loss is proportional to 1/scale, so the engine measures the loss at scale 1 and
   solves for the scale that spends exactly the query's ε (three constructions, not
   OpenDP's generic binary search, which builds the measurement ~1000 times and made
   a query take a second). OpenDP's own ``map`` then confirms the loss is ≤ ε.

The privacy unit is the policy's (``dp.unit_of(contributions=max_contributions)``;
:class:`~.engine.Source` checks the data keeps that promise). Nulls in a summed column
count as the column's lower bound; filter with ``not_null`` to leave them out.

OpenDP flags, enabled here and only here: ``contrib``, because OpenDP marks its Polars
integration as not yet vetted by its maintainers; and ``honest-but-curious``, which lets
the engine take the released plan out of OpenDP's ``OnceFrame`` and run it on the
Polars wheel's streaming engine (the noise is still added by OpenDP's Polars plugin).
OpenDP's guarantee then holds on two conditions, both kept by this service and never
by tenant code: the plan is collected exactly once, and the order of its rows is not
observed (the answer is re-joined to the public key set in policy order). A plan with
a quantile cannot leave the ``OnceFrame`` (OpenDP cannot serialise its scoring function),
so OpenDP collects those itself.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import opendp.prelude as dp
import polars as pl
from opendp.accuracy import summarize_polars_measurement
from opendp.extras.polars import Margin

from ..data.policy import DatasetPolicy
from .engine import MAX_ROWS, Answer, Estimate, Source
from .query import Bins, QuerySpec, Statistic

dp.enable_features("contrib", "honest-but-curious")

#: Resolution of summed values, by column type (integer units OpenDP sums exactly).
RESOLUTION = {"int": 1.0, "float": 0.01}
#: Candidates of the exponential-mechanism quantile, evenly spaced over the bounds.
QUANTILE_CANDIDATES = 201
#: Group sizes at which a preview states the expected interval of means and variances.
PREVIEW_GROUP_SIZES = (100, 1_000, 10_000)
#: Monte Carlo draws used to turn noise scales into intervals of means and variances.
DRAWS = 4_000
_INT_CAP = 2**62  # headroom below i64::MAX for OpenDP's overflow check


@dataclass(frozen=True)
class _Column:
    """A numeric column as the engine sums it: bounds and integer resolutions."""

    name: str
    lower: float
    upper: float
    resolution: float  # of the value
    square_resolution: float  # of its square

    @classmethod
    def of(cls, policy: DatasetPolicy, name: str) -> _Column:
        field = policy.fields[name]
        assert field.dp is not None and field.dp.lower is not None and field.dp.upper is not None
        lower, upper = field.dp.lower, field.dp.upper
        base = RESOLUTION["int" if field.type == "int" else "float"]
        biggest = max(abs(lower), abs(upper))
        resolution = max(base, biggest * MAX_ROWS / _INT_CAP)
        square_resolution = max(base * base, biggest * biggest * MAX_ROWS / _INT_CAP)
        return cls(name, lower, upper, resolution, square_resolution)

    @property
    def value(self) -> pl.Expr:
        """The column clamped to its bounds, nulls (and NaN) as the lower bound."""
        return (
            pl.col(self.name)
            .cast(pl.Float64)
            .fill_nan(None)
            .fill_null(self.lower)
            .clip(self.lower, self.upper)
        )

    def sum_bounds(self) -> tuple[int, int]:
        return math.floor(self.lower / self.resolution), math.ceil(self.upper / self.resolution)

    def square_bounds(self) -> tuple[int, int]:
        low = 0.0 if self.lower <= 0 <= self.upper else min(self.lower**2, self.upper**2)
        high = max(self.lower**2, self.upper**2)
        r = self.square_resolution
        return math.floor(low / r), math.ceil(high / r)

    @property
    def spread(self) -> float:
        """Largest possible variance of a clamped value."""
        return ((self.upper - self.lower) / 2) ** 2


def _len_name() -> str:
    return "__n"


def _sum_name(column: str) -> str:
    return f"__s_{column}"


def _square_name(column: str) -> str:
    return f"__ss_{column}"


def _quantile_name(statistic: Statistic) -> str:
    return f"__q_{statistic.name}"


class _Plan:
    """One query as an OpenDP measurement over a prepared frame."""

    def __init__(self, source: Source, spec: QuerySpec) -> None:
        self.source = source
        self.spec = spec
        policy = source.policy
        self.columns: dict[str, _Column] = {}
        for statistic in spec.statistics:
            if statistic.column is not None:
                self.columns[statistic.column] = _Column.of(policy, statistic.column)
        # Primitives: output name -> (kind, column, Polars aggregate).
        self.needs_len = any(s.fn in ("count", "mean", "variance") for s in spec.statistics)
        self.sums = sorted(
            {s.column for s in spec.statistics if s.fn in ("sum", "mean", "variance")}
        )
        self.squares = sorted({s.column for s in spec.statistics if s.fn == "variance"})
        self.quantiles = [s for s in spec.statistics if s.fn == "quantile"]
        self.key_names = spec.key_names()
        self.keys = self._key_frame(policy)

    # ------------------------------------------------------------------ preparation
    def _key_frame(self, policy: DatasetPolicy) -> pl.DataFrame | None:
        if not self.spec.group_by:
            return None
        sets: list[tuple[str, ...]] = []
        for key in self.spec.group_by:
            if isinstance(key, Bins):
                sets.append(key.labels)
            else:
                settings = policy.fields[key].dp
                assert settings is not None and settings.public_keys is not None
                sets.append(settings.public_keys)
        rows = list(itertools.product(*sets))
        return pl.DataFrame(rows, schema=dict.fromkeys(self.key_names, pl.String), orient="row")

    def prepared_columns(self) -> list[pl.Expr]:
        """Row-by-row preparation of the raw columns the measurement reads."""
        exprs: list[pl.Expr] = []
        for key in self.spec.group_by:
            if isinstance(key, Bins):
                exprs.append(
                    pl.col(key.column)
                    .cast(pl.Float64)
                    .cut(list(key.edges), labels=list(key.labels), left_closed=True)
                    .cast(pl.String)
                    .alias(key.name)
                )
            else:
                exprs.append(pl.col(key).cast(pl.String))
        for name in self.sums:
            c = self.columns[name]
            exprs.append((c.value / c.resolution).round().cast(pl.Int64).alias(_sum_name(name)))
        for name in self.squares:
            c = self.columns[name]
            exprs.append(
                (c.value * c.value / c.square_resolution)
                .round()
                .cast(pl.Int64)
                .alias(_square_name(name))
            )
        for statistic in self.quantiles:
            assert statistic.column is not None
            exprs.append(self.columns[statistic.column].value.alias(_quantile_name(statistic)))
        if not exprs:  # a plain count still needs one column per row (a literal is one row)
            first = next(iter(self.source.policy.fields))
            exprs.append(pl.col(first).is_null().cast(pl.Int32).alias("__row"))
        return exprs

    def aggregates(self) -> list[pl.Expr]:
        """The noisy primitives, as OpenDP Polars expressions."""
        aggs: list[pl.Expr] = []
        if self.needs_len:
            aggs.append(pl.len().dp.noise().alias(_len_name()))
        for name in self.sums:
            aggs.append(pl.col(_sum_name(name)).dp.sum(self.columns[name].sum_bounds()))
        for name in self.squares:
            aggs.append(pl.col(_square_name(name)).dp.sum(self.columns[name].square_bounds()))
        for statistic in self.quantiles:
            assert statistic.column is not None and statistic.q is not None
            c = self.columns[statistic.column]
            candidates = np.linspace(c.lower, c.upper, QUANTILE_CANDIDATES).tolist()
            aggs.append(
                pl.col(_quantile_name(statistic))
                .dp.quantile(statistic.q, candidates)
                .alias(_quantile_name(statistic))
            )
        return aggs

    def data(self) -> pl.LazyFrame:
        """The prepared rows the measurement is applied to."""
        return self.source.rows(self.spec.filters).select(self.prepared_columns())

    # ----------------------------------------------------------------- measurement
    def measurement(self, schema: pl.Schema) -> dp.Measurement:
        """The OpenDP measurement spending exactly (at most) ``spec.epsilon``."""
        empty = pl.LazyFrame(schema=schema)
        domain = dp.domain_of(empty, infer=True)
        for by in ([], self.key_names) if self.key_names else ([],):
            domain = dp.with_margin(domain, Margin(by=list(by), max_length=MAX_ROWS))
        metric, d_in = dp.unit_of(contributions=self.source.contributions)
        aggs = self.aggregates()
        if self.keys is None:
            plan = empty.select(aggs)
        else:
            plan = self.keys.lazy().join(
                empty.group_by(self.key_names).agg(aggs),
                how="left",
                on=self.key_names,
                nulls_equal=True,
            )

        def make(scale: float) -> dp.Measurement:
            return dp.m.make_private_lazyframe(
                domain, metric, dp.max_divergence(), plan, global_scale=scale
            )

        epsilon = self.spec.epsilon
        scale = make(1.0).map(d_in) / epsilon
        measurement = make(scale)
        while measurement.map(d_in) > epsilon:  # float rounding; at most a step or two
            scale *= 1 + 1e-9
            measurement = make(scale)
        return measurement


class OpenDpEngine:
    """OpenDP on Polars, in this process: the embedded default engine."""

    name = "opendp-polars"

    def _noise(self, plan: _Plan, measurement: dp.Measurement) -> dict[str, dict[str, Any]]:
        """Per primitive: distribution, scale and interval half-width in column units."""
        summary = summarize_polars_measurement(measurement, plan.spec.alpha)
        noise: dict[str, dict[str, Any]] = {}
        for row in summary.iter_rows(named=True):
            name = row["column"]
            unit = 1.0
            if name.startswith("__ss_"):
                unit = plan.columns[name[5:]].square_resolution
            elif name.startswith("__s_"):
                unit = plan.columns[name[4:]].resolution
            elif name.startswith("__q_"):
                unit = 0.0  # the exponential mechanism's "scale" is not in value units
            accuracy = row.get("accuracy")
            noise[name] = {
                "primitive": name,
                "aggregate": row["aggregate"],
                "distribution": row["distribution"],
                "scale": row["scale"] * unit if unit else row["scale"],
                "ci_half_width": accuracy * unit if accuracy is not None and unit else None,
            }
        return noise

    def _plan(self, source: Source, spec: QuerySpec) -> tuple[_Plan, dp.Measurement, pl.LazyFrame]:
        plan = _Plan(source, spec)
        data = plan.data()
        return plan, plan.measurement(data.collect_schema()), data

    def estimate(self, source: Source, spec: QuerySpec) -> Estimate:
        """Cost and expected accuracy; builds the measurement but reads no row."""
        plan, measurement, _ = self._plan(source, spec)
        return self._estimate(plan, measurement)

    def _estimate(self, plan: _Plan, measurement: dp.Measurement) -> Estimate:
        noise = self._noise(plan, measurement)
        return Estimate(
            epsilon=plan.spec.epsilon,
            alpha=plan.spec.alpha,
            noise=list(noise.values()),
            statistics=preview_statistics(plan.spec, plan.columns, noise),
        )

    def answer(self, source: Source, spec: QuerySpec) -> Answer:
        """Release the noisy answer (the caller has debited the ledger)."""
        plan, measurement, data = self._plan(source, spec)
        estimate = self._estimate(plan, measurement)
        # OpenDP's OnceFrame.collect() runs the plan with the Polars built into OpenDP's
        # library, about 3x slower than the Polars wheel's streaming engine on 10M rows.
        # The service runs each plan exactly once and never exposes row order (the answer
        # is re-joined to the public keys below), the two conditions OpenDP states for
        # collecting the plan itself; see the module docstring.
        # Plans with a quantile hold a function OpenDP cannot hand out; OpenDP runs those.
        once = measurement(data)
        released = once.collect() if plan.quantiles else once.lazy().collect(engine="streaming")
        if plan.keys is not None:  # public key order, not the join's
            released = plan.keys.join(
                released, on=plan.key_names, how="left", maintain_order="left"
            )
        noise = {entry["primitive"]: entry for entry in estimate.noise}
        rng = np.random.default_rng()
        n = _values(released, _len_name())
        columns = list(plan.key_names)
        table: dict[str, list[Any]] = {k: released[k].to_list() for k in plan.key_names}
        for s in spec.statistics:
            value, low, high = self._statistic(s, plan, released, noise, n, rng)
            table[s.name] = value
            table[f"{s.name}_ci_low"] = low
            table[f"{s.name}_ci_high"] = high
            columns += [s.name, f"{s.name}_ci_low", f"{s.name}_ci_high"]
        rows = [
            dict(zip(columns, values, strict=True))
            for values in zip(*(table[c] for c in columns), strict=True)
        ]
        return Answer(estimate=estimate, columns=columns, rows=rows)

    def _statistic(
        self,
        s: Statistic,
        plan: _Plan,
        released: pl.DataFrame,
        noise: dict[str, dict[str, Any]],
        n: np.ndarray | None,
        rng: np.random.Generator,
    ) -> tuple[list[Any], list[Any], list[Any]]:
        """One statistic from the released primitives (integer units back to values)."""
        c = plan.columns.get(s.column or "")
        total = squares = quantiles = None
        if c is not None:
            total = _values(released, _sum_name(c.name))
            total = None if total is None else total * c.resolution
            squares = _values(released, _square_name(c.name))
            squares = None if squares is None else squares * c.square_resolution
        if s.fn == "quantile":
            quantiles = released[_quantile_name(s)].to_list()
        return release_statistic(
            s, c, noise, plan.spec.alpha, rng, n=n, total=total, squares=squares,
            quantiles=quantiles,
        )  # fmt: skip


def preview_statistics(
    spec: QuerySpec, columns: dict[str, _Column], noise: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Per requested statistic, its expected interval from the noise alone (any engine).

    ``noise`` maps primitive names (:func:`_len_name`, :func:`_sum_name`, ...) to their
    scale and ``ci_half_width`` in column units.
    """
    statistics: dict[str, dict[str, Any]] = {}
    rng = np.random.default_rng(0)  # previews are deterministic
    for s in spec.statistics:
        entry: dict[str, Any] = {"fn": s.fn, "column": s.column}
        if s.fn == "count":
            entry["ci_half_width"] = noise[_len_name()]["ci_half_width"]
        elif s.fn == "sum":
            entry["ci_half_width"] = noise[_sum_name(s.column or "")]["ci_half_width"]
        elif s.fn in ("mean", "variance"):
            c = columns[s.column or ""]
            mid = (c.lower + c.upper) / 2
            by_size = {}
            for size in PREVIEW_GROUP_SIZES:
                n = np.full(1, float(size))
                total = n * mid
                squares = n * (mid * mid + c.spread / 3) if s.fn == "variance" else None
                low, high = _interval(s, c, noise, n, total, squares, spec.alpha, rng)
                by_size[str(size)] = float((high[0] - low[0]) / 2)
            entry["ci_half_width_by_group_size"] = by_size
        else:
            c = columns[s.column or ""]
            entry["ci_half_width"] = None
            entry["note"] = (
                f"exponential mechanism over {QUANTILE_CANDIDATES} candidates from "
                f"{c.lower:g} to {c.upper:g}; its error depends on how spread the data is"
            )
        statistics[s.name] = entry
    return statistics


def release_statistic(
    s: Statistic,
    c: _Column | None,
    noise: dict[str, dict[str, Any]],
    alpha: float,
    rng: np.random.Generator,
    *,
    n: np.ndarray | None,
    total: np.ndarray | None,
    squares: np.ndarray | None,
    quantiles: list[Any] | None,
) -> tuple[list[Any], list[Any], list[Any]]:
    """Values and interval bounds of one statistic from released primitives (any engine).

    ``n``, ``total`` and ``squares`` are the noisy count, sum and sum of squares per
    group in column units; ``quantiles`` the released quantiles. Post-processing only.
    """
    if s.fn == "count":
        assert n is not None
        half = noise[_len_name()]["ci_half_width"]
        value = np.maximum(n, 0)
        return _floats(value), _floats(np.maximum(value - half, 0)), _floats(value + half)
    if s.fn == "quantile":
        assert quantiles is not None
        return quantiles, [None] * len(quantiles), [None] * len(quantiles)
    assert c is not None and total is not None
    if s.fn == "sum":
        half = noise[_sum_name(c.name)]["ci_half_width"]
        return _floats(total), _floats(total - half), _floats(total + half)
    assert n is not None
    point = _derive(s, c, n, total, squares)
    low, high = _interval(s, c, noise, n, total, squares, alpha, rng)
    return _floats(point), _floats(low), _floats(high)


def _values(frame: pl.DataFrame, column: str) -> np.ndarray | None:
    if column not in frame.columns:
        return None
    return frame[column].cast(pl.Float64).fill_null(0.0).to_numpy()


def _floats(values: np.ndarray) -> list[float]:
    return [float(v) for v in values]


def _derive(
    s: Statistic, c: _Column, n: np.ndarray, total: np.ndarray, squares: np.ndarray | None
) -> np.ndarray:
    """Mean or variance from (noisy) count, sum and sum of squares, kept in range."""
    count = np.maximum(n, 1.0)
    mean = np.clip(total / count, c.lower, c.upper)
    if s.fn == "mean":
        return mean
    assert squares is not None
    return np.clip(squares / count - mean * mean, 0.0, c.spread)


def _interval(
    s: Statistic,
    c: _Column,
    noise: dict[str, dict[str, Any]],
    n: np.ndarray,
    total: np.ndarray,
    squares: np.ndarray | None,
    alpha: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """A ``1 - alpha`` interval of a mean or variance, by simulating the known noise.

    The released count, sum (and sum of squares) each carry Laplace noise of a known
    scale; drawing that noise again around the released values and deriving the
    statistic gives its spread. Post-processing of released values: costs no ε.
    """
    groups = len(n)
    draws = max(200, min(DRAWS, 4_000_000 // max(groups, 1)))

    def jitter(values: np.ndarray, primitive: str) -> np.ndarray:
        scale = noise[primitive]["scale"]
        return values[:, None] - rng.laplace(0.0, scale, size=(groups, draws))

    n_draws = jitter(n, _len_name())
    total_draws = jitter(total, _sum_name(c.name))
    square_draws = jitter(squares, _square_name(c.name)) if squares is not None else None
    derived = _derive(s, c, n_draws, total_draws, square_draws)
    low, high = np.quantile(derived, [alpha / 2, 1 - alpha / 2], axis=1)
    return low, high
