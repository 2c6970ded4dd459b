"""Dataset policies bent for view tests on a few thousand demo rows.

The policies' risk limits are tuned for the demo's 100,000 rows; at a few thousand rows
most classes are small, so :func:`lenient` relaxes the limits (k and l-diversity are
still enforced, by suppression). :func:`date_shift_policy` gives health records a rule
keyed per person that the shipped policies do not use on dates.
"""

from __future__ import annotations

from pathlib import Path

from harness import REPO
from shuyu_platform.data.policy import DatasetPolicy, RiskLimits, load_policy


def lenient(policy: DatasetPolicy) -> DatasetPolicy:
    """``policy`` with risk limits a small table meets: the finest level suppressing at
    most 90 % of the rows, at any average risk (k and l still enforced)."""
    limits = RiskLimits(max_average_risk=1.0, max_suppressed_share=0.9)
    privacy = policy.privacy.model_copy(update={"risk_limits": limits})
    return policy.model_copy(update={"privacy": privacy})


def date_shift_policy(folder: Path) -> DatasetPolicy:
    """health_records with birth and diagnosis dates shifted per person, not generalised
    (the policy file is written into ``folder``)."""
    text = (REPO / "policies" / "health_records.yaml").read_text("utf-8")
    for old in ("masking: {rule: generalize, to: year}", "masking: {rule: generalize, to: month}"):
        assert text.count(old) == 1
        text = text.replace(old, "masking: {rule: date_shift, max_days: 30}")
    path = folder / "health_records.yaml"
    path.write_text(text, "utf-8")
    return load_policy(path)
