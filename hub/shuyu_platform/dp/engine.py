"""The interface every DP engine implements, and the raw rows it may read.

The service never computes on raw data itself: it hands a checked
:class:`~.query.QuerySpec` and a :class:`Source` to an :class:`Engine`. The default is
:class:`~.opendp_engine.OpenDpEngine` (OpenDP's Polars measurements, in process); an
engine for data larger than one machine (e.g. Tumult Analytics on Spark) implements
the same two methods and is chosen with ``Shuyu.dp_engine``.

A :class:`Source` is what the tenant's grant lets an engine see of a dataset: the raw
Parquet file, restricted to the grant's row filter, with the tenant's filters applied.
It also checks, once per version of the file, that the data keeps the policy's promise
about the privacy unit (no person contributes more rows than ``max_contributions``),
because the noise is calibrated to that promise (:mod:`.unit_check`, out of core and
remembered across restarts).

Out of core: an engine reads the Source lazily (:meth:`Source.scan`) and should stream
it; ``memory_limit`` (``Shuyu.data_memory_limit``) is the bound its work should keep to.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from ..data.policy import DatasetPolicy
from .query import Filter, QuerySpec
from .unit_check import DEFAULT_MEMORY_LIMIT, MAX_ROWS, EngineError, check_file

__all__ = ["MAX_ROWS", "Answer", "Engine", "EngineError", "Estimate", "Source", "load_engine"]


@dataclass(frozen=True)
class Members:
    """The people of a merchant's import, as pseudonyms under the import's key.

    A raw row is kept when its identifier ``column``, pseudonymised with ``key`` exactly
    as the import's own column was, is one of ``tokens``; nobody ever sees the pairs.
    """

    column: str
    key: bytes
    tokens: frozenset[str]
    prefix: str = "I-"

    def expr(self) -> pl.Expr:
        """The Polars filter: pseudonymise the raw column, keep the import's tokens."""
        from ..data.masking import pseudonymize

        def tokens(values: pl.Series) -> pl.Series:
            array = values.cast(pl.String).to_arrow()
            return pl.Series(pseudonymize(array, self.key, self.prefix))

        return (
            pl.col(self.column)
            .map_batches(tokens, return_dtype=pl.String)
            .is_in(sorted(self.tokens))
            .fill_null(False)
        )


@dataclass(frozen=True)
class Source:
    """The raw rows of one dataset that one grant lets an engine use."""

    policy: DatasetPolicy
    path: Path
    row_filter: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    version: int | None = None
    """The raw version ``path`` holds (pinned for the whole query; ``None``: unversioned)."""
    members: Members | None = None
    """A join with a merchant's import: only rows of the import's people (a semi-join)."""
    #: Bytes the engine's work on this source should stay within (``Shuyu.data_memory_limit``).
    memory_limit: int = DEFAULT_MEMORY_LIMIT

    @property
    def contributions(self) -> int:
        """Most rows one privacy unit contributes (the policy's promise, checked)."""
        return self.policy.privacy.max_contributions

    def scan(self) -> pl.LazyFrame:
        """The raw file, lazily, restricted to the grant's rows (after :meth:`check`)."""
        self.check()
        frame = pl.scan_parquet(self.path)
        for column, values in self.row_filter.items():
            frame = frame.filter(pl.col(column).is_in(list(values)))
        if self.members is not None:
            frame = frame.filter(self.members.expr())
        return frame

    def rows(self, filters: Sequence[Filter]) -> pl.LazyFrame:
        """:meth:`scan` with the tenant's filters applied."""
        frame = self.scan()
        for item in filters:
            frame = frame.filter(filter_expr(item))
        return frame

    def check(self) -> None:
        """Refuse data that is missing, unreadable or breaks the privacy-unit promise."""
        if not self.path.exists():
            raise EngineError(
                f"the raw data of {self.policy.dataset} is not available; tell the operator"
            )
        check_file(
            self.path, self.policy.privacy.privacy_unit, self.contributions, self.memory_limit
        )


def filter_expr(item: Filter) -> pl.Expr:
    """The Polars predicate of one checked filter (null never matches a comparison)."""
    column = pl.col(item.column)
    match item.op:
        case "==":
            return column == item.value
        case "!=":
            return column != item.value
        case "<":
            return column < item.value
        case "<=":
            return column <= item.value
        case ">":
            return column > item.value
        case ">=":
            return column >= item.value
        case "in":
            return column.is_in(list(item.value))
        case "not_in":
            return column.is_not_null() & ~column.is_in(list(item.value))
        case "is_null":
            return column.is_null()
        case "not_null":
            return column.is_not_null()
    raise ValueError(f"unknown filter op {item.op!r}")  # parse() never lets one through


@dataclass
class Estimate:
    """What a query would cost and how accurate it would be, before any release.

    ``noise`` has one entry per noisy primitive (a count, a sum, a quantile) with its
    distribution and scale in the column's units; ``statistics`` gives, per requested
    statistic, the half-width of its ``1 - alpha`` interval where one is known in
    advance (counts and sums), or by group size (means and variances, which depend on
    how many rows a group has).
    """

    epsilon: float
    alpha: float
    noise: list[dict[str, Any]]
    statistics: dict[str, dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "epsilon": self.epsilon,
            "alpha": self.alpha,
            "noise": self.noise,
            "statistics": self.statistics,
        }


@dataclass
class Answer:
    """A released answer: one row per group, each statistic with its interval."""

    estimate: Estimate
    columns: list[str]
    rows: list[dict[str, Any]]


class Engine(Protocol):
    """A DP engine: plans and answers checked queries over a :class:`Source`."""

    name: str

    def estimate(self, source: Source, spec: QuerySpec) -> Estimate:
        """Cost and expected accuracy of ``spec``; touches no raw row."""
        ...

    def answer(self, source: Source, spec: QuerySpec) -> Answer:
        """The noisy answer. Call only after the ledger has debited ``spec.epsilon``."""
        ...


def load_engine(dotted: str) -> Engine:
    """The engine named by ``module:Class`` (``Shuyu.dp_engine``), instantiated."""
    module_name, _, class_name = dotted.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as err:
        raise EngineError(f"cannot load the DP engine {dotted!r}: {err}", status=500) from err
    return cls()
