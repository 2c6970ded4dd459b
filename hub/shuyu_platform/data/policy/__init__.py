"""Dataset policies: what each dataset may show, to whom, and how it is masked.

Every dataset Shuyu serves has one policy file, ``<policies_dir>/<dataset>.yaml``. A policy
carries:

* the dataset's public catalogue metadata (name, providing department, summary, update
  frequency, provision modes), which :meth:`DatasetPolicy.catalogue_entry` turns into the
  catalogue entry every signed-in user may read;
* one :class:`FieldPolicy` per column: its classification grade (``L1``-``L4``), its
  masking rule (used to build each tenant's masked Parquet view), whether it is a direct
  identifier (used by the egress identifier scan) and its differential-privacy bounds
  (used by the DP query service);
* the dataset's re-identification safeguards (:class:`Privacy`): the privacy unit, the
  quasi-identifiers and the k of k-anonymity, and the default DP budget.

Policies are validated once, at start-up, by :func:`load_policies`. The models forbid
unknown keys (so a typo is an error, never a silently ignored setting) and check every
rule against the field it applies to. Any problem stops start-up with a
:class:`PolicyError` that lists every problem found, one per line, each naming the file,
the line and the key path::

    policies/health_records.yaml:85: fields.dosage_mg.masking.to: Input should be greater than 0

Only YAML's safe subset is read (no Python tags), and a key repeated in one mapping is an
error rather than PyYAML's silent "last one wins".


Modules: :mod:`.vocabulary` (problems, grades, types, the strict base), :mod:`.masking_rules`,
:mod:`.fields`, :mod:`.dataset` (the whole policy) and :mod:`.loading` (files, YAML line
numbers, error messages).
"""

from .dataset import (
    BudgetPeriod,
    Catalogue,
    DatasetDp,
    DatasetPolicy,
    Disclosure,
    LDiversity,
    Privacy,
    Production,
    RiskLimits,
)
from .fields import DpSettings, FieldPolicy
from .loading import load_policies, load_policy, policy_digest
from .masking_rules import (
    MASKING_RULES,
    BucketMasking,
    DateShiftMasking,
    DropMasking,
    GeneralizeMasking,
    KeepMasking,
    Masking,
    MicroaggregateMasking,
    NoiseMasking,
    PartialMasking,
    PseudonymizeMasking,
    RoundMasking,
    TopCodeMasking,
)
from .vocabulary import (
    GRADE_DESCRIPTIONS,
    FieldType,
    Grade,
    PolicyError,
    Problem,
    ProvisionMode,
    UpdateFrequency,
)

__all__ = [
    "GRADE_DESCRIPTIONS",
    "MASKING_RULES",
    "BucketMasking",
    "BudgetPeriod",
    "Catalogue",
    "DatasetDp",
    "DatasetPolicy",
    "DateShiftMasking",
    "Disclosure",
    "DpSettings",
    "DropMasking",
    "FieldPolicy",
    "FieldType",
    "GeneralizeMasking",
    "Grade",
    "KeepMasking",
    "LDiversity",
    "Masking",
    "MicroaggregateMasking",
    "NoiseMasking",
    "PartialMasking",
    "PolicyError",
    "Privacy",
    "Problem",
    "Production",
    "ProvisionMode",
    "PseudonymizeMasking",
    "RiskLimits",
    "RoundMasking",
    "TopCodeMasking",
    "UpdateFrequency",
    "load_policies",
    "load_policy",
    "policy_digest",
]
