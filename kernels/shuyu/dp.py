"""Differential-privacy questions about the raw data, from a tenant's kernel.

The raw rows never enter the sandbox: a query is sent to the platform service, which
debits its ε from the tenant's budget, answers it with calibrated noise and returns
the noisy values with their confidence intervals::

    from shuyu import dp

    q = (
        dp.query("health_records", epsilon=0.2)
        .filter(dp.col("district").is_in(["涪城区", "游仙区"]), dp.col("settlement_amount") > 0)
        .group_by("sex")
        .agg(patients=dp.count(), mean_settlement=dp.mean("settlement_amount"))
    )
    q.preview()   # cost and expected accuracy; spends nothing
    q.run()       # pandas DataFrame: sex, patients, patients_ci_low, patients_ci_high, ...
    dp.histogram("health_records", "settlement_amount", [0, 1000, 10000], epsilon=0.2)
    dp.budget()   # what is left, per granted dataset
    dp.models.linear_regression("social_insurance", features=[...], label="...", epsilon=0.2)

Refusals raise :class:`DpError` (:class:`BudgetExhausted` when the budget cannot cover
the query) with the service's own message; a refused query costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from .client import PlatformError, get, post

__all__ = [
    "BudgetExhausted",
    "Column",
    "DpError",
    "Query",
    "bins",
    "budget",
    "col",
    "count",
    "histogram",
    "mean",
    "median",
    "models",
    "quantile",
    "query",
    "releases",
    "sum",
    "variance",
]


class DpError(PlatformError):
    """The DP service refused or failed a request; ``message`` says why."""


class BudgetExhausted(DpError):
    """The budget left (``remaining_epsilon``) cannot pay for the request."""

    def __init__(self, status: int, message: str, remaining: float | None) -> None:
        super().__init__(status, message, {"remaining_epsilon": remaining})
        self.remaining_epsilon = remaining


def _send(path: str, body: dict[str, Any]) -> dict[str, Any]:
    try:
        return post(path, body)
    except PlatformError as err:
        if err.status == 409:
            remaining = err.body.get("remaining_epsilon") if isinstance(err.body, dict) else None
            raise BudgetExhausted(err.status, err.message, remaining) from None
        raise DpError(err.status, err.message, err.body) from None


# ----------------------------------------------------------------- filter conditions
@dataclass(frozen=True)
class Condition:
    """One row filter, as the service expects it."""

    column: str
    op: str
    value: Any = None

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        body: dict[str, Any] = {"column": self.column, "op": self.op}
        if self.op not in ("is_null", "not_null"):
            body["value"] = self.value
        return body


class Column:
    """A column to filter on: ``col("age") >= 18``, ``col("district").is_in([...])``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, value: object) -> Condition:  # type: ignore[override]
        return Condition(self.name, "==", value)

    def __ne__(self, value: object) -> Condition:  # type: ignore[override]
        return Condition(self.name, "!=", value)

    def __lt__(self, value: Any) -> Condition:
        return Condition(self.name, "<", value)

    def __le__(self, value: Any) -> Condition:
        return Condition(self.name, "<=", value)

    def __gt__(self, value: Any) -> Condition:
        return Condition(self.name, ">", value)

    def __ge__(self, value: Any) -> Condition:
        return Condition(self.name, ">=", value)

    __hash__ = None  # type: ignore[assignment]

    def is_in(self, values: Sequence[Any]) -> Condition:
        """Rows whose value is one of ``values``."""
        return Condition(self.name, "in", list(values))

    def not_in(self, values: Sequence[Any]) -> Condition:
        """Rows whose value is set and none of ``values``."""
        return Condition(self.name, "not_in", list(values))

    def is_null(self) -> Condition:
        """Rows without a value."""
        return Condition(self.name, "is_null")

    def not_null(self) -> Condition:
        """Rows with a value."""
        return Condition(self.name, "not_null")


def col(name: str) -> Column:
    """A column of the queried dataset, for :meth:`Query.filter`."""
    return Column(name)


# ------------------------------------------------------------------------ statistics
def count() -> dict[str, Any]:
    """Number of rows (per group)."""
    return {"fn": "count"}


def sum(column: str) -> dict[str, Any]:
    """Sum of a column, clamped to the policy's bounds."""
    return {"fn": "sum", "column": column}


def mean(column: str) -> dict[str, Any]:
    """Mean of a column, clamped to the policy's bounds."""
    return {"fn": "mean", "column": column}


def variance(column: str) -> dict[str, Any]:
    """Variance of a column, clamped to the policy's bounds."""
    return {"fn": "variance", "column": column}


def quantile(column: str, q: float) -> dict[str, Any]:
    """The ``q`` quantile of a column (0 < q < 1)."""
    return {"fn": "quantile", "column": column, "q": q}


def median(column: str) -> dict[str, Any]:
    """The median of a column."""
    return quantile(column, 0.5)


def bins(column: str, edges: Sequence[float]) -> dict[str, Any]:
    """A histogram key for :meth:`Query.group_by`: ``column`` cut at ``edges``."""
    return {"column": column, "bins": list(edges)}


# ---------------------------------------------------------------------------- query
@dataclass(frozen=True)
class Query:
    """A DP query being built; each method returns a new query."""

    dataset: str
    epsilon: float | None = None
    alpha: float = 0.05
    filters: tuple[Condition, ...] = ()
    keys: tuple[Any, ...] = ()
    statistics: dict[str, dict[str, Any]] = field(default_factory=dict)

    def filter(self, *conditions: Condition) -> Query:
        """Only rows meeting every condition (``dp.col(...) op value``)."""
        return replace(self, filters=(*self.filters, *conditions))

    def group_by(self, *keys: str | dict[str, Any]) -> Query:
        """One answer row per public key (or histogram bin, see :func:`bins`)."""
        return replace(self, keys=(*self.keys, *keys))

    def agg(self, **statistics: dict[str, Any]) -> Query:
        """Name the statistics to release: ``agg(n=dp.count(), avg=dp.mean("x"))``."""
        return replace(self, statistics={**self.statistics, **statistics})

    def to_dict(self, *, dry_run: bool = False) -> dict[str, Any]:
        """The request the service receives."""
        body: dict[str, Any] = {
            "dataset": self.dataset,
            "alpha": self.alpha,
            "filters": [c.as_dict() for c in self.filters],
            "group_by": list(self.keys),
            "statistics": self.statistics or {"count": count()},
            "dry_run": dry_run,
        }
        if self.epsilon is not None:
            body["epsilon"] = self.epsilon
        return body

    def preview(self) -> pd.DataFrame:
        """Cost and expected accuracy per statistic, without spending anything."""
        answer = _send("api/dp/query", self.to_dict(dry_run=True))
        estimate = answer["estimate"]
        rows = []
        for name, entry in estimate["statistics"].items():
            row = {"statistic": name, "fn": entry["fn"], "column": entry.get("column")}
            if "ci_half_width_by_group_size" in entry:
                for size, half in entry["ci_half_width_by_group_size"].items():
                    row[f"ci_half_width_n{size}"] = half
            else:
                row["ci_half_width"] = entry.get("ci_half_width")
            rows.append(row)
        frame = pd.DataFrame(rows)
        frame.attrs.update(
            epsilon=answer["epsilon"],
            alpha=estimate["alpha"],
            remaining_epsilon=answer.get("remaining_epsilon"),
            noise=estimate["noise"],
        )
        return frame

    def run(self) -> pd.DataFrame:
        """Spend the query's ε and return the noisy answer with its intervals."""
        answer = _send("api/dp/query", self.to_dict())
        frame = pd.DataFrame(answer["rows"], columns=answer["columns"])
        frame.attrs.update(
            release=answer["release"],
            sha256=answer["sha256"],
            epsilon=answer["epsilon"],
            alpha=self.alpha,
            remaining_epsilon=answer.get("remaining_epsilon"),
        )
        return frame


def query(dataset: str, epsilon: float | None = None, alpha: float = 0.05) -> Query:
    """Start a query of a granted dataset (ε defaults to the service's 0.1, capped by policy)."""
    return Query(dataset, epsilon=epsilon, alpha=alpha)


def histogram(
    dataset: str,
    column: str,
    edges: Sequence[float],
    *,
    epsilon: float | None = None,
    filters: Sequence[Condition] = (),
) -> pd.DataFrame:
    """Noisy row counts of ``column`` cut at ``edges`` (two open-ended bins included)."""
    return (
        query(dataset, epsilon=epsilon)
        .filter(*filters)
        .group_by(bins(column, edges))
        .agg(count=count())
        .run()
    )


def budget() -> pd.DataFrame:
    """The tenant's privacy budget per granted dataset: cap, spent, remaining, expiry."""
    body = get("api/dp/budget")
    return pd.DataFrame(body["budgets"])


def releases() -> pd.DataFrame:
    """The tenant's released DP answers, newest first (ids, cost, SHA-256)."""
    body = get("api/dp/releases")
    return pd.DataFrame(body["releases"])


class _Models:
    """DP models fitted on the raw rows by the service; only parameters come back."""

    def _fit(self, body: dict[str, Any]) -> dict[str, Any]:
        answer = _send("api/dp/models", body)
        model = dict(answer["model"])
        model.update(release=answer["release"], sha256=answer["sha256"], epsilon=answer["epsilon"])
        return model

    @staticmethod
    def _body(
        model: str,
        dataset: str,
        features: Sequence[str],
        epsilon: float | None,
        filters: Sequence[Condition],
        **extra: Any,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "dataset": dataset,
            "model": model,
            "features": list(features),
            "filters": [c.as_dict() for c in filters],
            **{k: v for k, v in extra.items() if v is not None},
        }
        if epsilon is not None:
            body["epsilon"] = epsilon
        return body

    def logistic_regression(
        self,
        dataset: str,
        features: Sequence[str],
        label: str,
        *,
        epsilon: float | None = None,
        filters: Sequence[Condition] = (),
    ) -> dict[str, Any]:
        """Logistic regression of a categorical ``label`` on numeric features."""
        return self._fit(
            self._body("logistic_regression", dataset, features, epsilon, filters, label=label)
        )

    def linear_regression(
        self,
        dataset: str,
        features: Sequence[str],
        label: str,
        *,
        epsilon: float | None = None,
        filters: Sequence[Condition] = (),
    ) -> dict[str, Any]:
        """Linear regression of a numeric ``label`` on numeric features."""
        return self._fit(
            self._body("linear_regression", dataset, features, epsilon, filters, label=label)
        )

    def gaussian_nb(
        self,
        dataset: str,
        features: Sequence[str],
        label: str,
        *,
        epsilon: float | None = None,
        filters: Sequence[Condition] = (),
    ) -> dict[str, Any]:
        """Gaussian naive Bayes of a categorical ``label`` on numeric features."""
        return self._fit(
            self._body("gaussian_nb", dataset, features, epsilon, filters, label=label)
        )

    def kmeans(
        self,
        dataset: str,
        features: Sequence[str],
        n_clusters: int,
        *,
        epsilon: float | None = None,
        filters: Sequence[Condition] = (),
    ) -> dict[str, Any]:
        """k-means cluster centres of numeric features."""
        return self._fit(
            self._body("kmeans", dataset, features, epsilon, filters, n_clusters=n_clusters)
        )


models = _Models()
