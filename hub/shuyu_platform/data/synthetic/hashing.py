"""64-bit hashes of values and rows, and the Bloom filter that remembers raw ones."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from shuyu_platform.data.synthetic.kinds import _Bools, _decoded, _Ints, _is_text, _UInt64s
from shuyu_platform.data.synthetic.limits import FILTER_BITS_PER_VALUE, MAX_FILTER_BITS

# ============================================================================ hashing

_M1: Final = np.uint64(0xBF58476D1CE4E5B9)
_M2: Final = np.uint64(0x94D049BB133111EB)
_GOLDEN: Final = np.uint64(0x9E3779B97F4A7C15)
_STRING_BASE: Final = np.uint64(0x100000001B3)
_NULL_HASH: Final = np.uint64(0x6E756C6C6E756C6C)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def _mix64(values: _UInt64s) -> _UInt64s:
    """The splitmix64 finaliser: a bijective 64-bit mix (wraps on overflow)."""
    z = values + _GOLDEN
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


_powers_cache: list[_UInt64s] = [np.ones(1, dtype=np.uint64)]


def _powers(length: int) -> _UInt64s:
    """``_STRING_BASE ** i`` modulo 2**64 for ``i`` in ``0..length``."""
    table = _powers_cache[0]
    if table.size <= length:
        table = np.cumprod(
            np.concatenate([[1], np.full(max(length, 2 * table.size), _STRING_BASE)]).astype(
                np.uint64
            ),
            dtype=np.uint64,
        )
        _powers_cache[0] = table
    return table


def _hash_column(column: pa.Array) -> tuple[_UInt64s, _Bools]:
    """A 64-bit hash of each value of a column, and which values are not null.

    Equal values always get equal hashes (so a value whose hash is not among the raw
    hashes is certainly not a raw value); different values almost never do. NaN and
    -0.0 are folded into NaN and 0.0.
    """
    column = _decoded(column)
    n = len(column)
    valid = ~np.asarray(column.is_null(), dtype=bool) if column.null_count else np.ones(n, bool)
    kind = column.type
    if _is_text(kind) or pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        bits = _text_hashes(column)
    elif pa.types.is_boolean(kind):
        bits = np.asarray(column.fill_null(False), dtype=bool).astype(np.uint64)
    else:
        width = kind.bit_width // 8
        dtype = {
            "f": {4: np.float32, 8: np.float64},
            "i": {1: np.int8, 2: np.int16, 4: np.int32, 8: np.int64},
        }
        buffer = column.buffers()[1]
        if pa.types.is_floating(kind):
            numbers = np.frombuffer(buffer, dtype=dtype["f"][width])[column.offset :][:n]
            numbers = numbers.astype(np.float64) + 0.0
            numbers = np.where(np.isnan(numbers), np.nan, numbers)
            bits = numbers.view(np.uint64)
        else:
            raw = np.frombuffer(buffer, dtype=dtype["i"][width])[column.offset :][:n]
            bits = raw.astype(np.int64).view(np.uint64)
    hashes = _mix64(bits)
    hashes[~valid] = _NULL_HASH
    return hashes, valid


def _text_buffers(column: pa.Array) -> tuple[_Ints, npt.NDArray[np.uint8]]:
    """A text column's value offsets (``len + 1`` of them) and its bytes, without copies."""
    n = len(column)
    large = pa.types.is_large_string(column.type) or pa.types.is_large_binary(column.type)
    buffers = column.buffers()
    if buffers[1] is None:
        return np.zeros(n + 1, dtype=np.int64), np.zeros(0, np.uint8)
    offsets = np.frombuffer(buffers[1], dtype=np.int64 if large else np.int32)
    offsets = offsets[column.offset : column.offset + n + 1].astype(np.int64)
    data = np.zeros(0, np.uint8) if buffers[2] is None else np.frombuffer(buffers[2], np.uint8)
    return offsets, data


def _text_hashes(column: pa.Array) -> _UInt64s:
    """Polynomial hashes of the UTF-8 bytes of each string, mixed with its length."""
    n = len(column)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    offsets, data = _text_buffers(column)
    first, last = int(offsets[0]), int(offsets[-1])
    lengths = np.diff(offsets)
    width = int(lengths.max())
    powers = _powers(width)
    if width and int(lengths.min()) == width:  # fixed width (codes): one matrix product
        matrix = data[first:last].reshape(n, width).astype(np.uint64) + np.uint64(1)
        sums = (matrix * powers[:width]).sum(axis=1, dtype=np.uint64)
        return sums ^ _mix64(lengths.astype(np.uint64))
    position = np.arange(last - first, dtype=np.int64) - np.repeat(offsets[:-1] - first, lengths)
    terms = (data[first:last].astype(np.uint64) + np.uint64(1)) * powers[position]
    running = np.concatenate([np.zeros(1, dtype=np.uint64), np.cumsum(terms, dtype=np.uint64)])
    sums = running[offsets[1:] - first] - running[offsets[:-1] - first]
    return sums ^ _mix64(lengths.astype(np.uint64))


def _row_hashes(columns: Sequence[pa.Array], n: int) -> _UInt64s:
    """A 64-bit hash of each row of ``columns`` (order matters, nulls count)."""
    hashes = np.full(n, np.uint64(0x5EED), dtype=np.uint64)
    for column in columns:
        values, _ = _hash_column(column)
        hashes = _mix64((hashes * _STRING_BASE) ^ values)
    return hashes


class _HashFilter:
    """A Bloom filter of 64-bit hashes with two probes.

    It never forgets a hash it was given (no false negatives); it may claim one it was
    not given (a false positive, about 1.4 % at 16 bits per value), which only causes a
    needless redraw. Sized for ``expected`` hashes: :data:`FILTER_BITS_PER_VALUE` bits
    each, at least 2**16 and at most :data:`MAX_FILTER_BITS` bits.
    """

    def __init__(self, expected: int) -> None:
        wanted = max(1, expected) * FILTER_BITS_PER_VALUE
        bits = min(MAX_FILTER_BITS, max(1 << 16, 1 << math.ceil(math.log2(wanted))))
        self.mask = np.uint64(bits - 1)
        self.bytes = np.zeros(bits // 8, dtype=np.uint8)

    def _probes(self, hashes: _UInt64s) -> tuple[_UInt64s, _UInt64s]:
        return hashes & self.mask, _mix64(hashes ^ _M2) & self.mask

    def add(self, hashes: _UInt64s) -> None:
        """Remember ``hashes``."""
        for probe in self._probes(hashes):
            byte = (probe >> np.uint64(3)).astype(np.int64)
            bit = (probe & np.uint64(7)).astype(np.uint8)
            for shift in range(8):
                chosen = byte[bit == shift]
                # Repeated indices all write the same value, so fancy indexing is exact.
                self.bytes[chosen] |= np.uint8(1 << shift)

    def contains(self, hashes: _UInt64s) -> _Bools:
        """Whether each hash may have been added (certainly not, where False)."""
        found = np.ones(hashes.size, dtype=bool)
        for probe in self._probes(hashes):
            byte = (probe >> np.uint64(3)).astype(np.int64)
            bit = (probe & np.uint64(7)).astype(np.uint8)
            found &= ((self.bytes[byte] >> bit) & 1).astype(bool)
        return found
