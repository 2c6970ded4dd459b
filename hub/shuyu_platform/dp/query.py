"""DP query requests: their JSON form, and the checks that make them safe to plan.

A request names a granted dataset and asks for statistics, optionally per group and
over filtered rows::

    {"dataset": "health_records", "epsilon": 0.5, "alpha": 0.05,
     "filters": [{"column": "district", "op": "in", "value": ["涪城区", "游仙区"]}],
     "group_by": ["sex", {"column": "settlement_amount", "bins": [0, 1000, 10000]}],
     "statistics": {"n": {"fn": "count"},
                    "avg_settlement": {"fn": "mean", "column": "settlement_amount"}}}

Everything a tenant could use to weaken the guarantee comes from the policy, never
from the request: the privacy unit and its contribution bound, the clamping bounds of
every summed column and the key set of every group-by column. Group-by columns need
``dp.public_keys`` in the policy; histogram bins are public because the tenant chose
them. Every column used must be in the tenant's grant.

Filters and group-by keys may only use the columns the policy's ``dp.filterable`` lists,
never the privacy unit or a direct identifier, so a query cannot single out one person
by an exact value only an insider knows; a column with a ``dp.steps`` entry is only cut
at multiples of its step. Times are compared as the local times the data holds: a value
with a time-zone offset is refused here rather than failing after the debit.

:func:`parse` turns a request into a :class:`QuerySpec` or raises :class:`QueryError`
with the HTTP status and a sentence that names the offending part; nothing is debited
for a request that fails here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from itertools import pairwise
from typing import Any, Final, Literal

from ..data.policy import DatasetPolicy, FieldPolicy

#: Statistics a query may ask for, and whether they need a numeric column.
STATISTICS: Final[dict[str, bool]] = {
    "count": False,
    "sum": True,
    "mean": True,
    "variance": True,
    "quantile": True,
}
#: Filter operators and the kind of value each takes.
FILTER_OPS: Final[frozenset[str]] = frozenset(
    {"==", "!=", "<", "<=", ">", ">=", "in", "not_in", "is_null", "not_null"}
)
#: Most groups (product of key-set sizes) one query may release.
MAX_GROUPS: Final[int] = 10_000
#: Most statistics one query may ask for.
MAX_STATISTICS: Final[int] = 20
#: Most filters, values of an ``in`` filter, and histogram bin edges.
MAX_FILTERS: Final[int] = 20
MAX_IN_VALUES: Final[int] = 1_000
MAX_BIN_EDGES: Final[int] = 101
#: ε is accounted in millionths, so the ledger adds exact integers.
EPSILON_QUANTUM: Final[float] = 1e-6
#: ε of a query that names none (capped by the policy's per-query maximum).
DEFAULT_EPSILON: Final[float] = 0.1
DEFAULT_ALPHA: Final[float] = 0.05

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_KEYS: Final[frozenset[str]] = frozenset(
    {"dataset", "epsilon", "alpha", "filters", "group_by", "statistics", "dry_run", "join"}
)


class DpError(Exception):
    """Why the DP service cannot answer: ``message`` for a person, ``status`` for HTTP."""

    default_status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = self.default_status if status is None else status
        self.message = message


class QueryError(DpError, ValueError):
    """A request that cannot be answered as asked (refused before anything is spent)."""


@dataclass(frozen=True)
class Filter:
    """Keep rows where ``column op value`` holds (value already typed for the column)."""

    column: str
    op: str
    value: Any = None

    def as_dict(self) -> dict[str, Any]:
        """JSON form, as the request gave it."""
        value = self.value
        if isinstance(value, tuple):
            value = [v.isoformat() if isinstance(v, date) else v for v in value]
        elif isinstance(value, date):
            value = value.isoformat()
        return {"column": self.column, "op": self.op, "value": value}


@dataclass(frozen=True)
class Bins:
    """A histogram key: a numeric column cut at public ``edges`` into labelled bins.

    Values below the first edge or at/above the last fall in two open-ended bins, so
    every row lands in exactly one bin and the key set is fixed by the edges alone.
    """

    column: str
    edges: tuple[float, ...]

    @property
    def labels(self) -> tuple[str, ...]:
        """Bin labels, lowest first: ``<a``, ``[a, b)``, ..., ``>=z``.

        An edge reads as ``:g`` writes it where that is the edge itself, else as its
        shortest exact form: labels are a bin's key, so two edges must never read alike
        (``10`` and ``10.0000001`` as ``10``, bins that engines keying by label would
        answer once per duplicate, each with fresh noise on the same rows).
        """
        e = [_edge_text(edge) for edge in self.edges]
        inner = [f"[{lo}, {hi})" for lo, hi in pairwise(e)]
        return (f"<{e[0]}", *inner, f">={e[-1]}")

    @property
    def name(self) -> str:
        """Output column name of the bin label."""
        return f"{self.column}_bin"


GroupKey = str | Bins


def _edge_text(edge: float) -> str:
    """A bin edge as text: short where exact (``1000``, ``0.5``), else ``repr``."""
    text = f"{edge:g}"
    return text if float(text) == edge else repr(float(edge))


_IMPORT_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class Join:
    """Fusion with a merchant's import (R21): keep only the raw rows whose identifier
    ``column`` equals a value of the import's identifier column ``import_column``.

    A semi-join: it adds no row and repeats none, so each privacy unit still contributes
    at most the policy's bound and the measurement (and its preview) is unchanged; the
    import is the tenant's own, public to it. The raw values are pseudonymised with the
    import's key to be compared (:mod:`shuyu_platform.ingress.imports`); no one sees the
    joined rows.
    """

    import_id: str
    column: str
    import_column: str

    def as_dict(self) -> dict[str, str]:
        """JSON form, as the request gave it."""
        return {"import": self.import_id, "on": self.column, "import_column": self.import_column}


def _join(raw: Any, policy: DatasetPolicy) -> Join | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) != {"import", "on", "import_column"}:
        raise QueryError(
            'join is {"import": "<id>", "on": "<column>", "import_column": "<column>"}'
        )
    import_id, column, other = raw["import"], raw["on"], raw["import_column"]
    if not isinstance(import_id, str) or not _IMPORT_ID.match(import_id):
        raise QueryError(f"join.import must be an import's id, not {import_id!r}")
    field = policy.fields.get(column) if isinstance(column, str) else None
    if field is None or not field.identifier:
        identifiers = ", ".join(policy.identifier_fields())
        raise QueryError(
            f"join.on must be an identifier of {policy.dataset} ({identifiers}), not {column!r}"
        )
    if not isinstance(other, str) or not other:
        raise QueryError("join.import_column must name the import's identifier column")
    return Join(import_id, column, other)


@dataclass(frozen=True)
class Statistic:
    """One released number per group: ``fn`` of ``column`` (``count`` has none)."""

    name: str
    fn: Literal["count", "sum", "mean", "variance", "quantile"]
    column: str | None = None
    q: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        body: dict[str, Any] = {"fn": self.fn}
        if self.column is not None:
            body["column"] = self.column
        if self.q is not None:
            body["q"] = self.q
        return body


@dataclass(frozen=True)
class QuerySpec:
    """A checked query: every column exists, is granted and fits its role."""

    dataset: str
    epsilon: float
    alpha: float
    filters: tuple[Filter, ...]
    group_by: tuple[GroupKey, ...]
    statistics: tuple[Statistic, ...]
    dry_run: bool = False
    join: Join | None = None

    @property
    def epsilon_micro(self) -> int:
        """ε in millionths: what the ledger debits."""
        return round(self.epsilon / EPSILON_QUANTUM)

    def key_names(self) -> list[str]:
        """Output names of the group-by columns."""
        return [k if isinstance(k, str) else k.name for k in self.group_by]

    def as_dict(self) -> dict[str, Any]:
        """Canonical JSON form (for the ledger, the audit chain and the answer)."""
        return {
            "dataset": self.dataset,
            "epsilon": self.epsilon,
            "alpha": self.alpha,
            "filters": [f.as_dict() for f in self.filters],
            "group_by": [
                k if isinstance(k, str) else {"column": k.column, "bins": list(k.edges)}
                for k in self.group_by
            ],
            "statistics": {s.name: s.as_dict() for s in self.statistics},
            **({"join": self.join.as_dict()} if self.join is not None else {}),
        }


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise QueryError(f"{what} must be a number, not {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise QueryError(f"{what} must be a finite number, not {value!r}")
    return number


def parse_epsilon(body: Mapping[str, Any], policy: DatasetPolicy) -> float:
    """The request's ε, checked against the policy's per-query cap and quantised."""
    cap = policy.privacy.max_epsilon_per_query
    raw = body.get("epsilon", min(DEFAULT_EPSILON, cap))
    epsilon = _number(raw, "epsilon")
    if epsilon <= 0:
        raise QueryError(f"epsilon must be greater than 0, not {raw!r}")
    if epsilon > cap:
        raise QueryError(
            f"epsilon {epsilon:g} is above the per-query cap of {cap:g} for {policy.dataset}"
        )
    quantised = round(epsilon / EPSILON_QUANTUM) * EPSILON_QUANTUM
    if quantised <= 0:
        raise QueryError(f"epsilon must be at least {EPSILON_QUANTUM:g}")
    return round(quantised, 6)


class _Checker:
    """Column checks shared by every part of a request."""

    def __init__(self, policy: DatasetPolicy, granted: Sequence[str]) -> None:
        self.policy = policy
        self.granted = set(granted)

    def field(self, column: Any, what: str) -> FieldPolicy:
        if not isinstance(column, str) or not column:
            raise QueryError(f"{what}: a column name is needed, not {column!r}")
        field = self.policy.fields.get(column)
        if field is None:
            known = ", ".join(n for n in self.policy.fields if n in self.granted)
            raise QueryError(
                f"{what}: {self.policy.dataset} has no column {column!r} (your grant has: {known})"
            )
        if column not in self.granted:
            raise QueryError(
                f"{what}: column {column!r} of {self.policy.dataset} is not in your grant",
                status=403,
            )
        return field

    def filterable(self, column: Any, what: str) -> FieldPolicy:
        """A column a filter or group-by key may use: listed in the policy's
        ``dp.filterable``, and never the privacy unit or a direct identifier."""
        if isinstance(column, str) and column in self.policy.fields:
            field = self.policy.fields[column]
            dp = self.policy.dp
            why = ""
            if column == self.policy.privacy.privacy_unit:
                why = "it is the privacy unit, and a filter on it singles out one person"
            elif field.identifier:
                why = "it is a direct identifier"
            elif column not in dp.filterable:
                why = "the policy does not list it as filterable"
            if why:
                allowed = ", ".join(dp.filterable) or "none"
                raise QueryError(
                    f"{what}: queries on {self.policy.dataset} may not filter or group by "
                    f"{column!r}: {why} (filterable columns: {allowed})",
                    status=403,
                )
        return self.field(column, what)

    def step(self, column: str, value: float, what: str) -> None:
        """Refuse a threshold or bin edge that is not a multiple of the column's step."""
        step = self.policy.dp.steps.get(column)
        if step is None:
            return
        ratio = value / step
        if not math.isclose(ratio, round(ratio), rel_tol=0, abs_tol=1e-9):
            raise QueryError(
                f"{what}: {column!r} may only be cut at multiples of {step:g} "
                f"(the policy's step), not at {value:g}",
                status=403,
            )

    def numeric(self, column: Any, what: str) -> FieldPolicy:
        field = self.field(column, what)
        if field.type not in ("int", "float"):
            raise QueryError(f"{what}: {column!r} is a {field.type} column, not a number")
        if field.dp is None or field.dp.lower is None or field.dp.upper is None:
            raise QueryError(
                f"{what}: the policy of {self.policy.dataset} gives {column!r} no DP bounds, "
                "so it cannot be aggregated"
            )
        return field

    def typed(self, field: FieldPolicy, column: str, value: Any, what: str) -> Any:
        """A filter value converted to the column's type."""
        if value is None or isinstance(value, list | dict | bool):
            raise QueryError(f"{what}: {value!r} is not a value of {column!r}")
        if field.type in ("int", "float"):
            return _number(value, what)
        if field.type in ("date", "timestamp"):
            if not isinstance(value, str):
                raise QueryError(f"{what}: give {column!r} values as ISO dates ('2024-05-01')")
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                raise QueryError(f"{what}: {value!r} is not an ISO date or time") from None
            if moment.tzinfo is not None:
                raise QueryError(
                    f"{what}: {value!r} carries a time zone; {column!r} holds local times "
                    "without one, so give the local time without an offset ('2024-05-01T08:00')"
                )
            return moment.date() if field.type == "date" else moment
        if not isinstance(value, str | int | float):
            raise QueryError(f"{what}: {value!r} is not a value of {column!r}")
        return str(value)


def _filters(raw: Any, check: _Checker) -> tuple[Filter, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise QueryError("filters must be a list of {column, op, value} objects")
    if len(raw) > MAX_FILTERS:
        raise QueryError(f"at most {MAX_FILTERS} filters, not {len(raw)}")
    out = []
    for index, item in enumerate(raw):
        what = f"filters[{index}]"
        if not isinstance(item, dict) or set(item) - {"column", "op", "value"}:
            raise QueryError(f"{what} must be an object with column, op and value")
        field = check.filterable(item.get("column"), what)
        column, op = item["column"], item.get("op")
        if op not in FILTER_OPS:
            raise QueryError(
                f"{what}: unknown op {op!r}; use one of {', '.join(sorted(FILTER_OPS))}"
            )
        value: Any = None
        if op in ("in", "not_in"):
            values = item.get("value")
            if not isinstance(values, list) or not values:
                raise QueryError(f"{what}: {op} needs a non-empty list of values")
            if len(values) > MAX_IN_VALUES:
                raise QueryError(f"{what}: at most {MAX_IN_VALUES} values, not {len(values)}")
            value = tuple(check.typed(field, column, v, what) for v in values)
        elif op not in ("is_null", "not_null"):
            value = check.typed(field, column, item.get("value"), what)
            if op not in ("==", "!=") and field.type not in ("int", "float", "date", "timestamp"):
                raise QueryError(f"{what}: {op} compares numbers or dates; {column!r} is text")
        if column in check.policy.dp.steps:
            if op not in ("<", "<=", ">", ">=", "is_null", "not_null"):
                raise QueryError(
                    f"{what}: {column!r} may only be compared with <, <=, > or >= "
                    f"(the policy gives it a step), not matched with {op}",
                    status=403,
                )
            if value is not None:
                check.step(column, value, what)
        out.append(Filter(column, op, value))
    return tuple(out)


def _group_by(raw: Any, check: _Checker) -> tuple[GroupKey, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str | dict):
        raw = [raw]
    if not isinstance(raw, list):
        raise QueryError("group_by must be a list of column names or {column, bins} objects")
    keys: list[GroupKey] = []
    groups = 1
    for index, item in enumerate(raw):
        what = f"group_by[{index}]"
        if isinstance(item, str):
            field = check.filterable(item, what)
            if field.dp is None or field.dp.public_keys is None:
                raise QueryError(
                    f"{what}: {item!r} has no public key set in the policy of "
                    f"{check.policy.dataset}, so it cannot be grouped by; "
                    'bin a numeric column with {"column": ..., "bins": [...]} instead'
                )
            keys.append(item)
            groups *= len(field.dp.public_keys)
        elif isinstance(item, dict) and set(item) == {"column", "bins"}:
            check.filterable(item["column"], what)
            check.numeric(item["column"], what)
            edges = item["bins"]
            if not isinstance(edges, list) or not 1 <= len(edges) <= MAX_BIN_EDGES:
                raise QueryError(f"{what}: bins must be a list of 1 to {MAX_BIN_EDGES} edges")
            numbers = tuple(_number(e, f"{what}.bins") for e in edges)
            if any(b <= a for a, b in pairwise(numbers)):
                raise QueryError(f"{what}: bin edges must increase strictly")
            for edge in numbers:
                check.step(item["column"], edge, f"{what}.bins")
            bins = Bins(item["column"], numbers)
            if len(set(bins.labels)) != len(bins.labels):  # never, as labels are written
                raise QueryError(f"{what}: two bins would have the same label")
            keys.append(bins)
            groups *= len(numbers) + 1
        else:
            raise QueryError(f"{what} must be a column name or an object with column and bins")
        if groups > MAX_GROUPS:
            raise QueryError(
                f"group_by would release {groups:,}+ groups; at most {MAX_GROUPS:,} per query"
            )
    names = [k if isinstance(k, str) else k.name for k in keys]
    if len(set(names)) != len(names):
        raise QueryError("group_by names a key twice")
    return tuple(keys)


def _statistics(raw: Any, check: _Checker, key_names: list[str]) -> tuple[Statistic, ...]:
    if not isinstance(raw, dict) or not raw:
        raise QueryError('statistics must be a non-empty object such as {"n": {"fn": "count"}}')
    if len(raw) > MAX_STATISTICS:
        raise QueryError(f"at most {MAX_STATISTICS} statistics per query, not {len(raw)}")
    out = []
    for name, item in raw.items():
        what = f"statistics.{name}"
        if not _NAME.match(name) or name in key_names or name.endswith(("_ci_low", "_ci_high")):
            raise QueryError(f"{what}: {name!r} is not a usable output name")
        if not isinstance(item, dict) or set(item) - {"fn", "column", "q"}:
            raise QueryError(f"{what} must be an object with fn (and column, q)")
        fn = item.get("fn")
        if fn not in STATISTICS:
            raise QueryError(f"{what}: unknown fn {fn!r}; use one of {', '.join(STATISTICS)}")
        column = item.get("column")
        if STATISTICS[fn]:
            check.numeric(column, what)
        elif column is not None:
            raise QueryError(f"{what}: count takes no column (it counts rows)")
        q = None
        if fn == "quantile":
            q = _number(item.get("q"), f"{what}.q")
            if not 0 < q < 1:
                raise QueryError(f"{what}.q must be between 0 and 1, not {q:g}")
        elif "q" in item:
            raise QueryError(f"{what}: only quantile takes q")
        out.append(Statistic(name, fn, column, q))
    return tuple(out)


def parse(
    body: Any, policy: DatasetPolicy, granted: Sequence[str], *, dataset: str | None = None
) -> QuerySpec:
    """Check a JSON request against ``policy`` and the grant's ``granted`` fields."""
    if not isinstance(body, dict):
        raise QueryError("the request body must be a JSON object")
    unknown = set(body) - _KEYS
    if unknown:
        raise QueryError(f"unknown request keys: {', '.join(sorted(unknown))}")
    if body.get("dataset", dataset) != policy.dataset:
        raise QueryError(f"the request is about {body.get('dataset')!r}, not {policy.dataset}")
    check = _Checker(policy, granted)
    alpha = _number(body.get("alpha", DEFAULT_ALPHA), "alpha")
    if not 0 < alpha < 0.5:
        raise QueryError(f"alpha must be between 0 and 0.5, not {alpha:g}")
    group_by = _group_by(body.get("group_by"), check)
    key_names = [k if isinstance(k, str) else k.name for k in group_by]
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise QueryError("dry_run must be true or false")
    return QuerySpec(
        dataset=policy.dataset,
        epsilon=parse_epsilon(body, policy),
        alpha=alpha,
        filters=_filters(body.get("filters"), check),
        group_by=group_by,
        statistics=_statistics(body.get("statistics"), check, key_names),
        dry_run=dry_run,
        join=_join(body.get("join"), policy),
    )
