"""Deterministic synthetic *raw* datasets shaped like Mianyang's first public-data catalogue.

The demo and the tests need "government data" to put behind the sandbox: this module
writes it. Each dataset is one Parquet file in the raw zone, ``<raw_dir>/<dataset>.parquet``:

* ``health_records`` (居民健康档案): one diagnosis per resident, with ID card, phone,
  ICD-11 code, settlement amount and optional imaging / surgery record numbers;
* ``enterprise_credit`` (企业信用): enterprises with credit code, legal representative,
  shareholders, registered capital and administrative penalties;
* ``bus_ridership`` (公交线路客流): hourly boardings and alightings per line and station;
* ``social_insurance`` (社会保险): insured persons with insurance type, contribution base,
  months paid, benefits and employer credit code.

Identity-bearing columns are realistic on purpose, because the masking job and the egress
disclosure checks must find them: ID card numbers pass GB 11643 and agree with the row's
sex, birth date and district; credit codes pass GB 32100; phones are mainland mobiles.
Everything else is invented: no row describes a real person or enterprise.

Generation is deterministic and streamed. The same ``(rows, seed)`` always gives the same
table content and the same file bytes (for a given pyarrow version); each dataset draws
from its own random stream, so generating one dataset never changes another. Rows are
built fully vectorised in chunks of :data:`CHUNK_ROWS`, each from a random stream derived
from ``(seed, dataset, chunk index)``, and each chunk is written as one zstd-compressed row
group, so memory stays bounded however many rows are asked for. Files appear atomically:
an interrupted run never leaves a partial ``.parquet`` behind.
"""

from __future__ import annotations

import functools
import hashlib
import operator
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shuyu_platform.core.atomic import fsync_directory
from shuyu_platform.data.identifiers import build_id_cards, build_org_codes, build_usccs

#: Every dataset this module can generate, in catalogue order.
DATASETS: Final[tuple[str, ...]] = (
    "health_records",
    "enterprise_credit",
    "bus_ridership",
    "social_insurance",
)

#: Chinese catalogue titles of the datasets.
DATASET_TITLES: Final[dict[str, str]] = {
    "health_records": "居民健康档案",
    "enterprise_credit": "企业信用",
    "bus_ridership": "公交线路客流",
    "social_insurance": "社会保险",
}

#: Rows generated (and written as one Parquet row group) per chunk. Part of the output
#: format: changing it changes every file.
CHUNK_ROWS: Final[int] = 250_000

#: Largest ``rows`` accepted (keeps derived identifiers unique and arithmetic in 64 bits).
MAX_ROWS: Final[int] = 100_000_000

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

ProgressCallback = Callable[[str, int, int], None]
"""``progress(dataset, rows_done, rows_total)``, called after each chunk is written."""

_IntArray = npt.NDArray[np.int64]
_FloatArray = npt.NDArray[np.float64]
_BoolArray = npt.NDArray[np.bool_]


# =============================================================================== API


def schema(dataset: str) -> pa.Schema:
    """Return the Arrow schema of ``dataset``: column order, types and nullability.

    This is the schema of the tables written. Parquet has no second-resolution
    timestamps, so ``health_records.diagnosis_time`` (``timestamp[s]``) is stored as
    milliseconds and reads back as ``timestamp[ms]``; ``table.cast(schema(dataset))``
    restores the declared types losslessly.
    """
    return _SCHEMAS[_require_dataset(dataset)]


def row_count(dataset: str, rows: int) -> int:
    """Return how many rows ``dataset`` gets when :func:`generate` is asked for ``rows``.

    ``enterprise_credit`` gets ``max(rows // 20, 50)``; every other dataset gets ``rows``.
    """
    rows = _require_rows(rows)
    if _require_dataset(dataset) == "enterprise_credit":
        return max(rows // 20, 50)
    return rows


def generate(
    raw_dir: Path,
    *,
    rows: int = 100_000,
    seed: int = 20240501,
    datasets: Iterable[str] = DATASETS,
    progress: ProgressCallback | None = None,
) -> dict[str, Path]:
    """Write ``raw_dir/<dataset>.parquet`` for each of ``datasets`` and return the paths.

    ``rows`` sets the size (see :func:`row_count`), ``seed`` the content: the same pair
    always produces byte-identical files. ``datasets`` may also be a single dataset name.
    Unknown names raise :class:`ValueError` before anything is written. Each file is
    written to ``<name>.parquet.tmp-<pid>``, fsynced and renamed over the final name; on
    any exception the temporary file is removed and the exception re-raised, leaving any
    previous file at the final path untouched.
    """
    rows = _require_rows(rows)
    seed = _require_seed(seed)
    names = _resolve_datasets(datasets)
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name in names:
        path = raw_dir / f"{name}.parquet"
        _write_dataset(path, name, row_count(name, rows), seed, progress)
        written[name] = path
    return written


def _require_dataset(dataset: str) -> str:
    if dataset not in _SCHEMAS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    return dataset


def _require_rows(rows: int) -> int:
    rows = operator.index(rows)
    if not 0 <= rows <= MAX_ROWS:
        raise ValueError(f"rows must be in 0..{MAX_ROWS}, got {rows}")
    return rows


def _require_seed(seed: int) -> int:
    if isinstance(seed, bool):
        raise TypeError("seed must be an integer, not a bool")
    return operator.index(seed)


def _resolve_datasets(datasets: Iterable[str]) -> tuple[str, ...]:
    names = (datasets,) if isinstance(datasets, str) else tuple(datasets)
    return tuple(dict.fromkeys(_require_dataset(name) for name in names))


# ========================================================================== writing


def _write_dataset(
    path: Path, dataset: str, total: int, seed: int, progress: ProgressCallback | None
) -> None:
    """Generate ``dataset`` chunk by chunk and write it atomically to ``path``."""
    done = 0

    def chunk_written(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(dataset, done, total)

    _write_atomically(path, schema(dataset), _tables(dataset, total, seed), chunk_written)


def _tables(dataset: str, total: int, seed: int) -> Iterator[pa.Table]:
    """Yield the dataset's chunks as Arrow tables, in order."""
    build = _BUILDERS[dataset](seed, total)
    target = schema(dataset)
    for index, start in enumerate(range(0, total, CHUNK_ROWS)):
        n = min(CHUNK_ROWS, total - start)
        columns = build(_rng(seed, dataset, "chunk", index), start, n)
        yield pa.Table.from_arrays(columns, schema=target)


def _write_atomically(
    path: Path,
    table_schema: pa.Schema,
    tables: Iterable[pa.Table],
    chunk_written: Callable[[int], None],
) -> None:
    """Stream ``tables`` into ``path`` via a fsynced temporary file and ``os.replace``."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as sink:
            with pq.ParquetWriter(sink, table_schema, compression="zstd") as writer:
                for table in tables:
                    writer.write_table(table, row_group_size=table.num_rows)
                    chunk_written(table.num_rows)
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


# ========================================================================= seeding


def _seed_sequence(seed: int, *labels: str | int) -> np.random.SeedSequence:
    """A seed sequence derived from ``seed`` and ``labels`` through SHA-256 (stable)."""
    text = "\x1f".join(["shuyu.demodata.v1", str(seed), *(str(label) for label in labels)])
    return np.random.SeedSequence(int.from_bytes(hashlib.sha256(text.encode()).digest(), "big"))


def _rng(seed: int, *labels: str | int) -> np.random.Generator:
    """An independent PCG64 generator for ``(seed, *labels)``."""
    return np.random.Generator(np.random.PCG64(_seed_sequence(seed, *labels)))


_FEISTEL_ROUNDS: Final = 6


@dataclass(frozen=True)
class _Permutation:
    """A seeded bijection of ``0 .. high*low - 1``: distinct rows get distinct numbers.

    A mixed-radix Feistel network (the construction of format-preserving encryption):
    an index is split into a ``high`` and a ``low`` digit, and each round adds a keyed hash
    of one half to the other. Any round function gives a bijection, so identifiers derived
    from row indices are unique by construction yet look random. Row indices wrap around
    modulo ``high*low``: numbers are unique among the first ``high*low`` rows.
    """

    high: int
    low: int
    keys: tuple[int, ...]

    @classmethod
    def derive(cls, seed: int, label: str, high: int, low: int) -> _Permutation:
        """The permutation of ``0 .. high*low - 1`` for ``(seed, label)``."""
        rng = _rng(seed, "permutation", label)
        return cls(high, low, tuple(int(k) for k in rng.integers(0, 2**63, _FEISTEL_ROUNDS)))

    def __call__(self, start: int, n: int) -> _IntArray:
        """Images of the row indices ``start .. start+n-1``."""
        index = np.arange(start, start + n, dtype=np.uint64) % np.uint64(self.high * self.low)
        left, right = index // np.uint64(self.low), index % np.uint64(self.low)
        for number, key in enumerate(self.keys):
            modulus = np.uint64(self.high if number % 2 == 0 else self.low)
            left, right = right, (left + _mix(right, key) % modulus) % modulus
        return (left * np.uint64(self.low) + right).astype(np.int64)


def _mix(values: npt.NDArray[np.uint64], key: int) -> npt.NDArray[np.uint64]:
    """A keyed 64-bit integer hash (splitmix64 finaliser); arrays wrap on overflow."""
    mixed = values ^ np.uint64(key)
    mixed = mixed * np.uint64(0x9E3779B97F4A7C15)
    mixed ^= mixed >> np.uint64(29)
    mixed = mixed * np.uint64(0xBF58476D1CE4E5B9)
    return mixed ^ (mixed >> np.uint64(32))


class _Categorical:
    """A fixed discrete distribution over ``0..k-1`` sampled by inverse CDF."""

    def __init__(self, weights: Sequence[float] | _FloatArray) -> None:
        cdf = np.cumsum(np.asarray(weights, dtype=np.float64))
        self.cdf: _FloatArray = cdf / cdf[-1]

    def __len__(self) -> int:
        return int(self.cdf.size)

    def sample(self, rng: np.random.Generator, n: int) -> _IntArray:
        """Draw ``n`` category indices."""
        index = np.searchsorted(self.cdf, rng.random(n), side="right")
        return np.minimum(index, self.cdf.size - 1).astype(np.int64)


# ==================================================================== Arrow helpers


def _ascii_column(
    parts: Sequence[bytes | npt.NDArray[np.uint8]], n: int, valid: _BoolArray | None = None
) -> pa.StringArray:
    """A fixed-width ASCII string column from constant prefixes and (n, w) byte matrices."""
    pieces = [
        np.broadcast_to(np.frombuffer(part, dtype=np.uint8), (n, len(part)))
        if isinstance(part, bytes)
        else part
        for part in parts
    ]
    matrix = np.ascontiguousarray(np.concatenate(pieces, axis=1), dtype=np.uint8)
    width = matrix.shape[1]
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    bitmap = None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(matrix), bitmap)


def _digits(values: _IntArray, width: int) -> npt.NDArray[np.uint8]:
    """ASCII decimal digits of non-negative integers, zero-padded to ``width``."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((values.astype(np.int64)[:, None] // powers) % 10 + ord("0")).astype(np.uint8)


def _byte_matrix(values: npt.NDArray[np.bytes_]) -> npt.NDArray[np.uint8]:
    """View a 1-D ``S<w>`` array as an (n, w) uint8 matrix."""
    return np.ascontiguousarray(values).view(np.uint8).reshape(values.size, values.dtype.itemsize)


def _text(vocabulary: pa.Array, index: _IntArray) -> pa.Array:
    """Strings of ``vocabulary`` picked by ``index``."""
    return vocabulary.take(pa.array(index, type=pa.int64()))


def _concat(*parts: pa.Array | str) -> pa.Array:
    """Element-wise concatenation of string arrays and constant strings."""
    return pc.binary_join_element_wise(*parts, "")


def _vocabulary(words: Iterable[str]) -> pa.Array:
    return pa.array(list(words), type=pa.string())


def _money(values: _FloatArray) -> pa.Array:
    """Round to fen (two decimals) as float64."""
    return pa.array(np.round(values, 2), type=pa.float64())


def _date32(days: _IntArray) -> pa.Array:
    return pa.array(days.astype(np.int32), type=pa.date32())


def _epoch_day(day: date) -> int:
    return (day - date(1970, 1, 1)).days


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


_ChunkBuilder = Callable[[np.random.Generator, int, int], list[pa.Array]]


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


# =============================================================== enterprise_credit


class _Industry(NamedTuple):
    name: str  # GB/T 4754 section name
    weight: float
    words: tuple[str, ...]  # industry words used in enterprise names


_INDUSTRIES: Final = (
    _Industry("农、林、牧、渔业", 5, ("农业科技", "生态农业", "畜牧养殖", "果蔬种植")),
    _Industry("制造业", 14, ("机械制造", "电子科技", "新材料", "精密制造", "食品")),
    _Industry("建筑业", 8, ("建筑工程", "建设工程", "装饰工程", "市政工程")),
    _Industry("批发和零售业", 22, ("商贸", "贸易", "商业", "医药连锁")),
    _Industry("交通运输、仓储和邮政业", 5, ("物流", "运输", "供应链管理", "仓储")),
    _Industry("住宿和餐饮业", 7, ("餐饮管理", "酒店管理", "餐饮服务")),
    _Industry("信息传输、软件和信息技术服务业", 8, ("信息技术", "软件", "网络科技", "数据科技")),
    _Industry("金融业", 1.5, ("投资管理", "融资担保", "小额贷款")),
    _Industry("房地产业", 4, ("房地产开发", "置业", "物业服务")),
    _Industry("租赁和商务服务业", 12, ("企业管理咨询", "商务服务", "广告传媒", "人力资源服务")),
    _Industry("科学研究和技术服务业", 6, ("科技", "检测技术", "工程设计", "环保科技")),
    _Industry("居民服务、修理和其他服务业", 5, ("家政服务", "汽车维修", "美容美发")),
    _Industry("文化、体育和娱乐业", 2.5, ("文化传播", "体育发展", "影视传媒")),
)
_INDUSTRY_NAMES: Final = _vocabulary(i.name for i in _INDUSTRIES)
_INDUSTRY: Final = _Categorical([i.weight for i in _INDUSTRIES])
_INDUSTRY_WORDS: Final = _vocabulary(w for i in _INDUSTRIES for w in i.words)
_INDUSTRY_WORD_COUNT: Final = np.array([len(i.words) for i in _INDUSTRIES], dtype=np.int64)
_INDUSTRY_WORD_START: Final = np.concatenate([[0], np.cumsum(_INDUSTRY_WORD_COUNT)[:-1]])

_TRADE_CHARS: Final = _vocabulary(
    "鑫华盛源达兴恒泰丰瑞宏远诚信德润康佳明辉腾越新锦金利通安永顺汇博创富祥鼎中天宇嘉和凯旺昌隆"
    "星海龙科益美晟弘蜀涪川蓉卓峰鹏众合力"
)
#: Short place name of each district, in the order of :data:`DISTRICTS`.
_SHORT_PLACES: Final = ("绵阳", "绵阳", "安州", "三台", "盐亭", "梓潼", "北川", "平武", "江油")
_NAME_PLACES: Final = _vocabulary(_SHORT_PLACES)
_LEGAL_FORMS: Final = _vocabulary(["有限公司", "股份有限公司"])
_JOINT_STOCK_RATE: Final = 0.08

_ESTABLISHED_YEARS: Final = np.arange(1990, 2025)
_ESTABLISHED_YEAR: Final = _Categorical(np.exp(0.09 * (_ESTABLISHED_YEARS - 1990)))
_ROUND_CAPITALS: Final = np.array([3, 5, 10, 20, 30, 50, 100, 200, 300, 500, 1000, 2000, 5000.0])
_ROUND_CAPITAL: Final = _Categorical([2, 6, 14, 8, 8, 16, 20, 9, 6, 6, 3, 1.5, 0.5])
_HOLDER_COUNT: Final = _Categorical([0.38, 0.34, 0.18, 0.10])
_SNAPSHOT_DAY: Final = _epoch_day(date(2024, 12, 31))


def _enterprise_builder(seed: int, total: int) -> _ChunkBuilder:
    return functools.partial(
        _enterprise_chunk,
        perms=_credit_code_permutations(seed, "enterprise_credit/credit_code"),
        id_cards=_IdCardIssuer(seed, "enterprise_credit"),
    )


def _enterprise_chunk(
    rng: np.random.Generator,
    start: int,
    n: int,
    *,
    perms: tuple[_Permutation, _Permutation],
    id_cards: _IdCardIssuer,
) -> list[pa.Array]:
    district = _DISTRICT_WEIGHTS.sample(rng, n)
    industry = _INDUSTRY.sample(rng, n)
    established = _established_days(rng, n)
    joint_stock = rng.random(n) < _JOINT_STOCK_RATE
    rep_male = rng.random(n) < 0.72
    rep_district = np.where(rng.random(n) < 0.8, district, _DISTRICT_WEIGHTS.sample(rng, n))
    rep_birth = _representative_births(rng, established)
    rep_name = _names(rng, rep_male)
    penalties = rng.poisson(rng.gamma(0.25, 0.6, n)).astype(np.int32)
    return [
        _ascii_column([_byte_matrix(_credit_codes(perms, start, established, district))], n),
        _enterprise_names(rng, district, industry, joint_stock),
        rep_name,
        id_cards.issue(rep_district, rep_birth, rep_male),
        _money(_registered_capital(rng, joint_stock)),
        _equity_structure(rng, rep_name),
        _text(_INDUSTRY_NAMES, industry),
        _text(_DISTRICT_NAMES, district),
        _date32(established),
        pa.array(penalties, type=pa.int32()),
        _money(np.where(penalties > 0, penalties * rng.lognormal(np.log(3000.0), 1.0, n), 0.0)),
    ]


def _established_days(rng: np.random.Generator, n: int) -> _IntArray:
    years = _ESTABLISHED_YEARS[_ESTABLISHED_YEAR.sample(rng, n)]
    first = (years - 1970).astype("datetime64[Y]").astype("datetime64[D]").astype(np.int64)
    return np.minimum(first + rng.integers(0, 365, n), _SNAPSHOT_DAY)


def _representative_births(rng: np.random.Generator, established: _IntArray) -> _IntArray:
    """Birth dates of legal representatives: 23-75 today and adult when the firm was set up."""
    years_since = (_SNAPSHOT_DAY - established) // 365 + 1
    low = np.maximum(23, years_since + 18)
    ages = _ages(rng, _POPULATION_AGE_CDF, low, np.full(established.size, 75, dtype=np.int64))
    return _birth_days(rng, np.full(established.size, _SNAPSHOT_DAY, dtype=np.int64), ages)


def _enterprise_names(
    rng: np.random.Generator, district: _IntArray, industry: _IntArray, joint_stock: _BoolArray
) -> pa.Array:
    """``<place><2-char trade name><industry word><有限公司|股份有限公司>``."""
    n = district.size
    word = _INDUSTRY_WORD_START[industry] + (
        rng.integers(0, 1 << 30, n) % _INDUSTRY_WORD_COUNT[industry]
    )
    place = np.where(rng.random(n) < 0.5, 0, district)
    return _concat(
        _text(_NAME_PLACES, place),
        _text(_TRADE_CHARS, rng.integers(0, len(_TRADE_CHARS), n)),
        _text(_TRADE_CHARS, rng.integers(0, len(_TRADE_CHARS), n)),
        _text(_INDUSTRY_WORDS, word),
        _text(_LEGAL_FORMS, joint_stock.astype(np.int64)),
    )


def _registered_capital(rng: np.random.Generator, joint_stock: _BoolArray) -> _FloatArray:
    """Registered capital in 10k yuan: often a round figure, otherwise lognormal."""
    n = joint_stock.size
    round_figure = _ROUND_CAPITALS[_ROUND_CAPITAL.sample(rng, n)]
    free_figure = np.maximum(1.0, rng.lognormal(np.log(120.0), 1.4, n))
    capital = np.where(rng.random(n) < 0.55, round_figure, free_figure)
    return np.where(joint_stock, np.maximum(capital * 5, 500.0), capital)


def _equity_structure(rng: np.random.Generator, rep_name: pa.Array) -> pa.Array:
    """``"王伟:60%;李娜:40%"``: 1-4 holders, whole percentages summing to 100, largest first.

    The first holder is usually the legal representative.
    """
    n = len(rep_name)
    holders = _HOLDER_COUNT.sample(rng, n) + 1
    percent = _percentages(rng, holders)
    first = pc.if_else(pa.array(rng.random(n) < 0.85), rep_name, _names(rng, rng.random(n) < 0.6))
    parts: list[pa.Array | str] = []
    for slot in range(4):
        name = first if slot == 0 else _names(rng, rng.random(n) < 0.6)
        piece = _concat(name, ":", pc.cast(pa.array(percent[:, slot]), pa.string()), "%")
        present = pa.array(slot < holders)
        if slot:
            parts.append(pc.if_else(present, ";", ""))
        parts.append(pc.if_else(present, piece, ""))
    return _concat(*parts)


def _percentages(rng: np.random.Generator, holders: _IntArray) -> _IntArray:
    """(n, 4) whole percentages, each holder at least 1%, rows summing to 100, descending."""
    shares = rng.gamma(1.2, 1.0, (holders.size, 4)) * (np.arange(4) < holders[:, None])
    shares /= shares.sum(axis=1, keepdims=True)
    percent = (np.floor(shares * (100 - holders[:, None])) + 1) * (shares > 0)
    percent[:, 0] += 100 - percent.sum(axis=1)
    return -np.sort(-percent.astype(np.int64), axis=1)


# =================================================================== bus_ridership

_URBAN_STATIONS: Final = (
    "涪城路口", "火车站", "科学城", "长虹大道", "临园路口", "富乐山", "南山中学", "高水",
    "小枧沟", "园艺山", "绵阳中学", "九洲大道", "跃进路", "剑南路口", "安昌桥", "东津",
    "平政桥", "南河体育中心", "磨家", "青义", "石马", "塘汛", "普明", "松垭", "高新区管委会",
    "经开区", "滨江路", "仙海", "御营坝", "五一广场", "人民公园", "沈家坝", "警钟街",
    "西山公园", "绵阳师范学院", "西南科技大学", "市中心医院", "市第三人民医院", "客运中心",
    "汽车南站", "南郊机场", "会展中心", "万达广场", "铁牛广场", "三江湖", "飞龙桥",
    "芙蓉汉城", "游仙区政府", "涪城区政府", "花园路口", "一环路东", "一环路南", "二环路北",
    "三江大坝", "红星街", "大天池", "涪滨路", "城郊", "火炬广场", "绵州大道",
)  # fmt: skip
_TOWN_GENERIC: Final = (
    "城南", "城北", "城东", "城西", "工业园区", "人民路", "新华街", "解放街", "中山路",
    "文化宫", "体育场", "农贸市场", "滨江路", "政务中心", "汽车站", "东街", "西街", "新区",
)  # fmt: skip
_TOWN_LANDMARKS: Final[dict[str, tuple[str, ...]]] = {
    "安州区": ("花荄", "安州区政府", "安昌河", "界牌", "益昌"),
    "三台县": ("潼川古城", "三台中学", "北坝", "芦溪", "琴泉寺"),
    "盐亭县": ("嫘祖广场", "云溪", "盐亭中学"),
    "梓潼县": ("七曲山", "文昌宫", "长卿山"),
    "北川羌族自治县": ("永昌", "巴拿恰", "羌族民俗博物馆", "安昌"),
    "平武县": ("报恩寺", "龙安", "平武中学"),
    "江油市": ("太白公园", "李白纪念馆", "中坝", "江油火车站", "窦圌山", "长钢", "诗城广场"),
}
_TOWN_STOP_PATTERNS: Final = ("{}客运站", "{}人民医院", "{}中学")
_HUB_STATIONS: Final = frozenset(
    {"火车站", "客运中心", "万达广场", "五一广场", "市中心医院", "汽车南站", "江油火车站"}
)

#: Town lines (41路..60路): home district and number of lines.
_TOWN_LINES: Final = (
    ("江油市", 6), ("三台县", 4), ("安州区", 3), ("盐亭县", 2),
    ("梓潼县", 2), ("北川羌族自治县", 2), ("平武县", 1),
)  # fmt: skip
#: Express lines; like many Chinese operators, no K4 (四 sounds like 死).
_EXPRESS_LINES: Final = ("K1", "K2", "K3", "K5")

#: Relative boardings / alightings by hour of day, 6..22.
_BOARD_BY_HOUR: Final = np.array(
    [0.6, 1.9, 2.3, 1.7, 0.9, 0.8, 0.9, 0.8, 0.7, 0.8, 1.0, 1.8, 2.1, 1.5, 0.8, 0.6, 0.4]
)
_ALIGHT_BY_HOUR: Final = np.array(
    [0.4, 1.6, 2.4, 1.9, 1.0, 0.8, 0.9, 0.8, 0.7, 0.8, 1.0, 1.6, 2.2, 1.7, 0.9, 0.6, 0.5]
)
_FIRST_HOUR: Final = 6
_SERVICE_FIRST_DAY: Final = _epoch_day(date(2024, 1, 1))
_SERVICE_DAYS: Final = 366
_SPRING_FESTIVAL: Final = (_epoch_day(date(2024, 2, 9)), _epoch_day(date(2024, 2, 17)))
_NATIONAL_DAY: Final = (_epoch_day(date(2024, 10, 1)), _epoch_day(date(2024, 10, 7)))


@dataclass(frozen=True)
class _BusNetwork:
    """The fixed line network: per line a home district and an ordered station list."""

    lines: pa.Array  # line names
    districts: _IntArray  # home district index per line
    popularity: _FloatArray  # per line
    first_stop: _IntArray  # offset of each line's stops in the flat arrays
    stop_count: _IntArray  # stops per line
    stations: pa.Array  # station names, flat over (line, stop)
    stop_weight: _FloatArray  # relative activity per (line, stop)
    line_choice: _Categorical  # how often each line appears in the records


@functools.cache
def _bus_network() -> _BusNetwork:
    """Build the network once. It is geography, not sample data: the seed does not move it."""
    rng = _rng(0, "bus_ridership", "network")
    homes = _line_homes(rng)
    names: list[str] = []
    counts: list[int] = []
    weights: list[float] = []
    for district in homes:
        stops = _line_stops(rng, district)
        spread = rng.lognormal(0.0, 0.4, len(stops))
        names.extend(stops)
        counts.append(len(stops))
        weights.extend(np.where([stop in _HUB_STATIONS for stop in stops], 2.5, spread))
    urban = np.array([home in ("涪城区", "游仙区") for home in homes])
    popularity = np.where(
        urban, rng.uniform(1.0, 3.0, len(homes)), rng.uniform(0.4, 1.0, len(homes))
    )
    stop_count = np.array(counts, dtype=np.int64)
    return _BusNetwork(
        lines=_vocabulary([*(f"{i}路" for i in range(1, 61)), *_EXPRESS_LINES]),
        districts=np.array([list(DISTRICTS).index(home) for home in homes], dtype=np.int64),
        popularity=popularity,
        first_stop=np.concatenate([[0], np.cumsum(stop_count)[:-1]]),
        stop_count=stop_count,
        stations=_vocabulary(names),
        stop_weight=np.array(weights),
        line_choice=_Categorical(popularity * stop_count),
    )


def _line_homes(rng: np.random.Generator) -> list[str]:
    """Home district of 1路..60路 then the express lines."""
    city = ["涪城区" if rng.random() < 0.6 else "游仙区" for _ in range(40)]
    towns = [district for district, count in _TOWN_LINES for _ in range(count)]
    return [*city, *towns, *("涪城区" for _ in _EXPRESS_LINES)]


def _line_stops(rng: np.random.Generator, district: str) -> list[str]:
    if district in ("涪城区", "游仙区"):
        pool = list(_URBAN_STATIONS)
        size = int(rng.integers(14, 31))
    else:
        short = _SHORT_PLACES[list(DISTRICTS).index(district)]
        local = [pattern.format(short) for pattern in _TOWN_STOP_PATTERNS]
        pool = [*_TOWN_LANDMARKS[district], *local, *_TOWN_GENERIC]
        size = int(rng.integers(8, 17))
    return [pool[i] for i in rng.choice(len(pool), size=size, replace=False)]


def _bus_builder(seed: int, total: int) -> _ChunkBuilder:
    return functools.partial(_bus_chunk, network=_bus_network())


def _bus_chunk(
    rng: np.random.Generator, start: int, n: int, *, network: _BusNetwork
) -> list[pa.Array]:
    line = network.line_choice.sample(rng, n)
    position = np.floor(rng.random(n) * network.stop_count[line]).astype(np.int64)
    stop = network.first_stop[line] + position
    day = _SERVICE_FIRST_DAY + rng.integers(0, _SERVICE_DAYS, n)
    hour = rng.integers(_FIRST_HOUR, _FIRST_HOUR + _BOARD_BY_HOUR.size, n)
    base = 6.0 * network.popularity[line] * network.stop_weight[stop] * _day_factor(day)
    along = position / np.maximum(network.stop_count[line] - 1, 1)
    weekend = _is_weekend(day)
    board = base * _hourly(_BOARD_BY_HOUR, hour, weekend) * (1.3 - 0.6 * along)
    alight = base * _hourly(_ALIGHT_BY_HOUR, hour, weekend) * (0.7 + 0.6 * along)
    return [
        _text(network.lines, line),
        _text(network.stations, stop),
        _date32(day),
        pa.array(hour.astype(np.int8), type=pa.int8()),
        pa.array(rng.poisson(board).astype(np.int32), type=pa.int32()),
        pa.array(rng.poisson(alight).astype(np.int32), type=pa.int32()),
        _text(_DISTRICT_NAMES, network.districts[line]),
    ]


def _is_weekend(day: _IntArray) -> _BoolArray:
    return (day + 3) % 7 >= 5  # 1970-01-01 was a Thursday; Monday -> 0


def _hourly(profile: _FloatArray, hour: _IntArray, weekend: _BoolArray) -> _FloatArray:
    """Hour profile; weekends have flatter peaks."""
    weekday = profile[hour - _FIRST_HOUR]
    return np.where(weekend, 0.5 * weekday + 0.5 * profile.mean(), weekday)


def _day_factor(day: _IntArray) -> _FloatArray:
    """Fewer riders at weekends and over Spring Festival, more in National Day week."""
    factor = np.where(_is_weekend(day), 0.85, 1.0)
    factor = np.where((day >= _SPRING_FESTIVAL[0]) & (day <= _SPRING_FESTIVAL[1]), 0.6, factor)
    return np.where((day >= _NATIONAL_DAY[0]) & (day <= _NATIONAL_DAY[1]), 1.15, factor)


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


# ========================================================================= schemas


def _field(name: str, kind: pa.DataType, description: str, *, nullable: bool = False) -> pa.Field:
    return pa.field(name, kind, nullable=nullable, metadata={"description": description})


def _dataset_schema(dataset: str, fields: list[pa.Field]) -> pa.Schema:
    metadata = {"shuyu.dataset": dataset, "shuyu.title": DATASET_TITLES[dataset]}
    return pa.schema(fields, metadata=metadata)


_STR, _F64, _I32, _DATE = pa.string(), pa.float64(), pa.int32(), pa.date32()

_SCHEMAS: Final[dict[str, pa.Schema]] = {
    "health_records": _dataset_schema(
        "health_records",
        [
            _field("person_id", _STR, "档案编号: P + 11 digits, unique"),
            _field("name", _STR, "姓名"),
            _field("id_card", _STR, "公民身份号码 (GB 11643)"),
            _field("phone", _STR, "手机号码"),
            _field("sex", _STR, "性别: M / F"),
            _field("birth_date", _DATE, "出生日期"),
            _field("district", _STR, "所属区县"),
            _field("diagnosis_time", pa.timestamp("s"), "诊断时间 (local time)"),
            _field("icd11_code", _STR, "ICD-11 诊断编码"),
            _field("imaging_number", _STR, "影像号: MYIMG + year + 8 digits", nullable=True),
            _field("dosage_mg", _F64, "用药剂量 (mg)"),
            _field("settlement_amount", _F64, "医保结算金额 (元)"),
            _field(
                "surgery_record_number", _STR, "手术记录号: SS + year + 7 digits", nullable=True
            ),
        ],
    ),
    "enterprise_credit": _dataset_schema(
        "enterprise_credit",
        [
            _field("credit_code", _STR, "统一社会信用代码 (GB 32100), unique"),
            _field("enterprise_name", _STR, "企业名称"),
            _field("legal_representative", _STR, "法定代表人"),
            _field("legal_rep_id_card", _STR, "法定代表人公民身份号码 (GB 11643)"),
            _field("registered_capital", _F64, "注册资本 (万元)"),
            _field("equity_structure", _STR, "股权结构: 姓名:比例%;..."),
            _field("industry", _STR, "行业门类 (GB/T 4754)"),
            _field("district", _STR, "登记区县"),
            _field("established_date", _DATE, "成立日期"),
            _field("penalty_count", _I32, "行政处罚次数"),
            _field("penalty_amount", _F64, "行政处罚金额合计 (元)"),
        ],
    ),
    "bus_ridership": _dataset_schema(
        "bus_ridership",
        [
            _field("line", _STR, "线路"),
            _field("station", _STR, "站点"),
            _field("service_date", _DATE, "运营日期"),
            _field("hour", pa.int8(), "小时 (6-22)"),
            _field("boardings", _I32, "上车人次"),
            _field("alightings", _I32, "下车人次"),
            _field("district", _STR, "所属区县"),
        ],
    ),
    "social_insurance": _dataset_schema(
        "social_insurance",
        [
            _field("insured_id", _STR, "参保编号: SI + 14 digits, unique"),
            _field("name", _STR, "姓名"),
            _field("id_card", _STR, "公民身份号码 (GB 11643)"),
            _field("insurance_type", _STR, "险种"),
            _field("contribution_base", _F64, "缴费基数 (元/月)"),
            _field("months_paid", _I32, "累计缴费月数"),
            _field("benefit_amount", _F64, "待遇金额 (元)"),
            _field("district", _STR, "参保区县"),
            _field(
                "employer_credit_code",
                _STR,
                "参保单位统一社会信用代码 (GB 32100)",
                nullable=True,
            ),
        ],
    ),
}

_BUILDERS: Final[dict[str, Callable[[int, int], _ChunkBuilder]]] = {
    "health_records": _health_builder,
    "enterprise_credit": _enterprise_builder,
    "bus_ridership": _bus_builder,
    "social_insurance": _social_builder,
}
