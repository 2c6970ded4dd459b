"""Re-identification risk of a masked view under its policy's attacker model.

The attacker of a dataset's policy (``privacy`` in :mod:`shuyu_platform.data.policy`)
knows some people's quasi-identifiers exactly (sex, birth date, district, an amount...)
and wants to find their rows in a view, or at least read their sensitive attributes
(a diagnosis group). A view shows each quasi-identifier masked; the rows sharing one
combination of masked quasi-identifier values form a *class*, and the attacker who maps
a person onto the view's masking lands on that person's whole class.

From the class sizes and, per sensitive attribute, the values inside each class, this
module computes what :class:`ViewRisk` reports:

* **prosecutor risk** of a record, ``1 / |class|``: the chance an attacker who knows the
  person is in the view picks the right row; its maximum over the view's records and
  its average (``classes / records``, the share of people an attacker knowing
  everyone's quasi-identifiers links correctly on average);
* the share of records in classes of fewer than ``k`` rows, and the records that are
  alone in their class (*uniques*);
* the **lowest l** of each sensitive attribute: the fewest distinct values in a class
  (distinct l-diversity) and ``exp(entropy)`` of a class's values (entropy
  l-diversity); a class with one value tells the attacker that value;
* **utility**: rows suppressed, and how far the means of numeric fields per group
  (:class:`MeanError`) moved from the raw data's.

:func:`class_statistics` turns class counts into per-class figures and
:func:`measure` sums them into a :class:`ViewRisk`; :meth:`ViewRisk.breaches` compares
one with the policy's :class:`~shuyu_platform.data.policy.RiskLimits`. The view engine
(:mod:`shuyu_platform.data.views`) uses them to choose what to suppress and to refuse a
view above the limits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Final

import numpy as np
import pyarrow as pa

from shuyu_platform.data.policy import LDiversity, RiskLimits

__all__ = [
    "COUNT",
    "ClassStatistics",
    "MeanAccumulator",
    "MeanError",
    "ViewRisk",
    "class_statistics",
    "measure",
]

#: Name of the row-count column of class and pair count tables.
COUNT: Final[str] = "count_all"


@dataclass(frozen=True)
class MeanError:
    """How far a numeric field's group means in the view are from the raw data's."""

    group_by: str | None
    """The view column the means are grouped by (``None``: one overall mean)."""
    groups: int
    mean_relative_error: float
    """Mean over groups of ``|view mean - raw mean| / |raw mean|``."""
    max_relative_error: float


@dataclass(frozen=True)
class ViewRisk:
    """Re-identification risk and utility of one view build (the rows it writes)."""

    quasi_identifiers: tuple[str, ...]
    sensitive_attributes: tuple[str, ...]
    k: int
    l_diversity: dict[str, Any] | None
    """The policy's ``{"l": ..., "measure": ...}``, or ``None``."""
    level: int
    """Hierarchy level the quasi-identifiers were masked at (0: the fields' own rules)."""
    records: int
    """Rows of the view."""
    classes: int
    smallest_class: int
    """Rows of the smallest class (0 for an empty view)."""
    max_prosecutor_risk: float
    average_prosecutor_risk: float
    records_below_k_share: float
    unique_records: int
    lowest_l: dict[str, int]
    """Fewest distinct values of each sensitive attribute in one class."""
    lowest_entropy_l: dict[str, float]
    """Lowest ``exp(entropy)`` of each sensitive attribute's values in one class."""
    rows_considered: int
    """Rows that passed the row filter (the view's rows before suppression)."""
    rows_suppressed: int
    mean_errors: dict[str, MeanError] = field(default_factory=dict)
    """Utility: per numeric field, the error of its group means against raw."""

    @property
    def suppressed_share(self) -> float:
        """Share of the considered rows suppressed."""
        return self.rows_suppressed / self.rows_considered if self.rows_considered else 0.0

    def breaches(self, limits: RiskLimits) -> list[str]:
        """Each way this view is riskier than ``limits`` allow, as a sentence (none: [])."""
        found: list[str] = []
        if self.suppressed_share > limits.max_suppressed_share + 1e-12:
            found.append(
                f"{self.suppressed_share:.1%} of the rows would be suppressed, more than "
                f"{limits.max_suppressed_share:.1%}: generalise the quasi-identifiers further"
            )
        if not self.quasi_identifiers or not self.records:
            return found
        most = limits.max_prosecutor_risk or 1.0 / self.k
        if self.max_prosecutor_risk > most + 1e-12:
            found.append(
                f"maximum prosecutor risk {self.max_prosecutor_risk:.3f} is above {most:.3f}"
            )
        if self.average_prosecutor_risk > limits.max_average_risk + 1e-12:
            found.append(
                f"average prosecutor risk {self.average_prosecutor_risk:.3f} is above "
                f"{limits.max_average_risk:.3f}"
            )
        return found

    def as_dict(self) -> dict[str, Any]:
        """The risk as JSON-able data."""
        data = asdict(self)
        data["quasi_identifiers"] = list(self.quasi_identifiers)
        data["sensitive_attributes"] = list(self.sensitive_attributes)
        data["suppressed_share"] = self.suppressed_share
        return data

    def summary(self) -> str:
        """One line for the command line."""
        lows = ", ".join(f"l({name})={value}" for name, value in self.lowest_l.items())
        return (
            f"max risk {self.max_prosecutor_risk:.3f}, average {self.average_prosecutor_risk:.4f}, "
            f"{self.records_below_k_share:.1%} below k={self.k}, {self.unique_records} unique"
            + (f", {lows}" if lows else "")
            + f"; {self.rows_suppressed:,} rows suppressed ({self.suppressed_share:.1%})"
        )


@dataclass(frozen=True)
class ClassStatistics:
    """Per-class figures of one masking level: the class keys with their row counts and,
    per sensitive attribute, distinct and entropy l; and which classes k and l
    suppress."""

    classes: pa.Table
    """Class key columns and :data:`COUNT`."""
    distinct_l: dict[str, np.ndarray]
    entropy_l: dict[str, np.ndarray]
    suppressed: np.ndarray
    """Boolean per class: suppressed for k or l."""

    @property
    def counts(self) -> np.ndarray:
        """Rows of each class."""
        return self.classes.column(COUNT).to_numpy().astype(np.int64)

    @property
    def rows_suppressed(self) -> int:
        """Rows in the suppressed classes."""
        return int(self.counts[self.suppressed].sum())

    def suppressed_keys(self) -> pa.Table:
        """The key columns of the suppressed classes (join-able against a view's keys)."""
        keys = [name for name in self.classes.column_names if name != COUNT]
        return self.classes.filter(pa.array(self.suppressed)).select(keys)


def class_statistics(
    classes: pa.Table | None,
    pairs: dict[str, pa.Table],
    *,
    k: int,
    l_diversity: LDiversity | None,
) -> ClassStatistics:
    """Per-class figures from class counts and (class, sensitive value) pair counts.

    ``classes`` has the key columns and :data:`COUNT`; each table of ``pairs`` has the
    same key columns, then the sensitive value's own key columns, then :data:`COUNT`.
    A class is suppressed when it has fewer than ``k`` rows or, for some sensitive
    attribute, fewer than ``l`` distinct values (``distinct``) or an entropy below
    ``log(l)`` (``entropy``).
    """
    if classes is None:
        classes = pa.table({COUNT: pa.array([], pa.int64())})
    keys = [name for name in classes.column_names if name != COUNT]
    classes = classes.append_column("_class", pa.array(np.arange(classes.num_rows)))
    counts = classes.column(COUNT).to_numpy().astype(np.int64)
    suppressed = counts < k
    distinct: dict[str, np.ndarray] = {}
    entropy: dict[str, np.ndarray] = {}
    for name, table in pairs.items():
        d, e = _diversity(classes, keys, table, counts)
        distinct[name], entropy[name] = d, e
        if l_diversity is not None:
            if l_diversity.measure == "distinct":
                suppressed |= d < l_diversity.l
            else:
                suppressed |= e < l_diversity.l * (1 - 1e-9)
    return ClassStatistics(classes.drop_columns(["_class"]), distinct, entropy, suppressed)


def _diversity(
    classes: pa.Table, keys: list[str], pairs: pa.Table, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values and ``exp(entropy)`` of one sensitive attribute, per class."""
    n = classes.num_rows
    if not n:
        return np.zeros(0, np.int64), np.zeros(0)
    if keys:
        joined = pairs.join(classes.select([*keys, "_class"]), keys=keys, join_type="inner")
        index = joined.column("_class").to_numpy()
        pair_counts = joined.column(COUNT).to_numpy().astype(np.float64)
    else:
        index = np.zeros(pairs.num_rows, dtype=np.int64)
        pair_counts = pairs.column(COUNT).to_numpy().astype(np.float64)
    distinct = np.bincount(index, minlength=n).astype(np.int64)
    plogp = np.bincount(index, weights=pair_counts * np.log(pair_counts), minlength=n)
    totals = counts.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(totals > 0, np.log(totals) - plogp / np.maximum(totals, 1), 0.0)
    return distinct, np.exp(np.maximum(h, 0.0))


def measure(
    stats: ClassStatistics,
    *,
    quasi_identifiers: tuple[str, ...],
    sensitive_attributes: tuple[str, ...],
    k: int,
    l_diversity: LDiversity | None,
    level: int,
    rows_considered: int,
) -> ViewRisk:
    """The risk of the classes ``stats`` keeps (its suppressed classes left out)."""
    kept = ~stats.suppressed
    sizes = stats.counts[kept]
    records = int(sizes.sum())
    classes = int(sizes.size)
    lowest_l = {
        name: int(values[kept].min()) if classes else 0 for name, values in stats.distinct_l.items()
    }
    lowest_entropy = {
        name: round(float(values[kept].min()), 4) if classes else 0.0
        for name, values in stats.entropy_l.items()
    }
    return ViewRisk(
        quasi_identifiers=quasi_identifiers,
        sensitive_attributes=sensitive_attributes,
        k=k,
        l_diversity=None if l_diversity is None else l_diversity.model_dump(),
        level=level,
        records=records,
        classes=classes,
        smallest_class=int(sizes.min()) if classes else 0,
        max_prosecutor_risk=1.0 / float(sizes.min()) if classes else 0.0,
        average_prosecutor_risk=classes / records if records else 0.0,
        records_below_k_share=float(sizes[sizes < k].sum()) / records if records else 0.0,
        unique_records=int((sizes == 1).sum()),
        lowest_l=lowest_l,
        lowest_entropy_l=lowest_entropy,
        rows_considered=rows_considered,
        rows_suppressed=rows_considered - records,
    )


class MeanAccumulator:
    """Sums and counts of numeric fields per group, over raw rows and over view rows,
    batch by batch, for :class:`MeanError`."""

    def __init__(self, group_by: str | None, fields: list[str]) -> None:
        self.group_by = group_by
        self.fields = fields
        self.raw: dict[str, dict[Any, list[float]]] = {f: {} for f in fields}
        self.view: dict[str, dict[Any, list[float]]] = {f: {} for f in fields}

    def add(self, raw: pa.Table, view: pa.Table, kept: np.ndarray | None) -> None:
        """Add one batch: ``raw`` and ``view`` row-aligned (before suppression), and the
        rows the view keeps (``None``: all)."""
        if not self.fields or not view.num_rows:
            return
        group = (
            view.column(self.group_by)
            if self.group_by is not None
            else pa.nulls(view.num_rows, pa.string())
        )
        columns: dict[str, Any] = {"g": group}
        for index, name in enumerate(self.fields):
            columns[f"r{index}"] = raw.column(name).cast(pa.float64())
            columns[f"v{index}"] = view.column(name).cast(pa.float64())
        table = pa.table(columns)
        self._fold(table, "r", self.raw)
        self._fold(table if kept is None else table.filter(pa.array(kept)), "v", self.view)

    def _fold(self, table: pa.Table, side: str, into: dict[str, dict[Any, list[float]]]) -> None:
        if not table.num_rows:
            return
        aggregations = []
        for index in range(len(self.fields)):
            aggregations += [(f"{side}{index}", "sum"), (f"{side}{index}", "count")]
        grouped = table.group_by("g").aggregate(aggregations)
        groups = grouped.column("g").to_pylist()
        for index, name in enumerate(self.fields):
            sums = grouped.column(f"{side}{index}_sum").to_pylist()
            counts = grouped.column(f"{side}{index}_count").to_pylist()
            for g, total, count in zip(groups, sums, counts, strict=True):
                slot = into[name].setdefault(g, [0.0, 0])
                slot[0] += total or 0.0
                slot[1] += count

    def errors(self) -> dict[str, MeanError]:
        """The error of each field's group means (groups with no view rows left out)."""
        out: dict[str, MeanError] = {}
        for name in self.fields:
            relative = []
            for g, (raw_sum, raw_count) in self.raw[name].items():
                view_sum, view_count = self.view[name].get(g, (0.0, 0))
                if not raw_count or not view_count:
                    continue
                raw_mean, view_mean = raw_sum / raw_count, view_sum / view_count
                relative.append(abs(view_mean - raw_mean) / max(abs(raw_mean), 1e-9))
            if relative:
                out[name] = MeanError(
                    group_by=self.group_by,
                    groups=len(relative),
                    mean_relative_error=round(float(np.mean(relative)), 6),
                    max_relative_error=round(float(np.max(relative)), 6),
                )
        return out
