"""Which fields a view may hold, and the Arrow type each masking rule outputs."""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from datetime import date
from typing import Final

import pyarrow as pa

from shuyu_platform.data.policy import (
    BucketMasking,
    DatasetPolicy,
    DateShiftMasking,
    FieldPolicy,
    GeneralizeMasking,
    MicroaggregateMasking,
    NoiseMasking,
    PseudonymizeMasking,
    RoundMasking,
    TopCodeMasking,
)

#: Valid days of a date32 column: 0001-01-01 .. 9999-12-31 as days since 1970-01-01.
_FIRST_DAY: Final[int] = (date(1, 1, 1) - date(1970, 1, 1)).days
_LAST_DAY: Final[int] = (date(9999, 12, 31) - date(1970, 1, 1)).days
_UNITS_PER_DAY: Final[dict[str, int]] = {
    "s": 86_400,
    "ms": 86_400_000,
    "us": 86_400_000_000,
    "ns": 86_400_000_000_000,
}
_INT64_MIN: Final[int] = -(2**63)
_INT64_MAX: Final[int] = 2**63 - 1

#: Arrow type of each policy field type, used when no raw schema is at hand.
CANONICAL_TYPES: Final[dict[str, pa.DataType]] = {
    "string": pa.string(),
    "category": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("ms"),
}


# ====================================================================== field checks


def view_fields(policy: DatasetPolicy, fields: Sequence[str]) -> tuple[str, ...]:
    """Check that ``fields`` may appear in a view of ``policy``; return them in policy order.

    Raises :class:`ValueError` naming the field for a field the policy does not know, a
    grade L4 field, a field the policy drops from every view, a field asked for twice,
    or an empty request.
    """
    if isinstance(fields, str):
        raise ValueError(f"fields must be a sequence of field names, not the string {fields!r}")
    requested = list(fields)
    if not requested:
        raise ValueError(f"no fields requested from dataset {policy.dataset!r}")
    seen: set[str] = set()
    for name in requested:
        if not isinstance(name, str) or name not in policy.fields:
            close = difflib.get_close_matches(str(name), list(policy.fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"dataset {policy.dataset!r} has no field {name!r}{hint}")
        field = policy.fields[name]
        if field.grade == "L4":
            raise ValueError(
                f"field {name!r} of dataset {policy.dataset!r} is grade L4 (forbidden) "
                "and never appears in a view"
            )
        if not field.visible:
            raise ValueError(
                f"field {name!r} of dataset {policy.dataset!r} is dropped from every view "
                "by its masking rule"
            )
        if name in seen:
            raise ValueError(f"field {name!r} is requested twice")
        seen.add(name)
    return tuple(name for name in policy.fields if name in seen)


def masking_label(field: FieldPolicy) -> str:
    """A short description of a field's masking, e.g. ``generalize:year``, for metadata."""
    rule = field.masking
    if isinstance(rule, GeneralizeMasking):
        return f"generalize:{rule.to}"
    if isinstance(rule, RoundMasking) and rule.significant is not None:
        return f"round:{rule.significant}sf"
    return rule.rule


def needs_unit(field: FieldPolicy) -> bool:
    """Whether ``field``'s masking is keyed per privacy unit (``date_shift``, ``noise``)."""
    return isinstance(field.masking, DateShiftMasking | NoiseMasking)


def is_keyed(field: FieldPolicy) -> bool:
    """Whether ``field``'s masking hashes values under the tenant key (``pseudonymize``,
    ``date_shift``, ``noise``): the one per-value cost of masking a large column."""
    return isinstance(field.masking, PseudonymizeMasking) or needs_unit(field)


# ============================================================================ schema


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _value_type(kind: pa.DataType) -> pa.DataType:
    return kind.value_type if pa.types.is_dictionary(kind) else kind


def _integral(number: float) -> bool:
    return math.isfinite(number) and float(number).is_integer()


def _temporal_type(field: FieldPolicy, raw: pa.DataType) -> pa.DataType:
    """The type a temporal rule produces for a raw column of type ``raw``."""
    if pa.types.is_date32(raw) or pa.types.is_timestamp(raw):
        return raw
    if pa.types.is_date64(raw):
        return pa.date32()
    return pa.date32() if field.type == "date" else pa.timestamp("s")


def output_type(field: FieldPolicy, raw: pa.DataType | None = None) -> pa.DataType:
    """The Arrow type ``field``'s masking produces from a raw column of type ``raw``.

    Without ``raw``, the canonical type of the field's declared type is assumed.
    """
    raw = _value_type(raw) if raw is not None else CANONICAL_TYPES[field.type]
    rule = field.masking
    if rule.rule == "keep":
        return raw
    if isinstance(rule, GeneralizeMasking):
        if rule.to in ("year", "month"):
            return _temporal_type(field, raw)
        if rule.to == "grid":
            assert rule.grid_degrees is not None
            return _numeric_type(raw, rule.grid_degrees)
        return pa.string()  # age_band, prefix
    if isinstance(rule, RoundMasking):
        return _numeric_type(raw, 1.0 if rule.to is None else rule.to)
    if isinstance(rule, BucketMasking) and rule.values is not None:
        return pa.float64()
    if isinstance(rule, TopCodeMasking):
        bounds = [b for b in (rule.min, rule.max) if b is not None]
        return _numeric_type(raw, 1.0 if all(_integral(b) for b in bounds) else 0.5)
    if isinstance(rule, NoiseMasking | MicroaggregateMasking):
        return _numeric_type(raw, 0.5 if rule.to is None else rule.to)
    if isinstance(rule, DateShiftMasking):
        return _temporal_type(field, raw)
    return pa.string()  # pseudonymize, partial, bucket


def _numeric_type(raw: pa.DataType, parameter: float) -> pa.DataType:
    return pa.int64() if pa.types.is_integer(raw) and _integral(parameter) else pa.float64()


def view_schema(
    policy: DatasetPolicy, fields: Sequence[str], raw_schema: pa.Schema | None = None
) -> pa.Schema:
    """The Arrow schema of a view of ``fields`` (checked by :func:`view_fields`).

    Columns come in policy order. Exact types need the raw file's schema (``raw_schema``):
    ``keep`` and the temporal rules keep the raw type. Every column is nullable and
    carries its catalogue title, grade and masking as field metadata
    (``shuyu.title``, ``shuyu.grade``, ``shuyu.masking``).
    """
    columns = []
    for name in view_fields(policy, fields):
        field = policy.fields[name]
        raw = None
        if raw_schema is not None:
            index = raw_schema.get_field_index(name)
            if index < 0:
                raise ValueError(f"field {name!r} is not a column of the raw file")
            raw = raw_schema.field(index).type
        metadata = {
            "shuyu.title": field.title,
            "shuyu.grade": field.grade,
            "shuyu.masking": masking_label(field),
        }
        columns.append(pa.field(name, output_type(field, raw), nullable=True, metadata=metadata))
    return pa.schema(columns)
