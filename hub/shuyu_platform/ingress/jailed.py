"""The steps of an import that parse the merchant's file, run in the parsing jail.

:func:`checks` reads the file (CSV or Parquet), checks the declared fields, size limits
and counts the direct identifiers in it with the egress checks' detectors
(:func:`~shuyu_platform.egress.disclosure.scanner.identifier_kinds`, built on
:mod:`shuyu_platform.data.identifiers`); :func:`pseudonymised` writes the approved
import as Parquet with its declared identifier columns replaced by pseudonyms keyed to
the import. Both are named in :data:`shuyu_platform.isolation.jail.TASKS`; a
``ValueError`` is a refusal the merchant reads.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections import Counter
from collections.abc import Mapping
from typing import Any

#: Most columns an import may have.
MAX_COLUMNS = 500
#: Distinct values of one column scanned for identifiers (the rest are counted as unscanned).
MAX_SCANNED_VALUES = 200_000


def read_table(filename: str, data: bytes, max_rows: int) -> Any:
    """The file as an Arrow table; ``ValueError`` for anything that is not a sane table."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    name = filename.lower()
    try:
        if name.endswith(".parquet"):
            parquet = pq.ParquetFile(io.BytesIO(data))
            rows = parquet.metadata.num_rows
            if rows > max_rows:
                raise ValueError(f"the file holds {rows:,} rows; at most {max_rows:,}")
            if parquet.metadata.num_columns > MAX_COLUMNS:
                raise ValueError(f"the file has more than {MAX_COLUMNS} columns")
            table = parquet.read()
        elif name.endswith(".csv"):
            table = pacsv.read_csv(io.BytesIO(data))
        else:
            raise ValueError("an import is a .csv or .parquet file")
    except (pa.ArrowException, OSError) as err:
        raise ValueError(f"{filename} is not a readable table: {str(err)[:300]}") from None
    if table.num_rows > max_rows:
        raise ValueError(f"the file holds {table.num_rows:,} rows; at most {max_rows:,}")
    if table.num_columns > MAX_COLUMNS:
        raise ValueError(f"the file has more than {MAX_COLUMNS} columns")
    if table.num_rows == 0:
        raise ValueError(f"{filename} holds no rows")
    return table


def _declared(table: Any, fields: Mapping[str, Any]) -> None:
    """Every described column exists (a column not described is neither an identifier
    nor sensitive; the identifier scan warns when it holds identifiers)."""
    columns = list(table.column_names)
    absent = [c for c in fields if c not in columns]
    if absent:
        raise ValueError(f"described column {absent[0]!r} is not in the file")
    if len(set(columns)) != len(columns):
        raise ValueError("two columns have the same name")


def _column_summary(column: Any) -> dict[str, Any]:
    """What a reviewer reads about one column: type, nulls, distinct values, range,
    and the direct identifiers found in it (counted per row)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from ..egress.disclosure.scanner import identifier_kinds

    summary: dict[str, Any] = {
        "type": str(column.type),
        "nulls": column.null_count,
        "distinct": pc.count_distinct(column).as_py(),
    }
    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_temporal(kind):
        bounds = pc.min_max(column).as_py()
        summary["min"], summary["max"] = str(bounds["min"]), str(bounds["max"])
    found: Counter[str] = Counter()
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind):
        counts = pc.value_counts(column.cast(pa.string()).combine_chunks()).to_pylist()
        summary["unscanned_values"] = max(0, len(counts) - MAX_SCANNED_VALUES)
        for entry in counts[:MAX_SCANNED_VALUES]:
            value = entry["values"]
            if value:
                for hit in identifier_kinds(value):
                    found[hit] += entry["counts"]
    summary["identifiers"] = dict(sorted(found.items()))
    return summary


def checks(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Jailed task: the automatic checks of an import and a summary for its reviewer."""
    data = base64.b64decode(payload["content_base64"], validate=True)
    table = read_table(payload["filename"], data, int(payload["max_rows"]))
    fields = payload["fields"]
    _declared(table, fields)
    columns = {name: _column_summary(table.column(name)) for name in table.column_names}
    totals: Counter[str] = Counter()
    warnings = []
    for name, summary in columns.items():
        totals.update(summary["identifiers"])
        if summary["identifiers"] and not fields.get(name, {}).get("identifier"):
            kinds = ", ".join(summary["identifiers"])
            warnings.append(
                f"column {name!r} holds direct identifiers ({kinds}) but is not declared "
                "an identifier: it would be mounted in the clear"
            )
    return {
        "rows": table.num_rows,
        "columns": columns,
        "identifiers": {k: totals.get(k, 0) for k in ("id_card", "mobile", "uscc", "bank_card")},
        "warnings": warnings,
        "verdict": "review" if warnings else "ok",
    }


def pseudonymised(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Jailed task: the import as Parquet, declared identifiers replaced by pseudonyms."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..data.masking import pseudonymize

    data = base64.b64decode(payload["content_base64"], validate=True)
    table = read_table(payload["filename"], data, int(payload["max_rows"]))
    _declared(table, payload["fields"])
    key = bytes.fromhex(payload["key_hex"])
    for index, name in enumerate(table.column_names):
        if payload["fields"].get(name, {}).get("identifier"):
            values = table.column(name).cast(pa.string()).combine_chunks()
            table = table.set_column(
                index, pa.field(name, pa.string()), pseudonymize(values, key, "I-")
            )
    sink = io.BytesIO()
    metadata = {b"shuyu.import": payload["import_id"].encode()}
    pq.write_table(table.replace_schema_metadata(metadata), sink, compression="zstd")
    out = sink.getvalue()
    return {
        "parquet_base64": base64.b64encode(out).decode(),
        "sha256": hashlib.sha256(out).hexdigest(),
    }
