"""The checks themselves: :class:`_Checker` runs every check on one artefact at a time."""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Final

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_integer_dtype, is_numeric_dtype

from ...messages import Both, both
from ...messages import text as say
from .files import _decode_text
from .html_tables import _svg_text
from .png import _read_png
from .profile import _is_missing, _label_text, _Profile, _profile
from .provenance import MAX_DP_KEYS, _dp_match
from .rules import Artefact, Context, Finding, Report
from .scanner import _KIND_LABEL, _KNOWN_NAME_CAVEAT, _NAME_CAVEAT, _mask, _Scanner, _why

_TEXT_FOOTER: Final = re.compile(r"\[(\d+) rows x (\d+) columns\]")


def _json_value(value: Any) -> Any:
    """``value`` as plain JSON data (numpy scalars unwrapped, tuples as lists)."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, tuple | list):
        return [_json_value(v) for v in value]
    if _is_missing(value):
        return None
    return str(value)


# ------------------------------------------------------------------------ the checks


class _Checker:
    """Runs every check on one artefact at a time; see :func:`run_checks`."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self.rules = context.rules
        self.scanner = _Scanner(context)

    # -- helpers

    def _finding(
        self, art: Artefact, check: str, severity: str, message: str, **where: Any
    ) -> Finding:
        location = {key: _json_value(v) for key, v in art.origin.items()}
        location.update({key: _json_value(v) for key, v in where.items()})
        return Finding(check, severity, art.name, message, location)

    def _label(self, label: Any) -> str:
        return self.scanner.scrub(_label_text(label))

    def _row_label(self, table: pd.DataFrame, i: int) -> Any:
        label = table.index[i]
        if isinstance(label, tuple):
            return [self._safe_json(v) for v in label]
        return self._safe_json(label)

    def _safe_json(self, value: Any) -> Any:
        value = _json_value(value)
        return self.scanner.scrub(value) if isinstance(value, str) else value

    def _row_text(self, table: pd.DataFrame, i: int) -> Both:
        """``行 3 row 3`` for a positional label, ``行 '涪城区' row '涪城区'`` (or
        ``'a/b'``) otherwise, in both languages."""
        row = self._row_label(table, i)
        if isinstance(row, list):
            row = "/".join(str(v) for v in row)
        return both("row {row}", row=repr(row) if isinstance(row, str) else row)

    def _cell_ref(self, table: pd.DataFrame, i: int, j: int) -> Both:
        """A cell of ``table`` in both languages: its row, then its column."""
        column = self._label(table.columns[j])
        return both("{row}, column {column!r}", row=self._row_text(table, i), column=column)

    def _capped(self, art: Artefact, findings: list[Finding]) -> list[Finding]:
        """Keep ``max_findings_per_check`` findings per check, then one summary each."""
        cap = self.rules.max_findings_per_check
        kept: list[Finding] = []
        extra: dict[tuple[str, str], list[Finding]] = {}
        counts: dict[str, int] = {}
        for finding in findings:
            counts[finding.check] = counts.get(finding.check, 0) + 1
            if counts[finding.check] <= cap:
                kept.append(finding)
            else:
                extra.setdefault((finding.check, finding.severity), []).append(finding)
        for (check, severity), rest in extra.items():
            summary = self._finding(
                art,
                check,
                severity,
                # The check is named by the finding's own (labelled) column, never here.
                say("... and {more} more finding(s) of this kind.", more=len(rest)),
                more=len(rest),
            )
            kept.append(replace(summary, reviewer_only=all(f.reviewer_only for f in rest)))
        return kept

    # -- dispatch

    def check(self, art: Artefact) -> list[Finding]:
        findings: list[Finding] = []
        if art.kind == "binary":
            size = len(art.data or b"")
            reason = art.review_note or both("its type is not one the checks can read")
            findings.append(
                self._finding(
                    art,
                    "binary",
                    "fail",
                    say(
                        "This file ({size} bytes) cannot be checked automatically or shown "
                        "to the reviewer: {reason}. Export results as CSV, Parquet, JSON, "
                        "text or PNG instead.",
                        size=size,
                        reason=reason,
                    ),
                    bytes=size,
                )
            )
            return findings
        if art.review_note:
            findings.append(self._finding(art, "manual_review", "warn", art.review_note.shown))
        if art.kind == "table" and art.table is not None:
            findings += self._check_table(art, art.table)
            if art.text:
                findings += self._check_text(art, art.text)
        elif art.kind == "text":
            findings += self._check_text(art, art.text or "")
        elif art.kind == "image":
            findings += self._check_image(art)
        else:
            findings.append(
                self._finding(
                    art,
                    "manual_review",
                    "warn",
                    say(
                        "Artefact of kind {kind!r} is not understood by the automatic "
                        "checks; review it by hand.",
                        kind=art.kind,
                    ),
                )
            )
        return findings

    # -- text

    def _check_text(self, art: Artefact, text: str) -> list[Finding]:
        findings: list[Finding] = []
        locate = _Lines(text)
        for hit in self.scanner.identifiers(text):
            line, char = locate(hit.start)
            check = "pseudonyms" if hit.kind == "pseudonym" else "identifiers"
            what = _KIND_LABEL[hit.kind]
            findings.append(
                self._finding(
                    art,
                    check,
                    "fail",
                    say(
                        "Line {line}, character {char}: a {what} ({masked}). {why}",
                        line=line,
                        char=char,
                        what=both(what),
                        masked=_mask(hit.value),
                        why=_why(hit.kind),
                    ),
                    line=line,
                    char=char,
                    kind=hit.kind,
                    masked=_mask(hit.value),
                )
            )
        for offset, name in self.scanner.generic_names(text):
            line, char = locate(offset)
            findings.append(
                self._finding(
                    art,
                    "names",
                    "warn",
                    say(
                        "Line {line}, character {char}: {masked!r} looks like a person's "
                        "name. {caveat}",
                        line=line,
                        char=char,
                        masked=_mask(name),
                        caveat=both(_NAME_CAVEAT),
                    ),
                    line=line,
                    char=char,
                    masked=_mask(name),
                )
            )
        for offset, name in self.scanner.find_names(text):
            line, char = locate(offset)
            findings.append(
                replace(
                    self._finding(
                        art,
                        "known_names",
                        "warn",
                        say(
                            "Line {line}, character {char}: {masked!r} is the name of a "
                            "person in the source data. {caveat}",
                            line=line,
                            char=char,
                            masked=_mask(name),
                            caveat=both(_KNOWN_NAME_CAVEAT),
                        ),
                        line=line,
                        char=char,
                        masked=_mask(name),
                    ),
                    reviewer_only=True,
                )
            )
        footer = _TEXT_FOOTER.search(text)
        if footer and int(footer.group(1)) > self.rules.max_rows:
            rows = int(footer.group(1))
            findings.append(
                self._finding(
                    art,
                    "row_level",
                    "fail",
                    say(
                        "The text shows part of a table of {rows} rows (more than "
                        "{limit}): that looks like row-level data.",
                        rows=rows,
                        limit=self.rules.max_rows,
                    ),
                    rows=rows,
                )
            )
        lines = (text.count("\n") + (0 if text.endswith("\n") else 1)) if text else 0
        if lines > self.rules.max_text_lines:
            findings.append(
                self._finding(
                    art,
                    "row_level",
                    "warn",
                    say(
                        "The text has {lines} lines (more than {limit}): long printouts "
                        "often list individual records; check it is not row-level data.",
                        lines=lines,
                        limit=self.rules.max_text_lines,
                    ),
                    lines=lines,
                )
            )
        return self._capped(art, findings)

    # -- images

    def _check_image(self, art: Artefact) -> list[Finding]:
        data = art.image or b""
        mime = (art.mime or "").lower()
        findings: list[Finding] = []
        texts: list[str] = [art.text] if art.text else []
        size_text = both("{size} bytes", size=len(data))
        if mime == "image/png":
            png = _read_png(data)
            if png is None:
                findings.append(self._not_an_image(art, "PNG"))
            else:
                width, height, chunk_texts, trailing = png
                size_text = both(
                    "{width}×{height} px, {size} bytes", width=width, height=height, size=len(data)
                )
                texts += chunk_texts
                if trailing:
                    findings.append(
                        self._finding(
                            art,
                            "file_type",
                            "fail",
                            say(
                                "{trailing} bytes follow the end of this PNG image: data "
                                "can be hidden there. Re-export the image.",
                                trailing=trailing,
                            ),
                            trailing_bytes=trailing,
                        )
                    )
        elif mime == "image/jpeg":
            if not data.startswith(b"\xff\xd8\xff"):
                findings.append(self._not_an_image(art, "JPEG"))
            elif not data.rstrip(b"\0").endswith(b"\xff\xd9"):
                findings.append(
                    self._finding(
                        art,
                        "file_type",
                        "warn",
                        say(
                            "Bytes follow the end of this JPEG image (or it is cut short): "
                            "data can be hidden there."
                        ),
                    )
                )
        elif mime == "image/gif":
            if not data.startswith((b"GIF87a", b"GIF89a")):
                findings.append(self._not_an_image(art, "GIF"))
        elif mime == "image/webp":
            if not (data.startswith(b"RIFF") and data[8:12] == b"WEBP"):
                findings.append(self._not_an_image(art, "WebP"))
        elif mime == "image/svg+xml":
            svg = _decode_text(data, allow_gb18030=False)
            if svg is None or "<svg" not in svg:
                findings.append(self._not_an_image(art, "SVG"))
            elif not art.text:
                texts.append(_svg_text(svg))
        findings.append(
            self._finding(
                art,
                "image",
                "warn",
                say(
                    "Image ({mime}, {size}): images cannot be checked automatically. Look "
                    "for small counts, outliers, individual points, readable labels or "
                    "identifiers before approving.",
                    mime=art.mime or both("unknown type"),
                    size=size_text,
                ),
                mime=art.mime,
                bytes=len(data),
            )
        )
        text = "\n".join(t for t in texts if t and t.strip())
        if text:
            findings += self._check_text(art, text)
        return findings

    def _not_an_image(self, art: Artefact, kind: str) -> Finding:
        return self._finding(
            art,
            "file_type",
            "fail",
            say(
                "The content is not a valid {kind} image although it is labelled as one: it "
                "may be other data in disguise.",
                kind=kind,
            ),
        )

    # -- tables

    def _check_table(self, art: Artefact, table: pd.DataFrame) -> list[Finding]:
        rules = self.rules
        profile = _profile(table, art.table_kind)
        findings: list[Finding] = []
        n_rows = max(len(table), art.total_rows or 0)
        n_cols = table.shape[1]
        too_big = n_rows > rules.max_rows or n_cols > rules.max_columns
        if n_rows > rules.max_rows:
            findings.append(
                self._finding(
                    art,
                    "row_level",
                    "fail",
                    say(
                        "The table has {rows} rows (more than {limit}): that looks like "
                        "row-level data, not an aggregate.",
                        rows=n_rows,
                        limit=rules.max_rows,
                    ),
                    rows=n_rows,
                )
            )
        if n_cols > rules.max_columns:
            findings.append(
                self._finding(
                    art,
                    "row_level",
                    "fail",
                    say(
                        "The table has {columns} columns (more than {limit}): that looks "
                        "like row-level data laid out sideways.",
                        columns=n_cols,
                        limit=rules.max_columns,
                    ),
                    columns=n_cols,
                )
            )
        if not art.from_text:
            # A table read out of a text: the text's own scan finds what is in it.
            if not profile.aggregated:
                findings += self._distinct_columns(art, table, profile)
            findings += self._scan_table(art, table)

        dp = (
            _dp_match(self.context.dp_numbers, self.rules.dp_min_digits, profile)
            if self.context.dp_numbers
            else None
        )
        dp_columns = dp.full_columns if dp else set()
        sdc: list[Finding] = []
        sdc += self._min_cell_count(art, table, profile, dp_columns)
        sdc += self._dominance(art, table, profile, dp_columns, skip_warning=too_big)
        if dp is not None and dp.everything:
            findings.append(
                self._finding(
                    art,
                    "dp_provenance",
                    "safe",
                    say(
                        "All {total} numbers in this table match released differentially "
                        "private answers: it is DP output, so the minimum-cell-count and "
                        "dominance checks do not apply ({set_aside} such finding(s) set "
                        "aside).",
                        total=dp.total,
                        set_aside=len(sdc),
                    ),
                    numbers=dp.total,
                    matched=dp.matched,
                    set_aside=len(sdc),
                    dp_keys=sorted(dp.keys)[:MAX_DP_KEYS],
                )
            )
        else:
            findings += sdc
            if dp is not None and dp.matched:
                share = dp.matched / dp.total
                full = [self._label(table.columns[j]) for j in sorted(dp_columns)]
                columns_text = (
                    both(
                        " Columns entirely from DP answers, exempt from the count and "
                        "dominance checks: {columns}.",
                        columns=", ".join(repr(c) for c in full),
                    )
                    if full
                    else ""
                )
                short = (
                    both(
                        " {short} number(s) with fewer than {digits} significant digits "
                        "cannot be attributed to DP answers.",
                        short=dp.short,
                        digits=rules.dp_min_digits,
                    )
                    if dp.short
                    else ""
                )
                findings.append(
                    self._finding(
                        art,
                        "dp_provenance",
                        "info",
                        say(
                            "{matched} of {total} numbers ({share:.0%}) match released "
                            "differentially private answers; the rest may come from the "
                            "masked view.{columns}{short}",
                            matched=dp.matched,
                            total=dp.total,
                            share=share,
                            columns=columns_text,
                            short=short,
                        ),
                        numbers=dp.total,
                        matched=dp.matched,
                        share=round(share, 4),
                        short=dp.short,
                        dp_columns=full,
                        dp_keys=sorted(dp.keys)[:MAX_DP_KEYS],
                    )
                )
        return self._capped(art, findings)

    def _distinct_columns(
        self, art: Artefact, table: pd.DataFrame, profile: _Profile
    ) -> list[Finding]:
        findings: list[Finding] = []
        for col in profile.columns:
            if col.numbers is not None:
                continue
            series = table.iloc[:, col.position]
            values = [v for v in series.tolist() if not _is_missing(v)]
            if len(values) < self.rules.distinct_min_values:
                continue
            if not all(isinstance(v, str) for v in values):
                continue
            distinct = len(set(values))
            share = distinct / len(values)
            if share >= self.rules.distinct_share:
                findings.append(
                    self._finding(
                        art,
                        "row_level",
                        "warn",
                        say(
                            "Column {column!r}: {distinct} of {values} values ({share:.0%}) "
                            "are distinct, as in an identifier; the table may be row-level "
                            "data.",
                            column=self._label(col.label),
                            distinct=distinct,
                            values=len(values),
                            share=share,
                        ),
                        column=self._safe_json(col.text),
                        column_position=col.position,
                        distinct=distinct,
                        values=len(values),
                    )
                )
        return findings

    def _scan_table(self, art: Artefact, table: pd.DataFrame) -> list[Finding]:
        """Identifiers, pseudonyms and names in cells, row labels and column headers."""
        limit = self.rules.scan_max_rows
        findings: list[Finding] = []
        sources: list[tuple[str, Any, int | None, list[str | None]]] = []
        for j in range(table.shape[1]):
            sources.append(("column", table.columns[j], j, _texts(table.iloc[:limit, j])))
        if not isinstance(table.index, pd.RangeIndex):
            for level in range(table.index.nlevels):
                values = table.index.get_level_values(level)[:limit]
                sources.append(("index", f"(row labels, level {level})", None, _texts(values)))
        headers = [_label_text(c) for c in table.columns]
        headers += [str(n) for n in table.index.names if n is not None]
        sources.append(("headers", "(column headers)", None, headers))

        for source, label, j, texts in sources:
            array = np.array(texts, dtype=object)
            codes, uniques = pd.factorize(array, use_na_sentinel=True)
            if not len(uniques):
                continue
            valid = codes >= 0
            counts = np.bincount(codes[valid], minlength=len(uniques))
            first_index = np.full(len(uniques), -1)
            present, where_first = np.unique(codes[valid], return_index=True)
            first_index[present] = np.flatnonzero(valid)[where_first]
            # pd.factorize numbers uniques in order of first appearance, so the first
            # unique with a hit is also the first row with one.
            kinds: dict[str, list[Any]] = {}  # kind -> [cells, first unique, masked]
            names: list[Any] = [0, -1, ""]  # look like names (generic model)
            known: list[Any] = [0, -1, ""]  # names from the raw data: reviewers only
            # A cell that is nothing but an 11-digit number may be an amount (15 billion
            # yuan) rather than a phone number: such cells count as mobile numbers only
            # when at least half of the column's all-digit cells are mobile numbers.
            bare_digits = 0
            bare_mobiles: list[Any] = [0, -1, ""]
            for u, text in enumerate(uniques):
                hits = self.scanner.identifiers(text)
                if text.isascii() and text.isdigit():
                    bare_digits += int(counts[u])
                    if len(hits) == 1 and hits[0].kind == "mobile" and hits[0].value == text:
                        if not bare_mobiles[0]:
                            bare_mobiles[1], bare_mobiles[2] = u, _mask(text)
                        bare_mobiles[0] += int(counts[u])
                        continue
                seen: set[str] = set()
                for hit in hits:
                    if hit.kind not in kinds:
                        kinds[hit.kind] = [0, u, _mask(hit.value)]
                    entry = kinds[hit.kind]
                    if hit.kind not in seen:
                        seen.add(hit.kind)
                        entry[0] += int(counts[u])
                for entry, found in (
                    (names, self.scanner.generic_names(text)),
                    (known, self.scanner.find_names(text)),
                ):
                    if found:
                        if not entry[0]:
                            entry[1], entry[2] = u, _mask(found[0][1])
                        entry[0] += int(counts[u])
            if bare_mobiles[0] and 2 * bare_mobiles[0] >= bare_digits:
                entry = kinds.setdefault("mobile", [0, bare_mobiles[1], bare_mobiles[2]])
                entry[0] += bare_mobiles[0]
                if bare_mobiles[1] < entry[1]:
                    entry[1], entry[2] = bare_mobiles[1], bare_mobiles[2]
            cut = len(table) > limit and source != "headers"
            place = (art, table, source, label, j, limit if cut else None)
            for kind, (cells, u, masked) in kinds.items():
                check = "pseudonyms" if kind == "pseudonym" else "identifiers"
                findings.append(
                    self._column_finding(
                        *place, int(first_index[u]), cells, check, "fail", kind, masked
                    )
                )
            for entry, check in ((names, "names"), (known, "known_names")):
                if entry[0]:
                    finding = self._column_finding(
                        *place, int(first_index[entry[1]]), entry[0], check, "warn", check,
                        entry[2],
                    )  # fmt: skip
                    findings.append(replace(finding, reviewer_only=check == "known_names"))
        return findings

    def _column_finding(
        self,
        art: Artefact,
        table: pd.DataFrame,
        source: str,
        label: Any,
        j: int | None,
        scanned: int | None,
        first: int,
        cells: int,
        check: str,
        severity: str,
        kind: str,
        masked: str,
    ) -> Finding:
        """The finding for hits of one kind in one column, row labels or headers."""
        where: dict[str, Any]
        if source == "column":
            row = self._row_label(table, first)
            place = both("Column {column!r}", column=self._label(label))
            first_text = both(", first in {row}", row=self._row_text(table, first))
            where = {
                "column": self._safe_json(_label_text(label)),
                "column_position": j,
                "first_row": row,
                "first_row_position": first,
            }
        elif source == "index":
            place = both("Row labels")
            first_text = both(", first in row position {first}", first=first)
            where = {"column": label, "first_row_position": first}
        else:
            place = both("Column headers")
            first_text = Both("", "")
            where = {"column": label}
        values = {"place": place, "cells": cells, "masked": masked, "first": first_text}
        if check == "names":
            message = both(
                "{place}: {cells} cell(s) look like names of people (e.g. {masked!r}){first}. "
                "{caveat}",
                caveat=both(_NAME_CAVEAT),
                **values,
            )
        elif check == "known_names":
            message = both(
                "{place}: {cells} cell(s) contain names of people in the source data "
                "(e.g. {masked!r}){first}. {caveat}",
                caveat=both(_KNOWN_NAME_CAVEAT),
                **values,
            )
        else:
            message = both(
                "{place}: {cells} cell(s) contain a {what} (e.g. {masked}){first}. {why}",
                what=both(_KIND_LABEL[kind]),
                why=_why(kind),
                **values,
            )
        if scanned is not None:
            message += both(" Only the first {scanned} rows were scanned.", scanned=scanned)
            where["scanned_rows"] = scanned
        return self._finding(
            art, check, severity, message.shown, kind=kind, cells=cells, masked=masked, **where
        )

    # -- minimum cell count

    def _min_cell_count(
        self, art: Artefact, table: pd.DataFrame, profile: _Profile, dp_columns: set[int]
    ) -> list[Finding]:
        threshold = self.rules.min_cell_count
        findings: list[Finding] = []
        for j in profile.frequency:
            if j in dp_columns:
                continue
            values = profile.columns[j].numbers
            assert values is not None
            low = (values >= 0) if self.rules.zeros_disclosive else (values > 0)
            for i in np.flatnonzero(low & (values < threshold)).tolist():
                value = float(values[i])
                findings.append(
                    self._finding(
                        art,
                        "min_cell_count",
                        "fail",
                        say(
                            "Cell ({cell}) counts {value:g}, below the minimum of "
                            "{threshold}: {low} can single out people. Merge categories or "
                            "suppress the cell.",
                            cell=self._cell_ref(table, i, j),
                            value=value,
                            threshold=threshold,
                            low=self._low_counts(),
                        ),
                        row=self._row_label(table, i),
                        row_position=i,
                        column=self._safe_json(_label_text(table.columns[j])),
                        column_position=j,
                        value=value,
                        threshold=threshold,
                    )
                )
        return findings

    def _low_counts(self) -> Both:
        low = 0 if self.rules.zeros_disclosive else 1
        counts = both("counts from {low} to {high}", low=low, high=self.rules.min_cell_count - 1)
        if low == 0:
            counts += both(" (a zero tells that nobody in the group has the attribute)")
        return counts

    def _uncertain(
        self, art: Artefact, table: pd.DataFrame, profile: _Profile, dp_columns: set[int]
    ) -> list[Finding]:
        """One reviewer note for columns that may be counts or sums of whole numbers."""
        columns = [j for j in profile.uncertain if j not in dp_columns]
        if not columns:
            return []
        names = ", ".join(repr(self._label(table.columns[j])) for j in columns)
        return [
            self._finding(
                art,
                "table_kind",
                "warn",
                say(
                    "Column(s) {names} hold whole numbers that may be counts (a frequency "
                    "table) or sums of whole numbers (a magnitude table); the table alone "
                    "cannot tell. They were checked as counts. If they are sums, the "
                    "dominance rules and the contributor counts could not be checked: "
                    "display the table with shuyu.egress.table(...), which says how it was "
                    "computed and attaches the statistics.",
                    names=names,
                ),
                columns=[self._safe_json(_label_text(table.columns[j])) for j in columns],
            )
        ]

    # -- dominance

    def _dominance(
        self,
        art: Artefact,
        table: pd.DataFrame,
        profile: _Profile,
        dp_columns: set[int],
        *,
        skip_warning: bool,
    ) -> list[Finding]:
        findings: list[Finding] = []
        covered: set[str] = set()
        by_label = {_label_text(c): c.position for c in reversed(profile.columns)}
        if art.cell_stats:
            blocks = _stat_blocks(art.cell_stats)
            if blocks is None:
                return [
                    self._finding(
                        art,
                        "dominance",
                        "warn",
                        say(
                            "The contributor statistics supplied with this table are "
                            "malformed, so dominance could not be checked automatically."
                        ),
                    )
                ]
            for block in blocks:
                column = _label_text(block.get("column", ""))
                covered.add(column)
                # Pivot tables: each cell names its own column.
                covered |= {
                    _label_text(c["column"]) for c in block["cells"] if c.get("column") is not None
                }
                if by_label.get(column) in dp_columns:
                    continue
                findings += self._stat_block(art, column, block)
        if skip_warning:
            return findings
        findings += self._uncertain(
            art, table, profile, dp_columns | {by_label[c] for c in covered if c in by_label}
        )
        unchecked = [
            j
            for j in profile.magnitude
            if j not in dp_columns
            and j not in profile.uncertain
            and _label_text(table.columns[j]) not in covered
        ]
        if unchecked:
            names = ", ".join(repr(self._label(table.columns[j])) for j in unchecked)
            findings.append(
                self._finding(
                    art,
                    "dominance",
                    "warn",
                    say(
                        "Column(s) {names} hold sums, means, extremes or amounts, but no "
                        "contributor statistics came with the table, so the n-k and p% "
                        "dominance rules could not be checked automatically. Check that no "
                        "cell is dominated by one or two contributors (e.g. one large firm).",
                        names=names,
                    ),
                    columns=[self._safe_json(_label_text(table.columns[j])) for j in unchecked],
                )
            )
        return findings

    def _stat_block(self, art: Artefact, column: str, block: Mapping[str, Any]) -> list[Finding]:
        rules = self.rules
        n, k, p = rules.dominance_n, rules.dominance_k, rules.p_percent
        findings: list[Finding] = []
        undefined: list[Any] = []  # cells with negative contributions
        malformed = 0
        for cell in block.get("cells", []):
            try:
                total = float(cell["total"])
                if math.isnan(total):
                    total = 0.0
                top = sorted((float(t) for t in cell.get("top", [])), reverse=True)
                negatives = int(cell.get("n_negative", 0) or 0)
                count = cell.get("count")
                count = None if count is None else _whole(float(count))
            except (KeyError, TypeError, ValueError):
                malformed += 1
                continue
            cell_column = _label_text(cell.get("column", column))
            row = self._safe_json(cell.get("row"))
            ref = both(
                "{row}, column {column!r}",
                row=both("row {row}", row=repr(row)),
                column=self.scanner.scrub(cell_column),
            )
            where = {"row": row, "column": self._safe_json(cell_column)}
            if count is not None and 0 <= count < rules.min_cell_count:
                none = both(" (all its values are missing)") if count == 0 else ""
                findings.append(
                    self._finding(
                        art,
                        "min_cell_count",
                        "fail",
                        say(
                            "Cell ({ref}) is computed from {count:g} contributor(s){none}, "
                            "below the minimum of {threshold}.",
                            ref=ref,
                            count=count,
                            none=none,
                            threshold=rules.min_cell_count,
                        ),
                        **where,
                        contributors=count,
                        threshold=rules.min_cell_count,
                    )
                )
            if negatives or total < 0 or any(t < 0 for t in top):
                # As ACRO: dominance is not defined with negative contributions, so the
                # cell goes to the reviewer (ACRO's "review"), one finding per cell.
                undefined.append(row)
                findings.append(
                    self._finding(
                        art,
                        "dominance",
                        "warn",
                        say(
                            "Cell ({ref}) has negative contributions, for which the n-k and "
                            "p% rules are not defined; check by hand that no contributor "
                            "dominates it.",
                            ref=ref,
                        ),
                        **where,
                        negative=True,
                    )
                )
                continue
            if not top:
                if total > 0 or count is None:
                    malformed += 1
                continue
            if total == 0:
                # Every contribution is zero: the cell tells each contributor's value.
                # ACRO's ratios are 0/0 there, which its masks count as disclosive.
                findings.append(
                    self._finding(
                        art,
                        "dominance",
                        "fail",
                        say(
                            "Cell ({ref}): every contribution is zero, so the cell tells "
                            "each contributor's value; the n-k and p% rules fail it.",
                            ref=ref,
                        ),
                        **where,
                        share=None,
                        n=n,
                        k=k,
                    )
                )
                continue
            if total > 0:
                share = sum(top[:n]) / total
                if share >= k:
                    findings.append(
                        self._finding(
                            art,
                            "dominance",
                            "fail",
                            say(
                                "Cell ({ref}): the {largest} make up {share:.1%} of the cell "
                                "total; the n-k rule fails at {k:g}% or more, as one or two "
                                "contributors could learn each other's value.",
                                ref=ref,
                                largest=_largest(n),
                                share=share,
                                k=k * 100,
                            ),
                            **where,
                            share=round(share, 4),
                            n=n,
                            k=k,
                        )
                    )
            top1 = top[0]
            top2 = top[1] if len(top) > 1 else 0.0
            if top1 > 0:
                ratio = (total - top1 - top2) / top1
                if ratio < p:
                    findings.append(
                        self._finding(
                            art,
                            "p_percent",
                            "fail",
                            say(
                                "Cell ({ref}): the contributors other than the two largest "
                                "add up to {ratio:.1%} of the largest; the p% rule fails "
                                "below {p:g}%, as the second-largest contributor could "
                                "estimate the largest to within {p:g}%.",
                                ref=ref,
                                ratio=max(ratio, 0),
                                p=p * 100,
                            ),
                            **where,
                            ratio=round(ratio, 4),
                            p=p,
                        )
                    )
        if malformed:
            findings.append(
                self._finding(
                    art,
                    "dominance",
                    "warn",
                    say(
                        "Column {column!r}: statistics of {malformed} cell(s) are "
                        "incomplete, so their dominance could not be checked.",
                        column=self.scanner.scrub(column),
                        malformed=malformed,
                    ),
                    column=self._safe_json(column),
                    cells=malformed,
                )
            )
        return findings


def _whole(number: float) -> float | int:
    return int(number) if number.is_integer() else number


def _largest(n: int) -> Both:
    if n == 1:
        return both("largest contributor")
    return both("{n} largest contributors", n=n)


def _stat_blocks(stats: Mapping[str, Any]) -> list[Mapping[str, Any]] | None:
    blocks = stats.get("columns") if "columns" in stats else [stats]
    if not isinstance(blocks, list):
        return None
    for block in blocks:
        if not isinstance(block, Mapping) or not isinstance(block.get("cells"), list):
            return None
        if not all(isinstance(cell, Mapping) for cell in block["cells"]):
            return None
    return blocks


class _Lines:
    """Turns offsets in a text into 1-based (line, character) positions."""

    def __init__(self, text: str) -> None:
        self._starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def __call__(self, offset: int) -> tuple[int, int]:
        line = bisect.bisect_right(self._starts, offset)
        return line, offset - self._starts[line - 1] + 1


def _texts(values: pd.Series | pd.Index) -> list[str | None]:
    """Text form of each value for scanning, None where there is nothing to scan.

    Integers are written out exactly (ID and phone numbers stored as numbers), whole
    floats as integers, other floats are skipped (no identifier has a fraction).
    """
    dtype = values.dtype
    items = values.tolist()
    if is_bool_dtype(dtype):
        return [None] * len(items)
    if is_integer_dtype(dtype):
        return [None if _is_missing(v) else str(int(v)) for v in items]
    if is_numeric_dtype(dtype):
        return [
            str(int(v)) if not _is_missing(v) and math.isfinite(v) and v == int(v) else None
            for v in items
        ]
    out: list[str | None] = []
    for v in items:
        if _is_missing(v):
            out.append(None)
        elif isinstance(v, float):
            out.append(str(int(v)) if math.isfinite(v) and v == int(v) else None)
        else:
            out.append(str(v))
    return out


def run_checks(artefacts: Sequence[Artefact], context: Context) -> Report:
    """Run every check on every artefact and collect the findings in a :class:`Report`.

    Findings come in artefact order; within one artefact and one check at most
    ``Rules.max_findings_per_check`` are listed, then one finding counts the rest.
    """
    checker = _Checker(context)
    findings: list[Finding] = []
    for art in artefacts:
        findings += checker.check(art)
    return Report(findings, context.rules)
