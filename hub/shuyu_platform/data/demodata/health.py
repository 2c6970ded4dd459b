"""``health_records`` (居民健康档案): one diagnosis per resident."""

from __future__ import annotations

import functools
from datetime import date
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from .columns import (
    _ascii_column,
    _BoolArray,
    _Categorical,
    _ChunkBuilder,
    _date32,
    _digits,
    _epoch_day,
    _FloatArray,
    _IntArray,
    _money,
    _Permutation,
    _text,
    _vocabulary,
)
from .people import (
    _DISTRICT_NAMES,
    _DISTRICT_WEIGHTS,
    _PATIENT_AGE_CDF,
    _ages,
    _birth_days,
    _IdCardIssuer,
    _names,
    _phones,
    _sex_column,
)

# ================================================================== health_records


class _Diagnosis(NamedTuple):
    """One ICD-11 code with what it implies for the rest of a health record."""

    code: str
    weight: float  # relative frequency
    dose_mg: float  # typical single dose of the usual drug
    cost: float  # median settlement amount, yuan
    imaging: float  # relative propensity to have an imaging study
    surgery: float  # relative propensity to have an operation
    sex: str  # "M" / "F" if sex-specific, "" otherwise
    min_age: int
    max_age: int


_DIAGNOSES: Final = (
    _Diagnosis("BA00", 14.0, 5.0, 260, 0.15, 0.0, "", 25, 95),  # essential hypertension
    _Diagnosis("5A11", 9.0, 1000.0, 380, 0.10, 0.0, "", 25, 95),  # type 2 diabetes
    _Diagnosis("5A10", 0.6, 20.0, 900, 0.10, 0.0, "", 3, 80),  # type 1 diabetes
    _Diagnosis("5C80.0", 2.0, 20.0, 260, 0.10, 0.0, "", 25, 95),  # hypercholesterolaemia
    _Diagnosis("5B81", 0.6, 120.0, 300, 0.20, 0.02, "", 10, 80),  # obesity
    _Diagnosis("CA07.0", 10.0, 500.0, 120, 0.10, 0.0, "", 0, 95),  # acute URTI
    _Diagnosis("CA02", 5.0, 250.0, 90, 0.05, 0.0, "", 0, 95),  # acute pharyngitis
    _Diagnosis("CA40.Z", 5.0, 1000.0, 4200, 2.00, 0.0, "", 0, 95),  # pneumonia
    _Diagnosis("CA23", 3.0, 0.4, 350, 0.30, 0.0, "", 3, 95),  # asthma
    _Diagnosis("CA22", 3.0, 0.02, 3800, 0.80, 0.0, "", 40, 95),  # COPD
    _Diagnosis("1E32", 3.0, 75.0, 150, 0.15, 0.0, "", 0, 95),  # influenza
    _Diagnosis("RA01.0", 1.5, 300.0, 600, 0.60, 0.0, "", 0, 95),  # COVID-19
    _Diagnosis("DA63", 2.0, 20.0, 1600, 0.80, 0.10, "", 18, 95),  # gastric ulcer
    _Diagnosis("DA42", 4.0, 20.0, 300, 0.30, 0.0, "", 15, 95),  # gastritis
    _Diagnosis("DB92", 2.0, 140.0, 280, 1.00, 0.0, "", 20, 90),  # NAFLD
    _Diagnosis("DC11", 1.5, 250.0, 9000, 2.00, 6.00, "", 20, 90),  # cholelithiasis
    _Diagnosis("DB10", 1.0, 1000.0, 8500, 2.00, 10.0, "", 5, 85),  # appendicitis
    _Diagnosis("2C25", 1.2, 250.0, 32000, 2.50, 4.00, "", 35, 95),  # lung cancer
    _Diagnosis("2C61", 0.8, 20.0, 28000, 2.50, 7.00, "F", 25, 90),  # breast cancer
    _Diagnosis("2B90", 0.6, 1000.0, 30000, 2.50, 7.00, "", 30, 95),  # colon cancer
    _Diagnosis("2C12", 0.6, 400.0, 35000, 2.50, 4.00, "", 30, 95),  # liver cancer
    _Diagnosis("2B72", 0.6, 60.0, 30000, 2.50, 7.00, "", 30, 95),  # stomach cancer
    _Diagnosis("2C82", 0.4, 50.0, 22000, 2.00, 4.00, "M", 50, 95),  # prostate cancer
    _Diagnosis("2C77", 0.3, 50.0, 26000, 2.00, 6.00, "F", 25, 85),  # cervical cancer
    _Diagnosis("8B11", 2.0, 100.0, 16000, 2.50, 1.00, "", 35, 95),  # cerebral ischaemic stroke
    _Diagnosis("8B00", 0.6, 20.0, 28000, 2.50, 4.50, "", 35, 95),  # intracerebral haemorrhage
    _Diagnosis("BA41", 0.8, 75.0, 42000, 2.50, 8.00, "", 30, 95),  # acute myocardial infarction
    _Diagnosis("BA40", 2.5, 20.0, 1800, 0.80, 0.60, "", 35, 95),  # angina pectoris
    _Diagnosis("BD10", 1.2, 40.0, 9800, 1.50, 0.20, "", 40, 95),  # congestive heart failure
    _Diagnosis("BC81.3", 1.2, 15.0, 6000, 0.80, 1.00, "", 40, 95),  # atrial fibrillation
    _Diagnosis("FA00", 0.6, 200.0, 38000, 2.00, 7.00, "", 45, 95),  # osteoarthritis of hip
    _Diagnosis("FA01", 2.0, 200.0, 2100, 1.00, 1.20, "", 40, 95),  # osteoarthritis of knee
    _Diagnosis("FA20", 0.6, 15.0, 2400, 0.80, 0.10, "", 20, 90),  # rheumatoid arthritis
    _Diagnosis("FB83.1", 1.2, 70.0, 900, 1.20, 0.0, "", 45, 95),  # osteoporosis
    _Diagnosis("ME84.2", 3.0, 400.0, 350, 0.70, 0.10, "", 18, 95),  # low back pain
    _Diagnosis("NC72", 0.8, 40.0, 30000, 2.50, 9.00, "", 5, 95),  # fracture of femur
    _Diagnosis("GB61", 1.0, 800.0, 12000, 0.60, 0.60, "", 20, 95),  # chronic kidney disease
    _Diagnosis("GC08", 2.0, 500.0, 220, 0.20, 0.0, "", 0, 95),  # urinary tract infection
    _Diagnosis("GA90", 1.0, 0.4, 1200, 1.00, 1.20, "M", 45, 95),  # hyperplasia of prostate
    _Diagnosis("JA00", 0.5, 200.0, 2600, 1.50, 4.00, "F", 16, 45),  # abortion
    _Diagnosis("6A70", 1.0, 20.0, 800, 0.05, 0.0, "", 12, 95),  # depressive episode
    _Diagnosis("6B00", 0.8, 75.0, 600, 0.05, 0.0, "", 15, 95),  # generalised anxiety
    _Diagnosis("7A00", 1.2, 7.5, 300, 0.05, 0.0, "", 18, 95),  # chronic insomnia
    _Diagnosis("8A80", 1.0, 50.0, 400, 0.40, 0.0, "", 10, 80),  # migraine
    _Diagnosis("1E51.0", 1.0, 0.5, 1500, 0.80, 0.0, "", 15, 90),  # chronic hepatitis B
    _Diagnosis("9B10", 1.2, 1.0, 6500, 0.30, 8.00, "", 45, 95),  # age-related cataract
    _Diagnosis("3A00", 1.0, 300.0, 260, 0.05, 0.0, "", 0, 95),  # iron deficiency anaemia
    _Diagnosis("EA80", 1.0, 10.0, 180, 0.0, 0.0, "", 0, 80),  # atopic eczema
)

#: Share of health records carrying an imaging study / a surgery record.
IMAGING_RATE: Final[float] = 0.35
SURGERY_RATE: Final[float] = 0.08


def _calibrate(weights: _FloatArray, propensity: _FloatArray, rate: float) -> _FloatArray:
    """Per-category probabilities proportional to ``propensity`` (capped at 1) whose
    ``weights``-weighted mean is exactly ``rate``."""
    share = weights / weights.sum()
    low, high = 0.0, 1.0 / max(float(propensity[propensity > 0].min()), 1e-9)
    for _ in range(100):
        scale = (low + high) / 2
        if float(share @ np.minimum(1.0, scale * propensity)) < rate:
            low = scale
        else:
            high = scale
    return np.minimum(1.0, high * propensity)


_ICD_CODES: Final = _vocabulary(d.code for d in _DIAGNOSES)
_ICD_WEIGHTS: Final = np.array([d.weight for d in _DIAGNOSES])
_ICD: Final = _Categorical(_ICD_WEIGHTS)
_ICD_DOSE: Final = np.array([d.dose_mg for d in _DIAGNOSES])
_ICD_COST: Final = np.array([d.cost for d in _DIAGNOSES], dtype=np.float64)
_ICD_SEX: Final = np.array([d.sex for d in _DIAGNOSES])
_ICD_MIN_AGE: Final = np.array([d.min_age for d in _DIAGNOSES], dtype=np.int64)
_ICD_MAX_AGE: Final = np.array([d.max_age for d in _DIAGNOSES], dtype=np.int64)
_ICD_IMAGING: Final = _calibrate(
    _ICD_WEIGHTS, np.array([d.imaging for d in _DIAGNOSES]), IMAGING_RATE
)
_ICD_SURGERY: Final = _calibrate(
    _ICD_WEIGHTS, np.array([d.surgery for d in _DIAGNOSES]), SURGERY_RATE
)

_DIAGNOSIS_FIRST_DAY: Final = _epoch_day(date(2023, 1, 1))
_DIAGNOSIS_DAYS: Final = _epoch_day(date(2025, 1, 1)) - _DIAGNOSIS_FIRST_DAY
#: Hour-of-day profile of clinic activity (morning and afternoon sessions).
_DIAGNOSIS_HOURS: Final = _Categorical(
    [0.2, 0.15, 0.1, 0.1, 0.1, 0.15, 0.3, 0.8, 2.5, 3.2, 3.0, 2.4,
     1.0, 0.9, 2.3, 2.6, 2.4, 1.8, 0.9, 0.7, 0.6, 0.5, 0.4, 0.3]
)  # fmt: skip
#: Share of settlements inflated into very large outliers, and the inflation range.
_OUTLIER_RATE: Final = 0.001
_OUTLIER_FACTOR: Final = (15.0, 60.0)


def _health_builder(seed: int, total: int) -> _ChunkBuilder:
    return functools.partial(
        _health_chunk,
        person_ids=_Permutation.derive(seed, "health_records/person_id", 10**5, 10**6),
        imaging=_Permutation.derive(seed, "health_records/imaging_number", 10**4, 10**4),
        surgery=_Permutation.derive(seed, "health_records/surgery_record_number", 10**3, 10**4),
        id_cards=_IdCardIssuer(seed, "health_records"),
    )


def _health_chunk(
    rng: np.random.Generator,
    start: int,
    n: int,
    *,
    person_ids: _Permutation,
    imaging: _Permutation,
    surgery: _Permutation,
    id_cards: _IdCardIssuer,
) -> list[pa.Array]:
    icd = _ICD.sample(rng, n)
    day = _DIAGNOSIS_FIRST_DAY + rng.integers(0, _DIAGNOSIS_DAYS, n)
    seconds = _DIAGNOSIS_HOURS.sample(rng, n) * 3600 + rng.integers(0, 3600, n)
    male = _sex_for_diagnoses(rng, icd)
    ages = _ages(rng, _PATIENT_AGE_CDF, _ICD_MIN_AGE[icd], _ICD_MAX_AGE[icd])
    birth = _birth_days(rng, day, ages)
    district = _DISTRICT_WEIGHTS.sample(rng, n)
    year = 2023 + (day >= _epoch_day(date(2024, 1, 1))).astype(np.int64)
    return [
        _ascii_column([b"P", _digits(person_ids(start, n), 11)], n),
        _names(rng, male),
        id_cards.issue(district, birth, male),
        _phones(rng, n),
        _sex_column(male),
        _date32(birth),
        _text(_DISTRICT_NAMES, district),
        pa.array(day * 86_400 + seconds, type=pa.timestamp("s")),
        _text(_ICD_CODES, icd),
        _record_numbers(b"MYIMG", year, _digits(imaging(start, n), 8), _ICD_IMAGING[icd], rng),
        _money(np.maximum(0.01, _ICD_DOSE[icd] * rng.lognormal(0.0, 0.3, n))),
        _money(_settlements(rng, _ICD_COST[icd])),
        _record_numbers(b"SS", year, _digits(surgery(start, n), 7), _ICD_SURGERY[icd], rng),
    ]


def _sex_for_diagnoses(rng: np.random.Generator, icd: _IntArray) -> _BoolArray:
    """Sex drawn 51:49 male, forced where the diagnosis is sex-specific."""
    male = rng.random(icd.size) < 0.51
    sex = _ICD_SEX[icd]
    return np.where(sex == "M", True, np.where(sex == "F", False, male))


def _settlements(rng: np.random.Generator, median: _FloatArray) -> _FloatArray:
    """Lognormal settlement amounts with a heavy tail and rare very large outliers."""
    n = median.size
    amounts = median * rng.lognormal(0.0, 0.9, n)
    outlier = rng.random(n) < _OUTLIER_RATE
    amounts = np.where(outlier, amounts * rng.uniform(*_OUTLIER_FACTOR, n), amounts)
    return np.maximum(amounts, 1.0)


def _record_numbers(
    prefix: bytes,
    year: _IntArray,
    serial: npt.NDArray[np.uint8],
    probability: _FloatArray,
    rng: np.random.Generator,
) -> pa.Array:
    """``prefix + year + serial`` for rows drawn with ``probability``, null elsewhere."""
    present = rng.random(year.size) < probability
    return _ascii_column([prefix, _digits(year, 4), serial], year.size, present)
