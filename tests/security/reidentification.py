"""Re-identification attacks on masked views, with the raw file as ground truth.

The attacker of each function knows some people's attributes exactly (an insurer its
customers' sex, birth date, district and settlement amount; an employer its staff's
insurance, contribution base and months paid; anyone the public enterprise register)
and the public policy, so it can mask what it knows the way the view is masked. It then
looks its people up in the view. The tests in this folder and the before/after figures
of the view policies both use these functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shuyu_platform.data import masking
from shuyu_platform.data.policy import DatasetPolicy
from shuyu_platform.data.views import generalisation_levels

#: What each attacker knows exactly, per dataset.
KNOWN: dict[str, list[str]] = {
    "health_records": ["sex", "birth_date", "district", "settlement_amount"],
    "social_insurance": ["insurance_type", "district", "contribution_base", "months_paid"],
    "enterprise_credit": ["industry", "district", "established_date", "registered_capital"],
}
#: What each attacker wants to learn.
TARGET: dict[str, str | None] = {
    "health_records": "icd11_code",
    "social_insurance": None,
    "enterprise_credit": None,
}


@dataclass(frozen=True)
class AttackResult:
    """How an attack on one view went."""

    people: int
    """People the attacker looked up (all in the raw file)."""
    unique: int
    """People matched to exactly one view row."""
    ambiguous: int
    """People matched to more than one row."""
    unmatched: int
    """People matched to no row (suppressed, or outside the view)."""
    attribute_disclosed: int
    """People matched to rows that all share one value of the target attribute."""

    @property
    def unique_share(self) -> float:
        return self.unique / self.people

    @property
    def disclosed_share(self) -> float:
        return self.attribute_disclosed / self.people


def attack(
    policy: DatasetPolicy,
    raw_path: Path,
    view_path: Path,
    *,
    people: int = 1000,
    seed: int = 14,
    known: list[str] | None = None,
    target: str | None = None,
) -> AttackResult:
    """Look ``people`` random raw rows up in the view by what the attacker knows."""
    known = known or KNOWN[policy.dataset]
    target = target if target is not None else TARGET.get(policy.dataset)
    schema = pq.read_schema(view_path)
    meta = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
    fields = json.loads(meta["shuyu.fields"])
    level = int(meta.get("shuyu.generalisation_level", "0"))
    reference = date.fromisoformat(meta["shuyu.reference_date"])
    masked_like_view = generalisation_levels(policy, fields)[level]

    raw = pq.read_table(raw_path, columns=known)
    rng = np.random.default_rng(seed)
    picked = raw.take(pa.array(rng.choice(raw.num_rows, size=people, replace=False)))
    knowledge = masking.mask_table(
        picked, masked_like_view, known, key=b"the attacker's own key!", reference_date=reference
    ).to_pandas()

    view = pq.read_table(view_path, columns=known + ([target] if target else [])).to_pandas()
    grouped = view.groupby(known, dropna=False)
    sizes = grouped.size().rename("rows").reset_index()
    if target:
        values = grouped[target].nunique(dropna=False).rename("values").reset_index()
        sizes = sizes.merge(values, on=known)
    else:
        sizes["values"] = 2
    looked_up = knowledge.merge(sizes, on=known, how="left")
    rows = looked_up["rows"].fillna(0).to_numpy()
    return AttackResult(
        people=people,
        unique=int((rows == 1).sum()),
        ambiguous=int((rows > 1).sum()),
        unmatched=int((rows == 0).sum()),
        attribute_disclosed=int(((rows > 0) & (looked_up["values"].fillna(2) == 1)).sum()),
    )


def unique_share_of_view(view_path: Path, known: list[str]) -> float:
    """Share of the view's rows unique on the ``known`` columns."""
    view = pq.read_table(view_path, columns=known).to_pandas()
    counts = view.groupby(known, dropna=False)[known[0]].transform("size")
    return float((counts == 1).mean()) if len(view) else 0.0
