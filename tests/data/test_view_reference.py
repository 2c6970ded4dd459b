"""A view build against a straightforward reference computation of the same view.

The build streams its raw file in batches, masks and codes each batch's *distinct* values
in pass 1, counts classes by sorting packed integer codes and merges the counts of many
batches. The reference here does none of that: it reads the whole raw file, masks every
row at every generalisation level with :func:`masking.mask_table`, groups the rows with
pandas, chooses the level, suppresses and measures the risk itself. Both must agree on
the level, on every risk figure and on the view's rows (as a multiset: the view is
shuffled). Batches of a few hundred rows and a small merge threshold make the build
take every path (many batches, repeated merges) on a small file.
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from harness import REPO
from shuyu_platform.data import classes, demodata, masking, views
from shuyu_platform.data.masking import tenant_key
from shuyu_platform.data.policy import (
    DatasetPolicy,
    LDiversity,
    MicroaggregateMasking,
    NoiseMasking,
    RiskLimits,
    load_policies,
)
from shuyu_platform.data.views import build_view, generalisation_levels

ROWS = 3000
KEY = tenant_key(b"platform-master-secret-for-tests", "kangning")
BUILT_ON = date(2026, 6, 15)
#: The risk figures compared (besides the rows and classes suppressed).
FIGURES = (
    "level",
    "records",
    "classes",
    "smallest_class",
    "unique_records",
    "records_below_k_share",
    "average_prosecutor_risk",
    "rows_suppressed",
    "lowest_l",
    "lowest_entropy_l",
)


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The demo datasets, and ``health_nulls``: health records with some quasi-identifier
    and diagnosis values missing."""
    folder = tmp_path_factory.mktemp("raw")
    paths = demodata.generate(folder, rows=ROWS, seed=20240501)
    table = pq.read_table(paths["health_records"])
    for name, every in (("district", 7), ("birth_date", 11), ("icd11_code", 13)):
        column = table.column(name)
        missing = pa.array(np.arange(len(table)) % every == 0)
        index = table.column_names.index(name)
        nulled = pc.if_else(missing, pa.scalar(None, column.type), column)
        table = table.set_column(index, name, nulled)
    paths["health_nulls"] = folder / "health_nulls.parquet"
    pq.write_table(table, paths["health_nulls"])
    return paths


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 256 rows, and class counts merged every 2,000 partial rows."""
    monkeypatch.setattr(views, "BATCH_ROWS", 256)
    monkeypatch.setattr(classes, "_MERGE_ROWS", 2000)


# ========================================================================== reference


def _groups(policy: DatasetPolicy, table: pa.Table, names: list[str]) -> dict[str, Any]:
    """Microaggregation groups fitted over the whole raw column."""
    fitted = {}
    for name in names:
        rule = policy.fields[name].masking
        if isinstance(rule, MicroaggregateMasking):
            counts = masking.value_counts(table.column(name))
            fitted[name] = masking.fit_groups([counts], rule.k, rule.to)
    return fitted


def _masked(policy: DatasetPolicy, table: pa.Table, names: list[str]) -> pd.DataFrame:
    groups = _groups(policy, table, names)
    out = masking.mask_table(
        table, policy, names, key=KEY, reference_date=BUILT_ON, groups=groups
    ).to_pandas()
    # Null and NaN say the same (nothing), in a class of their own.
    return out.astype(object).where(out.notna(), None)


def reference(policy: DatasetPolicy, raw_path: Path, k: int) -> dict[str, Any]:
    """Level, risk figures and rows of the view of every visible field, computed the
    plain way: every row masked at every level, classes grouped by pandas."""
    names = list(policy.visible_fields())
    table = pq.read_table(raw_path)
    qis = [q for q in policy.privacy.quasi_identifiers if q in names]
    sensitive = [a for a in policy.privacy.sensitive_attributes if a in names]
    diversity = policy.privacy.l_diversity
    limits = policy.privacy.risk_limits
    target = limits.level_suppressed_share
    target = limits.max_suppressed_share if target is None else target

    candidates = []
    for level, level_policy in enumerate(generalisation_levels(policy, names)):
        frame = _masked(level_policy, table, names)
        class_id = frame.groupby(qis, dropna=False, sort=False).ngroup().to_numpy()
        sizes = np.bincount(class_id)
        suppressed = sizes < k
        distinct, entropy = {}, {}
        for name in sensitive:
            pairs = Counter(zip(class_id.tolist(), frame[name].tolist(), strict=True))
            per_class: list[list[int]] = [[] for _ in sizes]
            for (cls, _), count in pairs.items():
                per_class[cls].append(count)
            distinct[name] = np.array([len(c) for c in per_class])
            entropy[name] = np.array(
                [np.exp(-sum(n / sum(c) * np.log(n / sum(c)) for n in c)) for c in per_class]
            )
            if diversity is not None and diversity.measure == "distinct":
                suppressed |= distinct[name] < diversity.l
            elif diversity is not None:
                suppressed |= entropy[name] < diversity.l * (1 - 1e-9)
        rows_suppressed = int(sizes[suppressed].sum())
        candidates.append((level, frame, class_id, sizes, suppressed, distinct, entropy))
        if rows_suppressed <= target * len(frame):
            chosen = candidates[-1]
            break
    else:
        chosen = min(candidates, key=lambda c: (int(c[3][c[4]].sum()), c[0]))

    level, frame, class_id, sizes, suppressed, distinct, entropy = chosen
    kept = sizes[~suppressed]
    return {
        "level": level,
        "records": int(kept.sum()),
        "classes": len(kept),
        "smallest_class": int(kept.min()),
        "unique_records": int((kept == 1).sum()),
        "records_below_k_share": float(kept[kept < k].sum()) / kept.sum(),
        "average_prosecutor_risk": len(kept) / kept.sum(),
        "rows_suppressed": int(sizes[suppressed].sum()),
        "classes_suppressed": int(suppressed.sum()),
        "lowest_l": {name: int(d[~suppressed].min()) for name, d in distinct.items()},
        "lowest_entropy_l": {
            name: round(float(e[~suppressed].min()), 4) for name, e in entropy.items()
        },
        "rows": rows_of(frame[~suppressed[class_id]]),
    }


def rows_of(frame: pd.DataFrame) -> Counter[tuple[str, ...]]:
    """The rows of ``frame`` as a multiset of their printed values."""
    frame = frame.astype(object).where(frame.notna(), None)
    return Counter(tuple(map(repr, row)) for row in frame.itertuples(index=False))


def built(policy: DatasetPolicy, raw_path: Path, out: Path, k: int) -> dict[str, Any]:
    """The same figures from :func:`build_view`."""
    report = build_view(
        policy,
        raw_path,
        out,
        key=KEY,
        fields=list(policy.visible_fields()),
        reference_date=BUILT_ON,
        k=k,
    )
    assert report.risk is not None
    risk = report.risk.as_dict()
    return {
        **{figure: risk[figure] for figure in FIGURES},
        "classes_suppressed": report.classes_suppressed,
        "rows": rows_of(pq.read_table(out).to_pandas()),
    }


# ========================================================================== variants


def with_limits(policy: DatasetPolicy, **limits: Any) -> DatasetPolicy:
    risk_limits = RiskLimits(**{"max_average_risk": 1.0, "max_suppressed_share": 0.9, **limits})
    privacy = policy.privacy.model_copy(update={"risk_limits": risk_limits})
    return policy.model_copy(update={"privacy": privacy})


def with_field(policy: DatasetPolicy, name: str, rule: Any) -> DatasetPolicy:
    """``policy`` with field ``name`` masked by ``rule``, without a hierarchy, as its only
    quasi-identifier (so a small file keeps some classes)."""
    field = policy.fields[name].with_masking(rule).model_copy(update={"hierarchy": []})
    privacy = policy.privacy.model_copy(update={"quasi_identifiers": [name]})
    return policy.model_copy(update={"fields": {**policy.fields, name: field}, "privacy": privacy})


def variant(name: str) -> tuple[DatasetPolicy, str]:
    """A policy to build and the raw dataset it reads."""
    policies = load_policies(REPO / "policies")
    health = with_limits(policies["health_records"])
    if name in ("health_records", "health_nulls"):
        return health, name
    if name == "health_coarser":
        # Every level must suppress nothing: the build walks up to the coarsest or to
        # the one suppressing least.
        return with_limits(policies["health_records"], level_suppressed_share=0.0), "health_records"
    if name == "health_entropy":
        privacy = health.privacy.model_copy(
            update={"l_diversity": LDiversity(l=3, measure="entropy")}
        )
        return health.model_copy(update={"privacy": privacy}), "health_records"
    if name == "health_noise":
        noise = NoiseMasking(rule="noise", relative_sd=0.2, to=1000)
        return with_field(health, "settlement_amount", noise), "health_records"
    if name == "health_microaggregate":
        grouped = MicroaggregateMasking(rule="microaggregate", k=5, to=0.01)
        return with_field(health, "settlement_amount", grouped), "health_records"
    return with_limits(policies[name]), name


VARIANTS = [
    "health_records",
    "health_nulls",
    "health_coarser",
    "health_entropy",
    "health_noise",
    "health_microaggregate",
    "enterprise_credit",
    "social_insurance",
]


@pytest.mark.parametrize("name", VARIANTS)
def test_a_build_equals_the_plain_computation(
    raw: dict[str, Path], tmp_path: Path, name: str
) -> None:
    policy, dataset = variant(name)
    k = policy.privacy.k_anonymity
    expected = reference(policy, raw[dataset], k)
    got = built(policy, raw[dataset], tmp_path / "view.parquet", k)
    assert expected["rows_suppressed"] > 0  # suppression has work to do
    assert got.pop("rows") == expected.pop("rows")
    for figure in ("records_below_k_share", "average_prosecutor_risk"):
        assert got.pop(figure) == pytest.approx(expected.pop(figure))
    assert got == expected


def test_dictionary_columns_give_the_same_view(raw: dict[str, Path], tmp_path: Path) -> None:
    """Text columns stored dictionary-encoded are read as such; the view is the same."""
    policy, _ = variant("health_records")
    table = pq.read_table(raw["health_records"])
    columns = {
        name: (
            column.dictionary_encode()
            if pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
            else column
        )
        for name, column in zip(table.column_names, table.columns, strict=True)
    }
    encoded = tmp_path / "health_records.parquet"
    pq.write_table(pa.table(columns), encoded)
    assert pa.types.is_dictionary(pq.read_schema(encoded).field("district").type)
    plain = built(policy, raw["health_records"], tmp_path / "plain.parquet", 5)
    dictionary = built(policy, encoded, tmp_path / "dictionary.parquet", 5)
    assert dictionary == plain
