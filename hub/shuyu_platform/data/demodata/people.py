"""Residents: districts, names, ages and birth dates, ID-card numbers, mobiles, credit codes."""

from __future__ import annotations

from datetime import date
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from shuyu_platform.data.identifiers import build_id_cards, build_org_codes, build_usccs

from .columns import (
    _ascii_column,
    _BoolArray,
    _byte_matrix,
    _Categorical,
    _concat,
    _digits,
    _epoch_day,
    _FloatArray,
    _IntArray,
    _mix,
    _Permutation,
    _rng,
    _text,
    _vocabulary,
)

#: Mianyang's county-level divisions: Chinese name -> GB/T 2260 region code.
DISTRICTS: Final[dict[str, str]] = {
    "涪城区": "510703",
    "游仙区": "510704",
    "安州区": "510705",
    "三台县": "510722",
    "盐亭县": "510723",
    "梓潼县": "510725",
    "北川羌族自治县": "510726",
    "平武县": "510727",
    "江油市": "510781",
}
"""``progress(dataset, rows_done, rows_total)``, called after each chunk is written."""


# =================================================================== shared values

_DISTRICT_NAMES: Final = _vocabulary(DISTRICTS)
_DISTRICT_CODES: Final = np.array([int(code) for code in DISTRICTS.values()], dtype=np.int64)
#: Population weights, in the order of :data:`DISTRICTS`.
_DISTRICT_WEIGHTS: Final = _Categorical([24, 16, 8, 12, 7, 6, 4, 3, 20])

# Surnames in rough order of frequency (Sichuan leans on 李 and 王), Zipf-like weights.
_SURNAME_LIST: Final = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏"
    "魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵"
    "万钱严覃武戴莫孔向汤敬蒲母苟"
)
_SURNAMES: Final = _vocabulary([*_SURNAME_LIST, "欧阳", "司马", "诸葛"])
_SURNAME_WEIGHTS: Final = _Categorical(1.0 / (np.arange(len(_SURNAMES)) + 10.0) ** 1.5)

_MALE_GIVEN: Final = tuple(
    dict.fromkeys(
        "伟强磊军勇杰涛明超刚平辉鹏华飞斌宇浩凯健俊帆帅旭宁龙林波成国建文志兵峰东亮海鑫洋雷锋阳"
        "晨博宏春坤毅诚彬松柏山川江河斌昊然轩睿哲翔泽豪铭楠鸿振兴福贵德义荣昌盛发金永庆长云天"
        "子逸宸皓霖煜锐钧凡航聪晖鹤"
    )
)
_FEMALE_GIVEN: Final = tuple(
    dict.fromkeys(
        "芳娜敏静丽艳娟霞秀英玲燕萍红梅琳婷雪慧倩颖琴兰丹洁蓉莉晶月欣怡佳琪璐瑶悦雯萱涵馨妍彤楠"
        "茜岚琼凤桂芬淑珍翠玉蕾薇菲露莹媛婧姗思雨晓梦可诗梓嘉佩靖冰青美春云霏若汐语沫依伊菡"
        "萌蔓萍素香桃荷"
    )
)
_GIVEN: Final = _vocabulary([*_MALE_GIVEN, *_FEMALE_GIVEN, ""])
_NO_SECOND_CHAR: Final = len(_MALE_GIVEN) + len(_FEMALE_GIVEN)

# Three-digit mobile number segments: long-established ones of the three carriers, then
# newer ones, which are less common.
_ESTABLISHED_SEGMENTS: Final = (
    134, 135, 136, 137, 138, 139, 150, 151, 152, 157, 158, 159, 182, 183, 187, 188, 198,
    130, 131, 132, 155, 156, 185, 186, 133, 153, 180, 181, 189, 199, 177, 173, 176, 175,
    178, 184,
)  # fmt: skip
_NEWER_SEGMENTS: Final = (147, 166, 191, 195, 172, 196, 190, 192, 197, 193)
_MOBILE_PREFIXES: Final = np.array([*_ESTABLISHED_SEGMENTS, *_NEWER_SEGMENTS], dtype=np.int64)
_MOBILE_SEGMENTS: Final = _Categorical(
    [3] * len(_ESTABLISHED_SEGMENTS) + [1] * len(_NEWER_SEGMENTS)
)

# Population age structure (0..95), interpolated from a census-like pyramid.
_AGE_ANCHORS: Final = (0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95)
_AGE_ANCHOR_WEIGHTS: Final = (
    0.80, 0.95, 1.00, 0.90, 0.85, 0.80, 1.00, 1.00, 0.90, 1.10,
    1.30, 1.30, 1.10, 1.00, 0.80, 0.55, 0.35, 0.18, 0.06, 0.01,
)  # fmt: skip
_AGES: Final = np.arange(96)
_POPULATION_AGE: Final = np.interp(_AGES, _AGE_ANCHORS, _AGE_ANCHOR_WEIGHTS)
#: Older people use health services more often.
_PATIENT_AGE: Final = _POPULATION_AGE * (0.5 + _AGES / 30.0)

_DAYS_PER_YEAR: Final = 365.2425


def _age_cdf(weights: _FloatArray) -> _FloatArray:
    cdf = np.concatenate([[0.0], np.cumsum(weights)])
    return cdf / cdf[-1]


_POPULATION_AGE_CDF: Final = _age_cdf(_POPULATION_AGE)
_PATIENT_AGE_CDF: Final = _age_cdf(_PATIENT_AGE)


def _ages(rng: np.random.Generator, cdf: _FloatArray, low: _IntArray, high: _IntArray) -> _IntArray:
    """Draw whole ages from the distribution ``cdf``, truncated to ``low..high`` per row."""
    lower, upper = cdf[low], cdf[high + 1]
    u = lower + rng.random(low.size) * (upper - lower)
    age = np.searchsorted(cdf, u, side="right") - 1
    return np.clip(age, low, high).astype(np.int64)


def _birth_days(rng: np.random.Generator, reference_days: _IntArray, ages: _IntArray) -> _IntArray:
    """Birth dates (epoch days) of people aged ``ages`` (completed years) on the reference day."""
    back = np.floor((ages + rng.random(ages.size)) * _DAYS_PER_YEAR).astype(np.int64)
    return reference_days - back


def _names(rng: np.random.Generator, male: _BoolArray) -> pa.Array:
    """Chinese names: a surname plus one or two given-name characters suited to the sex."""
    n = male.size
    surname = _SURNAME_WEIGHTS.sample(rng, n)
    first = _given_characters(rng, male)
    second = np.where(rng.random(n) < 0.7, _given_characters(rng, male), _NO_SECOND_CHAR)
    return _concat(_text(_SURNAMES, surname), _text(_GIVEN, first), _text(_GIVEN, second))


def _given_characters(rng: np.random.Generator, male: _BoolArray) -> _IntArray:
    n = male.size
    male_pick = rng.integers(0, len(_MALE_GIVEN), n)
    female_pick = len(_MALE_GIVEN) + rng.integers(0, len(_FEMALE_GIVEN), n)
    return np.where(male, male_pick, female_pick)


_BIRTH_BASE_DAY: Final = _epoch_day(date(1900, 1, 1))
_BIRTH_SPAN_DAYS: Final = _epoch_day(date(2025, 1, 1)) - _BIRTH_BASE_DAY
#: Sequence numbers per sex: sequence = 2k + (1 if male else 0) for k in 1..499 (a prime).
_SEQUENCES_PER_SEX: Final = 499


class _IdCardIssuer:
    """Issues ID card numbers as a registry would: people who share a region, birth date and
    sex get distinct sequence numbers, so numbers are unique within a dataset (up to 499
    such people, the capacity of the format itself).

    It remembers what it issued, so chunks must be issued in order (as generation does).
    """

    def __init__(self, seed: int, label: str) -> None:
        self._issued = np.zeros(len(DISTRICTS) * _BIRTH_SPAN_DAYS * 2, dtype=np.int64)
        rng = _rng(seed, "id-card-issuer", label)
        self._keys = (int(rng.integers(0, 2**63)), int(rng.integers(0, 2**63)))

    def issue(self, districts: _IntArray, birth_days: _IntArray, male: _BoolArray) -> pa.Array:
        """Valid GB 11643 numbers agreeing with each row's district, birth date and sex."""
        offsets = birth_days - _BIRTH_BASE_DAY
        if offsets.size and (offsets.min() < 0 or offsets.max() >= _BIRTH_SPAN_DAYS):
            raise ValueError("birth dates must fall in 1900..2024")
        cell = (districts * _BIRTH_SPAN_DAYS + offsets) * 2 + male.astype(np.int64)
        occurrence = self._issued[cell] + _rank_within_groups(cell)
        cells, counts = np.unique(cell, return_counts=True)
        self._issued[cells] += counts
        # A per-cell affine permutation of 0..498 spreads the sequence numbers.
        key = cell.astype(np.uint64)
        step = 1 + (_mix(key, self._keys[0]) % np.uint64(_SEQUENCES_PER_SEX - 1)).astype(np.int64)
        shift = (_mix(key, self._keys[1]) % np.uint64(_SEQUENCES_PER_SEX)).astype(np.int64)
        k = 1 + (occurrence * step + shift) % _SEQUENCES_PER_SEX
        cards = build_id_cards(
            _DISTRICT_CODES[districts],
            birth_days.astype("datetime64[D]"),
            2 * k + male.astype(np.int64),
        )
        return _ascii_column([_byte_matrix(cards)], male.size)


def _rank_within_groups(keys: _IntArray) -> _IntArray:
    """For each element, how many earlier elements share its key (0 for the first)."""
    n = keys.size
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    is_first = np.ones(n, dtype=bool)
    is_first[1:] = ordered[1:] != ordered[:-1]
    group_start = np.maximum.accumulate(np.where(is_first, np.arange(n), 0))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - group_start
    return rank


def _phones(rng: np.random.Generator, n: int) -> pa.Array:
    """Valid mainland mobile numbers."""
    prefixes = _MOBILE_PREFIXES[_MOBILE_SEGMENTS.sample(rng, n)]
    numbers = prefixes * 10**8 + rng.integers(0, 10**8, n)
    return _ascii_column([_digits(numbers, 11)], n)


_SEXES: Final = _vocabulary(["F", "M"])


def _sex_column(male: _BoolArray) -> pa.Array:
    return _text(_SEXES, male.astype(np.int64))


def _credit_codes(
    perms: tuple[_Permutation, _Permutation],
    start: int,
    established_days: _IntArray,
    districts: _IntArray,
) -> npt.NDArray[np.bytes_]:
    """Unique GB 32100 codes for enterprise rows ``start..``, registered in ``districts``.

    Enterprises registered since the October 2015 reform get the ``MA6`` organisation
    codes issued in Sichuan since then; older ones keep their all-digit pre-reform codes.
    """
    n = established_days.size
    legacy = _digits(perms[0](start, n), 8)
    reform = np.concatenate(
        [
            np.broadcast_to(np.frombuffer(b"MA6", dtype=np.uint8), (n, 3)),
            _base31(perms[1](start, n), 5),
        ],
        axis=1,
    )
    is_new = (established_days >= _REFORM_DAY)[:, None]
    bodies = np.ascontiguousarray(np.where(is_new, reform, legacy)).view("S8").ravel()
    return build_usccs(_DISTRICT_CODES[districts], build_org_codes(bodies))


_REFORM_DAY: Final = _epoch_day(date(2015, 10, 1))
_USCC_ALPHABET_BYTES: Final = np.frombuffer(b"0123456789ABCDEFGHJKLMNPQRTUWXY", dtype=np.uint8)


def _base31(values: _IntArray, width: int) -> npt.NDArray[np.uint8]:
    """Digits of ``values`` in base 31 written with the credit-code alphabet."""
    powers = 31 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return _USCC_ALPHABET_BYTES[(values[:, None] // powers) % 31]


def _credit_code_permutations(seed: int, label: str) -> tuple[_Permutation, _Permutation]:
    return (
        _Permutation.derive(seed, f"{label}/legacy", 10**4, 10**4),
        _Permutation.derive(seed, f"{label}/reform", 31**2, 31**3),
    )
