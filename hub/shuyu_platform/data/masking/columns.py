"""Masking a raw table, column by column, with every rule vectorised."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from shuyu_platform.data.policy import (
    BucketMasking,
    DatasetPolicy,
    DateShiftMasking,
    FieldPolicy,
    GeneralizeMasking,
    MicroaggregateMasking,
    NoiseMasking,
    PartialMasking,
    PseudonymizeMasking,
    RoundMasking,
    TopCodeMasking,
)

from .keys import _BASE32_PAIRS, _TOKEN_BYTES, TOKEN_CHARS, _purpose_key
from .microaggregation import MicroGroups
from .schema import (
    _FIRST_DAY,
    _INT64_MAX,
    _INT64_MIN,
    _LAST_DAY,
    _UNITS_PER_DAY,
    _integral,
    _is_text,
    _temporal_type,
    needs_unit,
    output_type,
    view_fields,
    view_schema,
)

#: Values sampled to decide whether a column repeats values (see :func:`_map_distinct`).
_DEDUPE_SAMPLE: Final[int] = 4096


# ============================================================================ tables


def mask_table(
    table: pa.Table | pa.RecordBatch,
    policy: DatasetPolicy,
    fields: Sequence[str],
    *,
    key: bytes,
    reference_date: date,
    groups: Mapping[str, MicroGroups] | None = None,
    premasked: Mapping[str, pa.Array] | None = None,
) -> pa.Table:
    """Mask the requested ``fields`` of a raw ``table`` as ``policy`` says.

    Returns a table with exactly the columns of :func:`view_schema` (policy order, every
    other raw column left out). ``key`` is the tenant key (:func:`tenant_key`);
    ``reference_date`` is the day ages are computed on (``generalize: age_band``);
    ``groups`` the fitted groups of each ``microaggregate`` field (see
    :mod:`.microaggregation`), fitted over the whole view, not this batch.
    ``premasked`` gives fields already masked as ``policy`` says (by a helper process of
    a view build), taken as they are once their length and type are checked.
    Raises :class:`ValueError` naming the field for a field the policy does not know, an
    L4 or dropped field, or a column missing from ``table`` (including the privacy unit
    a ``date_shift`` field needs).
    """
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    names = view_fields(policy, fields)
    for name in names:
        if name not in table.column_names:
            raise ValueError(
                f"field {name!r} of dataset {policy.dataset!r} is not a column of the raw data"
            )
    unit = _unit_column(table, policy, names)
    schema = view_schema(policy, names, table.schema)
    ready = premasked or {}
    columns = []
    for name in names:
        if name in ready:
            column = ready[name]
            if len(column) != table.num_rows or column.type != schema.field(name).type:
                raise ValueError(f"field {name!r}: the column masked ahead does not fit")
        else:
            column = mask_column(
                name,
                table.column(name),
                policy.fields[name],
                key=key,
                unit=unit,
                reference_date=reference_date,
                groups=(groups or {}).get(name),
            )
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def _unit_column(
    table: pa.Table, policy: DatasetPolicy, names: Sequence[str]
) -> pa.ChunkedArray | None:
    """The privacy-unit column, when a requested field needs it (``date_shift``)."""
    needed = [name for name in names if needs_unit(policy.fields[name])]
    if not needed:
        return None
    unit = policy.privacy.privacy_unit
    if unit is None:
        raise ValueError(
            f"field {needed[0]!r} of dataset {policy.dataset!r} is masked per privacy "
            "unit, but the policy names no privacy.privacy_unit"
        )
    if unit not in table.column_names:
        raise ValueError(
            f"field {needed[0]!r} is masked per {unit!r}, which is not a column of the raw data"
        )
    return table.column(unit)


# =========================================================================== columns


def mask_column(
    name: str,
    array: pa.Array | pa.ChunkedArray,
    field: FieldPolicy,
    *,
    key: bytes,
    unit: pa.Array | pa.ChunkedArray | None = None,
    reference_date: date | None = None,
    groups: MicroGroups | None = None,
) -> pa.Array:
    """Apply ``field``'s masking rule to ``array`` (the raw column ``name``).

    A chunked array is combined into one array; the result has the same length and the
    type :func:`output_type` gives. ``key`` is the tenant key; ``unit`` is the privacy-unit
    column aligned with ``array`` (needed by ``date_shift`` only); ``reference_date`` is
    the day ages are computed on (needed by ``generalize: age_band`` only); ``groups``
    the groups fitted over the whole column (needed by ``microaggregate`` only). Raises
    :class:`ValueError` naming the field for a ``drop`` rule (nothing to show), a missing
    ``unit``, ``reference_date`` or ``groups``, or a column whose type the rule cannot read.
    """
    array = _single(array)
    rule = field.masking
    raw_type = array.type
    target = output_type(field, raw_type)
    if isinstance(rule, MicroaggregateMasking):
        if groups is None:
            raise ValueError(
                f"field {name!r}: microaggregate needs groups fitted over the whole column"
            )
        if pa.types.is_dictionary(raw_type):
            array = array.dictionary_decode()
        return groups.apply(_numbers(name, array)).cast(target)
    if pa.types.is_dictionary(raw_type) and not needs_unit(field):
        # Rules not keyed per unit map each value on its own: mask the dictionary only.
        values = _mask_values(name, array.dictionary, field, key, reference_date)
        return values.take(array.indices).cast(target)
    if pa.types.is_dictionary(raw_type):
        array = array.dictionary_decode()
    if isinstance(rule, DateShiftMasking):
        if unit is None:
            raise ValueError(f"field {name!r}: date_shift needs the privacy-unit column")
        unit = _single(unit)
        if len(unit) != len(array):
            raise ValueError(f"field {name!r}: the privacy-unit column has another length")
        return _date_shift(name, array, field, rule, key, unit).cast(target)
    if isinstance(rule, NoiseMasking):
        if unit is None:
            raise ValueError(f"field {name!r}: noise needs the privacy-unit column")
        unit = _single(unit)
        if len(unit) != len(array):
            raise ValueError(f"field {name!r}: the privacy-unit column has another length")
        return _noise(name, _numbers(name, array), rule, key, unit).cast(target)
    return _mask_values(name, array, field, key, reference_date).cast(target)


def _single(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(array, pa.ChunkedArray):
        if array.num_chunks == 1:
            return array.chunk(0)
        return array.combine_chunks() if array.num_chunks else pa.array([], type=array.type)
    return array


def _mask_values(
    name: str, array: pa.Array, field: FieldPolicy, key: bytes, reference_date: date | None
) -> pa.Array:
    """Apply a rule that maps each value on its own (every rule but ``date_shift``)."""
    rule = field.masking
    if rule.rule == "drop":
        raise ValueError(f"field {name!r} is dropped: it has nothing to show")
    if rule.rule == "keep":
        return array
    if isinstance(rule, PseudonymizeMasking):
        return _pseudonymize(array, rule, key)
    if isinstance(rule, PartialMasking):
        return _partial(_text(name, array), rule)
    if isinstance(rule, GeneralizeMasking):
        if rule.to == "prefix":
            assert rule.prefix_length is not None
            return pc.utf8_slice_codeunits(_text(name, array), 0, rule.prefix_length)
        if rule.to == "grid":
            assert rule.grid_degrees is not None
            return _grid(_numbers(name, array), rule.grid_degrees)
        moments = _temporal(name, array, field)
        if rule.to == "age_band":
            if reference_date is None:
                raise ValueError(f"field {name!r}: age_band needs a reference date")
            assert rule.band_years is not None
            return _age_band(moments, rule.band_years, reference_date)
        return pc.floor_temporal(moments, unit=rule.to, multiple=rule.years or 1)
    if isinstance(rule, RoundMasking):
        if rule.significant is not None:
            return _significant(_numbers(name, array), rule.significant)
        assert rule.to is not None
        return _round(_numbers(name, array), rule.to)
    if isinstance(rule, BucketMasking):
        return _bucket(_numbers(name, array), rule)
    if isinstance(rule, TopCodeMasking):
        return _top_code(_numbers(name, array), rule.max, rule.min)
    raise AssertionError(f"unhandled masking rule {rule.rule!r}")  # pragma: no cover


# ------------------------------------------------------------------ input coercion


def _text(name: str, array: pa.Array) -> pa.Array:
    """The column as strings (a non-string column is cast to its text form)."""
    if pa.types.is_string(array.type):
        return array
    try:
        return array.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise ValueError(f"field {name!r}: cannot read a {array.type} column as text") from err


def _numbers(name: str, array: pa.Array) -> pa.Array:
    """The column as int64 (integer columns) or float64 (anything else numeric)."""
    kind = array.type
    if pa.types.is_integer(kind):
        return array.cast(pa.int64())
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind) or pa.types.is_null(kind):
        return array.cast(pa.float64())
    if _is_text(kind):
        # Numbers stored as text: unparseable ones become null.
        trimmed = pc.utf8_trim_whitespace(array)
        ok = pc.match_substring_regex(trimmed, r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
        return pc.if_else(ok, trimmed, pa.scalar(None, pa.string())).cast(pa.float64())
    raise ValueError(f"field {name!r}: a {kind} column is not numeric")


def _temporal(name: str, array: pa.Array, field: FieldPolicy) -> pa.Array:
    """The column as date32 or timestamp, with invalid dates (outside 1-9999) as null."""
    kind = array.type
    if pa.types.is_null(kind):
        return pa.nulls(len(array), _temporal_type(field, kind))
    if pa.types.is_date64(kind):
        array, kind = array.cast(pa.date32()), pa.date32()
    if _is_text(kind):
        return _parse_dates(array, field.type)
    if pa.types.is_date32(kind):
        days = array.view(pa.int32())
        low, high = _FIRST_DAY, _LAST_DAY
    elif pa.types.is_timestamp(kind):
        days = array.view(pa.int64())
        per_day = _UNITS_PER_DAY[kind.unit]
        low = max(_FIRST_DAY * per_day, _INT64_MIN)
        high = min((_LAST_DAY + 1) * per_day - 1, _INT64_MAX)
    else:
        raise ValueError(f"field {name!r}: a {kind} column is not a date or timestamp")
    ok = pc.and_(pc.greater_equal(days, low), pc.less_equal(days, high))
    if pc.all(ok).as_py() is not False:
        return array
    return pc.if_else(ok, array, pa.scalar(None, kind))


def _parse_dates(array: pa.Array, declared: str) -> pa.Array:
    """Parse ISO dates (``2023-05-17``) or timestamps; anything else becomes null.

    A date that does not exist (``2023-02-30``) is null too: the parsed value must print
    back as the day that was written. A timestamp whose time of day is in no known form
    (``2023-05-17 13:04:05.123``) keeps its day, at midnight.
    """
    text = pc.utf8_trim_whitespace(array.cast(pa.string()))
    day = pc.utf8_slice_codeunits(text, 0, 10)
    candidates = [pc.strptime(day, format="%Y-%m-%d", unit="s", error_is_null=True)]
    if declared == "timestamp":
        for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
            candidates.insert(-1, pc.strptime(text, format=fmt, unit="s", error_is_null=True))
        parsed = pc.coalesce(*candidates)
    else:
        whole = pc.equal(pc.utf8_length(text), 10)
        parsed = pc.if_else(whole, candidates[0], pa.scalar(None, pa.timestamp("s")))
    exists = pc.equal(pc.strftime(parsed, format="%Y-%m-%d"), day)
    parsed = pc.if_else(exists, parsed, pa.scalar(None, pa.timestamp("s")))
    return parsed.cast(pa.date32()) if declared != "timestamp" else parsed


# ----------------------------------------------------------------------- keyed rules


def _map_distinct(array: pa.Array, compute: Callable[[pa.Array], pa.Array]) -> pa.Array:
    """``compute`` applied to each value of ``array``, evaluating each distinct value once.

    ``compute`` receives non-null values only and returns one output per input; nulls
    map to null. When a sample of the column repeats values the column is
    dictionary-encoded first, so a value repeated a thousand times is hashed once; a
    column of unique identifiers skips the (then useless) encoding.
    """
    if array.null_count == len(array):
        empty = compute(pa.array([], type=array.type))
        return pa.nulls(len(array), type=empty.type)
    if _repeats_values(array):
        encoded = pc.dictionary_encode(array)
        return compute(encoded.dictionary).take(encoded.indices)
    if array.null_count == 0:
        return compute(array)
    valid = pc.is_valid(array).to_numpy(zero_copy_only=False)
    outputs = compute(array.drop_null())
    positions = np.cumsum(valid, dtype=np.int64) - 1
    return outputs.take(pa.array(positions, mask=~valid))


def _repeats_values(array: pa.Array) -> bool:
    """Whether an evenly spread sample of ``array`` holds some value twice."""
    n = len(array)
    if n <= _DEDUPE_SAMPLE:
        sample = array
    else:
        sample = array.take(pa.array(np.linspace(0, n - 1, _DEDUPE_SAMPLE, dtype=np.int64)))
    sample = sample.drop_null()
    return pc.count_distinct(sample).as_py() < len(sample)


def _hash_input(values: pa.Array) -> list[bytes]:
    """The bytes hashed for each (non-null) value: UTF-8 text, or Arrow's text form."""
    if pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type):
        return values.to_pylist()
    if not _is_text(values.type):
        values = values.cast(pa.string())
    kind = pa.large_binary() if pa.types.is_large_string(values.type) else pa.binary()
    return values.cast(kind).to_pylist()


def _pseudonymize(array: pa.Array, rule: PseudonymizeMasking, key: bytes) -> pa.Array:
    prf = _purpose_key(key, "pseudonymize")
    prefix = (rule.prefix or "").encode("utf-8")

    def tokens(values: pa.Array) -> pa.Array:
        digests = prf.digests(_hash_input(values))
        return _token_column(prefix, digests[:, :_TOKEN_BYTES])

    return _map_distinct(array, tokens)


def pseudonymize(array: pa.Array, key: bytes, prefix: str | None = None) -> pa.Array:
    """Keyed pseudonyms of ``array``'s values (nulls stay null), as the pseudonymize rule
    makes them; for columns outside any policy (a merchant's import)."""
    return _pseudonymize(array, PseudonymizeMasking(rule="pseudonymize", prefix=prefix), key)


def _token_column(prefix: bytes, head: npt.NDArray[np.uint8]) -> pa.Array:
    """``prefix`` + base32 of each row of ``head`` (n x 10 bytes), as a string column.

    Each 5-byte half is read as a 40-bit big-endian number and cut into four 10-bit
    pieces, each looked up as two base32 characters at once.
    """
    n = head.shape[0]
    padded = np.zeros((n, 2, 8), dtype=np.uint8)
    padded[:, :, 3:] = head.reshape(n, 2, 5)
    forty = padded.view(">u8").reshape(n, 2, 1).astype(np.uint64)
    pieces = (forty >> np.array([30, 20, 10, 0], dtype=np.uint64)) & np.uint64(1023)
    chars = _BASE32_PAIRS[pieces.reshape(n, 8)].view(np.uint8)  # (n, 16)
    width = len(prefix) + TOKEN_CHARS
    if prefix:
        body = np.empty((n, width), dtype=np.uint8)
        body[:, : len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
        body[:, len(prefix) :] = chars
        chars = body
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(chars))


def _date_shift(
    name: str,
    array: pa.Array,
    field: FieldPolicy,
    rule: DateShiftMasking,
    key: bytes,
    unit: pa.Array,
) -> pa.Array:
    moments = _temporal(name, array, field)
    prf = _purpose_key(key, "date_shift")
    span = np.uint64(2 * rule.max_days + 1)

    def offsets(values: pa.Array) -> pa.Array:
        head = prf.digests(_hash_input(values))[:, :8]
        number = np.ascontiguousarray(head).view(">u8").reshape(-1).astype(np.uint64)
        return pa.array((number % span).astype(np.int64) - rule.max_days)

    if pa.types.is_dictionary(unit.type):
        unit = unit.dictionary_decode()
    shift = _map_distinct(unit, offsets)
    kind = moments.type
    if pa.types.is_date32(kind):
        per_day, raw = 1, moments.view(pa.int32()).cast(pa.int64())
        low, high = _FIRST_DAY, _LAST_DAY
    else:
        per_day, raw = _UNITS_PER_DAY[kind.unit], moments.view(pa.int64())
        low = max(_FIRST_DAY * per_day, _INT64_MIN)
        high = min((_LAST_DAY + 1) * per_day - 1, _INT64_MAX)
    valid = pc.and_(pc.is_valid(raw), pc.is_valid(shift)).to_numpy(zero_copy_only=False)
    before = raw.fill_null(0).to_numpy(zero_copy_only=False)
    delta = shift.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64) * per_day
    with np.errstate(over="ignore"):
        moved = before + delta
    overflow = ((before ^ moved) & (delta ^ moved)) < 0
    ok = valid & ~overflow & (moved >= low) & (moved <= high)
    if pa.types.is_date32(kind):
        return pa.array(moved.astype(np.int32), mask=~ok).view(pa.date32())
    return pa.array(moved, mask=~ok).view(kind)


# ------------------------------------------------------------------------ text rules


def _partial(values: pa.Array, rule: PartialMasking) -> pa.Array:
    """Keep ``keep_first`` and ``keep_last`` characters; mask the rest character by character.

    A string of at most ``keep_first + keep_last`` characters would show whole, so it is
    masked whole (one mask character per character: ``"李"`` with ``keep_first: 1``
    becomes ``"*"``). Lengths count Unicode code points. The empty string stays empty.
    """
    fast = _partial_ascii(values, rule)
    if fast is not None:
        return fast
    first, last = rule.keep_first, rule.keep_last
    length = pc.utf8_length(values)
    long_enough = pc.greater(length, first + last)
    hidden = pc.if_else(long_enough, pc.subtract(length, first + last), length)
    stars = pc.binary_repeat(pa.scalar(rule.mask_char, pa.string()), hidden)
    head = pc.utf8_slice_codeunits(values, 0, first)
    tail = pc.utf8_slice_codeunits(values, -last) if last else pa.scalar("", pa.string())
    kept = pc.binary_join_element_wise(head, stars, tail, "")
    return pc.if_else(long_enough, kept, stars)


def _partial_ascii(values: pa.Array, rule: PartialMasking) -> pa.Array | None:
    """:func:`_partial` for all-ASCII strings and mask character, on the bytes directly.

    One character is one byte then, so masking overwrites bytes in a copy of the data
    buffer and keeps the offsets and validity buffers: a few numpy passes instead of
    eight compute kernels. Returns ``None`` when the column is not all ASCII.
    """
    if not rule.mask_char.isascii() or not pa.types.is_string(values.type):
        return None
    if pc.all(pc.string_is_ascii(values)).as_py() is False:
        return None
    validity, offsets_buffer, data_buffer = values.buffers()
    if data_buffer is None or data_buffer.size == 0:
        return values
    n, start = len(values), values.offset
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)[start : start + n + 1]
    lengths = np.diff(offsets)
    begin, end = int(offsets[0]), int(offsets[-1])
    data = np.frombuffer(data_buffer, dtype=np.uint8).copy()
    segment = data[begin:end]
    first, last, mask = rule.keep_first, rule.keep_last, ord(rule.mask_char)
    nonempty = lengths[lengths > 0]
    if nonempty.size and nonempty.min() == nonempty.max():
        # Fixed-width codes (the common case): the strings form a matrix.
        width = int(nonempty[0])
        matrix = segment.reshape(-1, width)
        if width > first + last:
            matrix[:, first : width - last] = mask
        else:
            matrix[:] = mask
    else:
        position = np.arange(begin, end, dtype=np.int32) - np.repeat(offsets[:-1], lengths)
        length = np.repeat(lengths, lengths)
        segment[(length <= first + last) | ((position >= first) & (position < length - last))] = (
            mask
        )
    return pa.StringArray.from_buffers(
        n, offsets_buffer, pa.py_buffer(data), validity, values.null_count, start
    )


# -------------------------------------------------------------------- temporal rules


def _age_band(moments: pa.Array, band: int, reference: date) -> pa.Array:
    """Age on ``reference`` in bands of ``band`` years: ``"30-39"``; unborn -> null."""
    if isinstance(reference, datetime):
        reference = reference.date()
    year = pc.year(moments).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    month = pc.month(moments).fill_null(0).to_numpy(zero_copy_only=False)
    day = pc.day(moments).fill_null(0).to_numpy(zero_copy_only=False)
    valid = pc.is_valid(moments).to_numpy(zero_copy_only=False)
    before_birthday = (month > reference.month) | (
        (month == reference.month) & (day > reference.day)
    )
    age = reference.year - year - before_birthday.astype(np.int64)
    ok = valid & (age >= 0)
    lower = np.where(ok, age // band * band, 0)
    starts, index = np.unique(lower, return_inverse=True)
    labels = pa.array(
        [str(start) if band == 1 else f"{start}-{start + band - 1}" for start in starts.tolist()],
        type=pa.string(),
    )
    return labels.take(pa.array(index.astype(np.int64), mask=~ok))


# --------------------------------------------------------------------- numeric rules


def _decimals(step: float) -> int:
    """Decimal places of ``step`` as written (0.5 -> 1, 0.01 -> 2, 100 -> 0)."""
    exponent = Decimal(repr(float(step))).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _finite(values: pa.Array, result: pa.Array) -> pa.Array:
    """``result`` where ``values`` is a finite number, null elsewhere (NaN, infinities)."""
    if pa.types.is_integer(values.type):
        return result
    return pc.if_else(pc.is_finite(values), result, pa.scalar(None, result.type))


def _grid(values: pa.Array, step: float) -> pa.Array:
    """Snap down to the grid: the largest multiple of ``step`` not above the value.

    Division is corrected for binary rounding (``0.3 / 0.1`` is 2.9999999999999996,
    which must still snap to 0.3), and results are rounded to ``step``'s decimals.
    """
    if pa.types.is_integer(values.type) and _integral(step):
        whole = int(step)
        numbers = values.fill_null(0).to_numpy(zero_copy_only=False)
        return pa.array(
            numbers // whole * whole, mask=pc.is_null(values).to_numpy(zero_copy_only=False)
        )
    numbers = values.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        quotient = numbers / step
        nearest = np.round(quotient)
        close = np.abs(quotient - nearest) <= 1e-9 * np.maximum(1.0, np.abs(quotient))
        snapped = np.round(np.where(close, nearest, np.floor(quotient)) * step, _decimals(step))
    return pa.array(snapped + 0.0, mask=~np.isfinite(snapped))  # + 0.0: no -0.0


def _round(values: pa.Array, step: float) -> pa.Array:
    """Round to the nearest multiple of ``step``, halves away from zero (150 -> 200)."""
    if pa.types.is_integer(values.type) and _integral(step):
        return pc.round_to_multiple(values, multiple=int(step), round_mode="half_towards_infinity")
    numbers = values.cast(pa.float64())
    rounded = pc.round_to_multiple(numbers, multiple=step, round_mode="half_towards_infinity")
    if not _integral(step):
        rounded = pc.round(rounded, ndigits=_decimals(step))
    return _finite(numbers, pc.add(rounded, 0.0))  # + 0.0 turns -0.0 into 0.0


def _top_code(values: pa.Array, ceiling: float | None, floor: float | None = None) -> pa.Array:
    """Replace values above ``ceiling`` by ``ceiling`` (+inf too) and values below
    ``floor`` by ``floor`` (-inf too); NaN becomes null. Either bound may be ``None``."""
    bounds = [b for b in (ceiling, floor) if b is not None]
    if pa.types.is_integer(values.type) and all(_integral(b) for b in bounds):
        coded = values
        if ceiling is not None:
            coded = pc.min_element_wise(
                coded, pa.scalar(int(ceiling), pa.int64()), skip_nulls=False
            )
        if floor is not None:
            coded = pc.max_element_wise(coded, pa.scalar(int(floor), pa.int64()), skip_nulls=False)
        return coded
    numbers = values.cast(pa.float64())
    coded = numbers
    if ceiling is not None:
        coded = pc.min_element_wise(coded, pa.scalar(float(ceiling)), skip_nulls=False)
    if floor is not None:
        coded = pc.max_element_wise(coded, pa.scalar(float(floor)), skip_nulls=False)
    return pc.if_else(pc.is_nan(numbers), pa.scalar(None, pa.float64()), coded)


def _significant(values: pa.Array, figures: int) -> pa.Array:
    """Round to ``figures`` significant figures, halves away from zero (1,250 -> 1,300 at
    two figures); 0 stays 0; NaN and infinities become null; integers stay integers."""
    integer = pa.types.is_integer(values.type)
    numbers = values.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
    with np.errstate(divide="ignore", invalid="ignore"):
        magnitude = np.floor(np.log10(np.abs(numbers)))
        step = np.where(np.isfinite(magnitude), 10.0 ** (magnitude - figures + 1), 1.0)
        scaled = numbers / step
        rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5) * step
        # Steps below 1 are inexact in binary: round to the step's decimals.
        decimals = np.clip(figures - 1 - magnitude, 0, 15)
        rounded = np.where(
            decimals > 0, np.round(rounded * 10.0**decimals) / 10.0**decimals, rounded
        )
    rounded = rounded + 0.0
    ok = np.isfinite(rounded)
    if integer:
        return pa.array(np.where(ok, rounded, 0).astype(np.int64), mask=~ok)
    return pa.array(rounded, mask=~ok)


def _noise(
    name: str, numbers: pa.Array, rule: NoiseMasking, key: bytes, unit: pa.Array
) -> pa.Array:
    """``value * (1 + e)`` with ``e ~ N(0, relative_sd)`` drawn from the keyed hash of the
    row's privacy unit and the field's name; a null unit gives a null value."""
    prf = _purpose_key(key, f"noise:{name}")

    def normals(values: pa.Array) -> pa.Array:
        head = np.ascontiguousarray(prf.digests(_hash_input(values))[:, :16])
        words = head.view(">u8").reshape(-1, 2).astype(np.uint64) >> np.uint64(11)
        u1 = (words[:, 0].astype(np.float64) + 0.5) / 2.0**53
        u2 = words[:, 1].astype(np.float64) / 2.0**53
        return pa.array(np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2))

    if pa.types.is_dictionary(unit.type):
        unit = unit.dictionary_decode()
    e = _map_distinct(unit, normals).fill_null(np.nan).to_numpy(zero_copy_only=False)
    values = numbers.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
    noisy = values * (1.0 + rule.relative_sd * e)
    result = pa.array(noisy, mask=~np.isfinite(noisy))
    if rule.to is not None:
        result = _round(result, rule.to)
    return result


def _number_text(number: float) -> str:
    return str(int(number)) if _integral(number) else repr(float(number))


def _bucket(values: pa.Array, rule: BucketMasking) -> pa.Array:
    """The label of the bucket each value falls in; outside the edges (or NaN) -> null.

    Bucket ``i`` holds ``edges[i] <= value < edges[i+1]``; the last one also holds its
    upper edge, so its default label is ``"[lower, upper]"``, the others ``"[lower, upper)"``.
    """
    edges = np.asarray(rule.edges, dtype=np.float64)
    count = len(edges) - 1
    if rule.labels is not None:
        names = list(rule.labels)
    else:
        names = [
            f"[{_number_text(edges[i])}, {_number_text(edges[i + 1])}"
            + ("]" if i == count - 1 else ")")
            for i in range(count)
        ]
    numbers = values.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
    index = np.searchsorted(edges, numbers, side="right") - 1
    index = np.minimum(index, count - 1)  # the upper edge itself is in the last bucket
    with np.errstate(invalid="ignore"):
        inside = (numbers >= edges[0]) & (numbers <= edges[-1])
    if rule.values is not None:
        shown = pa.array(rule.values, type=pa.float64())
        return shown.take(pa.array(np.where(inside, index, 0), mask=~inside))
    return pa.array(names, type=pa.string()).take(pa.array(index, mask=~inside))
