"""Seeded random streams and the vectorised Arrow column builders every dataset uses."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

_IntArray = npt.NDArray[np.int64]
_FloatArray = npt.NDArray[np.float64]
_BoolArray = npt.NDArray[np.bool_]


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


_ChunkBuilder = Callable[[np.random.Generator, int, int], list[pa.Array]]
