"""``social_insurance`` (社会保险): insured persons, contributions, benefits, employers."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from .columns import (
    _ascii_column,
    _BoolArray,
    _byte_matrix,
    _Categorical,
    _ChunkBuilder,
    _digits,
    _FloatArray,
    _IntArray,
    _money,
    _Permutation,
    _rng,
    _text,
    _vocabulary,
)
from .enterprise import _SNAPSHOT_DAY, _established_days
from .people import (
    _DISTRICT_CODES,
    _DISTRICT_NAMES,
    _DISTRICT_WEIGHTS,
    _POPULATION_AGE_CDF,
    _ages,
    _birth_days,
    _credit_code_permutations,
    _credit_codes,
    _IdCardIssuer,
    _names,
)

# ================================================================ social_insurance


class _Scheme(NamedTuple):
    """One insurance type with who is covered by it."""

    name: str
    weight: float
    employee: bool  # employee schemes carry an employer credit code
    min_age: int
    max_age: int


_SCHEMES: Final = (
    _Scheme("城镇职工基本养老保险", 25, True, 18, 95),
    _Scheme("城乡居民基本养老保险", 13, False, 16, 95),
    _Scheme("职工基本医疗保险", 24, True, 18, 95),
    _Scheme("城乡居民基本医疗保险", 17, False, 0, 95),
    _Scheme("失业保险", 10, True, 18, 59),
    _Scheme("工伤保险", 7, True, 18, 59),
    _Scheme("生育保险", 4, True, 18, 50),
)
_EMPLOYEE_PENSION, _RESIDENT_PENSION, _EMPLOYEE_MEDICAL, _RESIDENT_MEDICAL = 0, 1, 2, 3
_UNEMPLOYMENT, _WORK_INJURY, _MATERNITY = 4, 5, 6
_SCHEME_NAMES: Final = _vocabulary(s.name for s in _SCHEMES)
_SCHEME: Final = _Categorical([s.weight for s in _SCHEMES])
_SCHEME_EMPLOYEE: Final = np.array([s.employee for s in _SCHEMES])
_SCHEME_MIN_AGE: Final = np.array([s.min_age for s in _SCHEMES], dtype=np.int64)
_SCHEME_MAX_AGE: Final = np.array([s.max_age for s in _SCHEMES], dtype=np.int64)

#: Contribution base bounds (yuan per month) and the statutory minimum for a pension.
_CONTRIBUTION_RANGE: Final = (3000.0, 25000.0)
_MAX_MONTHS: Final = 480
_PENSION_MIN_MONTHS: Final = 180
_RETIREMENT_AGE: Final = (55, 60)  # indexed by "is male"


def _social_builder(seed: int, total: int) -> _ChunkBuilder:
    return functools.partial(
        _social_chunk,
        insured_ids=_Permutation.derive(seed, "social_insurance/insured_id", 10**4, 10**4),
        employers=_employer_pool(seed, total),
        id_cards=_IdCardIssuer(seed, "social_insurance"),
    )


@dataclass(frozen=True)
class _Employers:
    """A fixed pool of employers, drawn with Zipf-like sizes."""

    codes: npt.NDArray[np.uint8]  # (k, 18) credit code bytes
    choice: _Categorical


def _employer_pool(seed: int, total: int) -> _Employers:
    size = min(max(total // 40, 50), 250_000)
    rng = _rng(seed, "social_insurance", "employers")
    perms = _credit_code_permutations(seed, "social_insurance/employers")
    codes = _credit_codes(
        perms, 0, _established_days(rng, size), _DISTRICT_WEIGHTS.sample(rng, size)
    )
    return _Employers(_byte_matrix(codes), _Categorical(1.0 / (np.arange(size) + 1.0) ** 0.9))


def _social_chunk(
    rng: np.random.Generator,
    start: int,
    n: int,
    *,
    insured_ids: _Permutation,
    employers: _Employers,
    id_cards: _IdCardIssuer,
) -> list[pa.Array]:
    scheme = _SCHEME.sample(rng, n)
    male = rng.random(n) < 0.5
    ages = _ages(rng, _POPULATION_AGE_CDF, _SCHEME_MIN_AGE[scheme], _SCHEME_MAX_AGE[scheme])
    birth = _birth_days(rng, np.full(n, _SNAPSHOT_DAY, dtype=np.int64), ages)
    district = _DISTRICT_WEIGHTS.sample(rng, n)
    months = _months_paid(rng, scheme, ages, male)
    employed = _SCHEME_EMPLOYEE[scheme]
    employer = employers.codes[employers.choice.sample(rng, n)]
    region = _digits(_DISTRICT_CODES[district], 6)
    return [
        _ascii_column([b"SI", region, _digits(insured_ids(start, n), 8)], n),
        _names(rng, male),
        id_cards.issue(district, birth, male),
        _text(_SCHEME_NAMES, scheme),
        _money(np.clip(rng.lognormal(np.log(5800.0), 0.45, n), *_CONTRIBUTION_RANGE)),
        pa.array(months.astype(np.int32), type=pa.int32()),
        _money(_benefits(rng, scheme, ages, male, months)),
        _text(_DISTRICT_NAMES, district),
        _ascii_column([employer], n, employed),
    ]


def _retirement_age(male: _BoolArray) -> _IntArray:
    return np.where(male, _RETIREMENT_AGE[1], _RETIREMENT_AGE[0])


def _retired(ages: _IntArray, male: _BoolArray) -> _BoolArray:
    return ages >= _retirement_age(male)


def _months_paid(
    rng: np.random.Generator, scheme: _IntArray, ages: _IntArray, male: _BoolArray
) -> _IntArray:
    """Months of contributions, bounded by the years since the person could start paying."""
    n = scheme.size
    start_age = np.where(scheme == _RESIDENT_MEDICAL, 0, rng.integers(18, 26, n))
    stop_age = np.minimum(ages, _retirement_age(male))
    possible = np.clip((stop_age - start_age) * 12, 0, _MAX_MONTHS)
    months = np.floor(possible * rng.beta(4.0, 1.5, n)).astype(np.int64)
    pensioner = _retired(ages, male) & (scheme == _EMPLOYEE_PENSION)
    return np.where(
        pensioner, np.maximum(months, np.minimum(possible, _PENSION_MIN_MONTHS)), months
    )


def _benefits(
    rng: np.random.Generator,
    scheme: _IntArray,
    ages: _IntArray,
    male: _BoolArray,
    months: _IntArray,
) -> _FloatArray:
    """Monthly pension for pensioners, claim amounts for a minority, 0 for everyone else."""
    n = scheme.size
    u = rng.random(n)
    employee_pension = (1200.0 + months * 9.0) * rng.uniform(0.8, 1.3, n)
    resident_pension = (150.0 + months * 0.8) * rng.uniform(0.9, 1.2, n)
    claims = {
        _EMPLOYEE_PENSION: (
            _retired(ages, male) & (months >= _PENSION_MIN_MONTHS),
            employee_pension,
        ),
        _RESIDENT_PENSION: (ages >= 60, resident_pension),
        _EMPLOYEE_MEDICAL: (u < 0.12, rng.lognormal(np.log(2500.0), 1.1, n)),
        _RESIDENT_MEDICAL: (u < 0.08, rng.lognormal(np.log(1800.0), 1.2, n)),
        _UNEMPLOYMENT: (u < 0.15, rng.uniform(1500.0, 2100.0, n)),
        _WORK_INJURY: (u < 0.05, rng.lognormal(np.log(20000.0), 1.0, n)),
        _MATERNITY: (~male & (u < 0.25), rng.lognormal(np.log(15000.0), 0.4, n)),
    }
    benefit = np.zeros(n)
    for kind, (eligible, amount) in claims.items():
        benefit = np.where((scheme == kind) & eligible, amount, benefit)
    return benefit
