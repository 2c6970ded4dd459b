"""The no-real-row checks: chunks are drawn, then values found among raw values (or
repeated identifiers) and rows equal to raw rows are redrawn until none is left."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shuyu_platform.data.synthetic import limits
from shuyu_platform.data.synthetic.drawing import _Model
from shuyu_platform.data.synthetic.hashing import _hash_column, _HashFilter, _row_hashes
from shuyu_platform.data.synthetic.kinds import _Bools, _UInt64s
from shuyu_platform.data.synthetic.limits import _FALLBACK_AFTER, MAX_ATTEMPTS
from shuyu_platform.data.synthetic.results import SyntheticError

# ========================================================================= generating


@dataclass
class _Check:
    """A column whose drawn values must not be raw values (and maybe must be distinct)."""

    raw: _HashFilter
    unique: bool
    seen: list[_UInt64s] | None = None
    elsewhere: _HashFilter | None = None
    """Identifier values of every raw dataset (for identifier columns), or ``None``."""


class _Generator:
    """Draws the twin chunk by chunk, redrawing every value or row that is not new."""

    def __init__(
        self,
        dataset: str,
        seed: int,
        schema: pa.Schema,
        models: Sequence[_Model],
        checks: Mapping[int, _Check],
        row_filter: _HashFilter | None,
    ) -> None:
        self.dataset = dataset
        self.seed = seed
        self.schema = schema
        self.models = models
        self.checks = checks
        self.row_filter = row_filter
        self.values_redrawn = 0
        self.rows_redrawn = 0

    def _rng(self, column: int, *labels: str | int) -> np.random.Generator:
        return _rng(self.seed, self.dataset, self.schema.field(column).name, *labels)

    def chunks(self, total: int) -> Iterator[pa.Table]:
        """The twin's rows as tables of at most :data:`~.limits.CHUNK_ROWS` rows."""
        size = limits.CHUNK_ROWS  # read at build time, so a test can lower it
        for chunk, start in enumerate(range(0, total, size)):
            n = min(size, total - start)
            arrays = [
                model.generate(self._rng(i, "chunk", chunk), n)
                for i, model in enumerate(self.models)
            ]
            for i, check in self.checks.items():
                arrays[i] = self._new_values(i, check, arrays[i], chunk)
            self._new_rows(arrays, chunk)
            columns = [
                array.cast(field.type) if array.type != field.type else array
                for array, field in zip(arrays, self.schema, strict=True)
            ]
            yield pa.Table.from_arrays(columns, schema=self.schema)

    def _new_values(self, i: int, check: _Check, array: pa.Array, chunk: int) -> pa.Array:
        """Redraw values of column ``i`` found among the raw values (or repeated)."""
        earlier = np.concatenate(check.seen) if check.seen else np.zeros(0, dtype=np.uint64)
        for attempt in range(MAX_ATTEMPTS + 1):
            hashes, valid = _hash_column(array)
            bad = valid & check.raw.contains(hashes)
            if check.elsewhere is not None:
                bad |= valid & check.elsewhere.contains(hashes)
            if check.unique:
                bad |= valid & np.isin(hashes, earlier)
                bad |= _repeats(hashes, valid & ~bad)
            count = int(np.count_nonzero(bad))
            if not count:
                break
            if attempt == MAX_ATTEMPTS:
                raise SyntheticError(
                    f"cannot invent values of {self.dataset}.{self.schema.field(i).name} "
                    f"unlike the raw ones: {count} still collide after {MAX_ATTEMPTS} redraws"
                )
            rng = self._rng(i, "redraw", chunk, attempt)
            model = self.models[i]
            redrawn = (
                model.values(rng, count)
                if attempt < _FALLBACK_AFTER
                else model.fallback(rng, count)
            )
            array = pc.replace_with_mask(array, pa.array(bad), redrawn)
            self.values_redrawn += count
        if check.unique:
            check.seen = [*(check.seen or []), hashes[valid]]
        return array

    def _new_rows(self, arrays: list[pa.Array], chunk: int) -> None:
        """Redraw, in place, rows equal to a raw row.

        Only rows whose checked columns are all null can equal a raw row; the other
        columns of such rows are redrawn until their row hash is not a raw one.
        """
        n = len(arrays[0]) if arrays else 0
        candidates = np.ones(n, dtype=bool)
        for i in self.checks:
            candidates &= np.asarray(arrays[i].is_null())
        if not candidates.any():
            return
        if self.row_filter is None:
            raise AssertionError("rows without a checked value need the raw row filter")
        redraw = [i for i in range(len(arrays)) if i not in self.checks]
        for attempt in range(MAX_ATTEMPTS + 1):
            bad = candidates & self.row_filter.contains(_row_hashes(arrays, n))
            count = int(np.count_nonzero(bad))
            if not count:
                return
            if attempt == MAX_ATTEMPTS:
                raise SyntheticError(
                    f"cannot invent rows of {self.dataset} unlike the raw ones: {count} "
                    f"still equal a raw row after {MAX_ATTEMPTS} redraws"
                )
            mask = pa.array(bad)
            for i in redraw:
                fresh = self.models[i].generate(self._rng(i, "row-redraw", chunk, attempt), count)
                arrays[i] = pc.replace_with_mask(arrays[i], mask, fresh)
            self.rows_redrawn += count


def _repeats(hashes: _UInt64s, among: _Bools) -> _Bools:
    """Positions in ``among`` whose hash occurred at an earlier position in ``among``."""
    repeated = np.zeros(hashes.size, dtype=bool)
    positions = np.flatnonzero(among)
    if positions.size:
        _, first = np.unique(hashes[positions], return_index=True)
        later = np.ones(positions.size, dtype=bool)
        later[first] = False
        repeated[positions[later]] = True
    return repeated


def _rng(seed: int, *labels: str | int) -> np.random.Generator:
    """An independent PCG64 generator for ``(seed, *labels)``, stable across runs."""
    text = "\x1f".join(["shuyu.synthetic.v1", str(seed), *(str(label) for label in labels)])
    entropy = int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))
