"""Column profiles: which columns of a table are counts, amounts, aggregates or keys."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

#: Words (of a column name split on non-letters and camelCase) marking a count column.
_COUNT_WORDS: Final = frozenset({
    "n", "count", "counts", "cnt", "freq", "frequency", "frequencies", "size", "num",
    "nobs", "nunique", "patients", "persons", "people", "cases", "households"
})  # fmt: skip
#: Chinese fragments marking a count column (substring match).
_COUNT_ZH: Final = (
    "人数", "数量", "频数", "计数", "例数", "次数", "户数", "件数", "个数", "人次",
    "家数", "频次", "笔数", "样本量", "条数"
)  # fmt: skip
#: Words marking an aggregate whose cells can be dominated: sums, means, extremes.
_AGG_WORDS: Final = frozenset({
    "sum", "total", "totals", "mean", "avg", "average", "median", "std", "sd", "var",
    "variance", "min", "max", "minimum", "maximum", "mode"
})  # fmt: skip
#: Chinese fragments of the same (substring match).
_AGG_ZH: Final = (
    "合计", "总计", "总额", "总和", "总量", "均值", "平均", "中位数", "标准差", "方差",
    "最大", "最小", "众数"
)  # fmt: skip
#: Words marking an amount (a magnitude variable, subject to dominance).
_MAGNITUDE_WORDS: Final = frozenset({
    "amount", "income", "revenue", "sales", "cost", "costs", "price", "salary", "wage",
    "wages", "spend", "spending", "expenditure", "tax", "taxes", "value", "turnover",
    "assets", "profit", "payment", "payments", "settlement", "fee", "fees", "dosage",
    "balance", "loan", "loans", "debt", "capital"
})  # fmt: skip
#: Chinese fragments of the same (substring match; 额 covers 金额, 销售额 ...).
_MAGNITUDE_ZH: Final = (
    "额", "收入", "营收", "销售", "费用", "成本", "工资", "薪", "支出", "税",
    "产值", "资产", "利润", "结算", "价格", "剂量", "贷款", "资本"
)  # fmt: skip
#: Words marking a numeric key (year, code, age ...), never a count or an amount.
_LABEL_WORDS: Final = frozenset({
    "year", "yr", "month", "day", "date", "week", "quarter", "hour", "code", "id", "rank",
    "age", "period", "zip", "postcode"
})  # fmt: skip
#: Chinese endings of the same (年收入 is an amount, 诊断月份 a key).
_LABEL_ZH_SUFFIXES: Final = (
    "年份", "年度", "月份", "日期", "季度", "编码", "代码", "编号", "序号", "排名",
    "年龄", "区划", "邮编"
)  # fmt: skip
#: Chinese names that are keys only when they are the whole name.
_LABEL_ZH_EXACT: Final = frozenset({"年", "月", "日", "周"})
#: Words marking shares and rates (neither counts nor amounts).
_PROPORTION_WORDS: Final = frozenset({
    "pct", "percent", "percentage", "share", "rate", "ratio", "prop", "proportion",
    "fraction", "frac"
})  # fmt: skip
#: Chinese fragments of the same (substring match).
_PROPORTION_ZH: Final = ("比例", "占比", "率", "百分比", "比重")
_WORD: Final = re.compile(r"[a-z]+|[0-9]+")


def _label_text(label: Any) -> str:
    if isinstance(label, tuple):
        return " / ".join(str(part) for part in label if str(part) != "")
    return str(label)


def _classify(label: str) -> str:
    """Role of a numeric column from its name.

    One of ``proportion``, ``count``, ``agg`` (sum/mean/extremes), ``label`` (a key
    such as a year or code), ``magnitude`` (an amount) or ``other``; earlier roles win.
    """
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", label).lower()
    words = set(_WORD.findall(spaced))
    stripped = label.strip()
    if words & _PROPORTION_WORDS or any(z in label for z in _PROPORTION_ZH) or "%" in label:
        return "proportion"
    if words & _COUNT_WORDS or any(z in label for z in _COUNT_ZH):
        return "count"
    if words & _AGG_WORDS or any(z in label for z in _AGG_ZH):
        return "agg"
    # A key's name holds no number: ``age_0_17`` is a category of a crosstab, not a key.
    keyish = not any(w.isdigit() for w in words) and not re.search(r"[0-9]", stripped)
    if keyish and (
        words & _LABEL_WORDS or stripped in _LABEL_ZH_EXACT or stripped.endswith(_LABEL_ZH_SUFFIXES)
    ):
        return "label"
    if words & _MAGNITUDE_WORDS or any(z in label for z in _MAGNITUDE_ZH):
        return "magnitude"
    return "other"


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def _as_numbers(column: pd.Series) -> np.ndarray | None:
    """The column as float64 (NaN for missing), or None if it is not numeric."""
    if is_bool_dtype(column.dtype):
        return None
    if is_numeric_dtype(column.dtype):
        return column.to_numpy(dtype="float64", na_value=np.nan)
    if column.dtype == object:
        values = [v for v in column.tolist() if not _is_missing(v)]
        if values and all(
            isinstance(v, int | float | np.number) and not isinstance(v, bool | np.bool_)
            for v in values
        ):
            return np.array(
                [np.nan if _is_missing(v) else float(v) for v in column.tolist()],
                dtype="float64",
            )
    return None


def _whole_non_negative(values: np.ndarray) -> bool:
    finite = values[np.isfinite(values)]
    return bool(finite.size) and bool(np.all(finite >= 0) and np.all(np.mod(finite, 1) == 0))


@dataclass
class _Column:
    position: int
    label: Any
    text: str
    numbers: np.ndarray | None
    role: str


@dataclass
class _Profile:
    columns: list[_Column]
    frequency: list[int]
    """Positions of the columns the minimum-cell-count rule applies to."""
    magnitude: list[int]
    """Positions of sum/mean/extreme/amount columns the dominance rules apply to."""
    aggregated: bool
    uncertain: list[int] = field(default_factory=list)
    """Columns of whole numbers that may be counts or sums: both rules apply to them."""


def _profile(table: pd.DataFrame, kind: str | None = None) -> _Profile:
    """What each column of ``table`` is, and which rules apply to which column.

    ``kind`` is how the table was computed when the kernel helper says so
    (``"frequency"`` or ``"magnitude"``); otherwise columns are told apart by name and,
    for names that say nothing (category labels of a crosstab), by value: whole
    non-negative numbers may be counts or sums of whole numbers, so they get the count
    rule *and* count as magnitudes (``uncertain``); other numbers are magnitudes.
    """
    columns: list[_Column] = []
    for j in range(table.shape[1]):
        label = table.columns[j]
        text = _label_text(label)
        numbers = _as_numbers(table.iloc[:, j])
        role = _classify(text) if numbers is not None else "text"
        columns.append(_Column(j, label, text, numbers, role))
    numeric = [c for c in columns if c.numbers is not None]
    frequency = [c.position for c in numeric if c.role == "count"]
    magnitude = [c.position for c in numeric if c.role in ("agg", "magnitude")]
    uncertain: list[int] = []
    for c in numeric:
        if c.role != "other":
            continue
        if kind == "frequency":
            frequency.append(c.position)
        elif kind == "magnitude" or not _whole_non_negative(c.numbers):  # type: ignore[arg-type]
            magnitude.append(c.position)
        else:
            frequency.append(c.position)
            magnitude.append(c.position)
            uncertain.append(c.position)
    frequency.sort()
    magnitude.sort()
    aggregated = bool(frequency) or any(c.role == "agg" for c in numeric)
    return _Profile(columns, frequency, magnitude, aggregated, uncertain)
