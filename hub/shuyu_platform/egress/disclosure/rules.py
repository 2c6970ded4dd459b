"""Rules and results of the disclosure checks: thresholds, findings, artefacts, reports.

The data types the checks take and give back; the package docstring says what each
check does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Final

import pandas as pd

from ...messages import Both

#: Version of the checks' logic, stored in every report so old results can be told apart.
CHECKS_VERSION: Final[int] = 1

#: Severities from worst to mildest.
SEVERITIES: Final[tuple[str, ...]] = ("fail", "warn", "info", "safe")

#: Every value the ``check`` field of a :class:`Finding` can take.
CHECKS: Final[tuple[str, ...]] = (
    "min_cell_count",
    "dominance",
    "p_percent",
    "row_level",
    "pseudonyms",
    "identifiers",
    "names",
    "known_names",
    "image",
    "dp_provenance",
    "table_kind",
    "binary",
    "file_type",
    "manual_review",
)


@dataclass(frozen=True)
class Rules:
    """Thresholds of the checks. The review service fills them from policy.

    The defaults follow ACRO's ``default.yaml`` (see the module docstring) except
    ``dominance_k``, which is stricter than ACRO's 0.90.
    """

    min_cell_count: int = 10
    """Frequency-table cells ``x < min_cell_count`` fail (ACRO ``safe_threshold``)."""
    zeros_disclosive: bool = True
    """Zero cells of frequency tables fail too (ACRO ``zeros_are_disclosive``, default on)."""
    dominance_n: int = 2
    """n of the n-k rule: how many of the largest contributors are added up."""
    dominance_k: float = 0.85
    """k of the n-k rule: the top ``n`` making up this share of a cell total or more fail."""
    p_percent: float = 0.10
    """p of the p% rule: total minus the top two below this share of the largest fails."""
    max_rows: int = 500
    """Tables with more rows than this look like row-level data and fail."""
    max_columns: int = 500
    """Tables with more columns than this fail too (row-level data, transposed)."""
    max_text_lines: int = 500
    """Text with more lines than this warns: it may be row-level data printed out."""
    distinct_share: float = 0.9
    """A string column whose values are at least this share distinct looks like an id."""
    distinct_min_values: int = 20
    """... but only with at least this many values (short columns are often distinct)."""
    dp_min_digits: int = 3
    """Numbers with fewer significant digits never count as DP-matched (see module)."""
    min_name_length: int = 2
    """Known names shorter than this (in characters) are not looked for."""
    max_findings_per_check: int = 20
    """Findings of one check on one artefact beyond this are summed up in one more."""
    scan_max_rows: int = 100_000
    """Only this many rows of a table are scanned for identifiers, pseudonyms and names
    (a table that long fails ``row_level`` anyway; this bounds the time a check takes)."""

    def __post_init__(self) -> None:
        positive = (
            "min_cell_count",
            "dominance_n",
            "max_rows",
            "max_columns",
            "max_text_lines",
            "distinct_min_values",
            "dp_min_digits",
            "min_name_length",
            "max_findings_per_check",
            "scan_max_rows",
        )
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"rule {name} must be a positive integer, got {value!r}")
        if not isinstance(self.zeros_disclosive, bool):
            raise ValueError(
                f"rule zeros_disclosive must be true or false, got {self.zeros_disclosive!r}"
            )
        for name in ("dominance_k", "distinct_share"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"rule {name} must be in (0, 1], got {value!r}")
        if not 0 <= self.p_percent < 1:
            raise ValueError(f"rule p_percent must be in [0, 1), got {self.p_percent!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rules:
        """Build rules from a mapping (e.g. a policy section); unknown keys raise."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown disclosure rules: {', '.join(unknown)}")
        return cls(**dict(data))


@dataclass(frozen=True)
class Finding:
    """One result of one check on one artefact, as shown to the reviewer.

    ``message`` never contains a full identifier, pseudonym or known name: they are
    masked (``5101**********1234``). ``where`` holds JSON-able location details: the
    artefact's origin (``cell``, ``output``, ``file``, ...) plus ``row``/``column``
    labels and 0-based positions for tables, or 1-based ``line``/``char`` for text.
    """

    check: str
    severity: str
    artefact: str
    message: str
    where: dict = field(default_factory=dict)
    reviewer_only: bool = False
    """Shown to reviewers only: it comes from matching against the raw data, and would
    tell the merchant what is in the raw data (see :meth:`Report.public`)."""

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")

    def as_dict(self) -> dict:
        """The finding as plain JSON-able data."""
        return asdict(self)


@dataclass
class Context:
    """What the checks know besides the artefacts; the service builds it per request."""

    rules: Rules = field(default_factory=Rules)
    known_names: frozenset[str] = frozenset()
    """Person names from the raw data of the datasets the tenant uses."""
    dp_numbers: frozenset[str] = frozenset()
    """:func:`number_key` of every number in the DP answers released to the tenant."""
    pseudonym_prefixes: tuple[str, ...] = ()
    """Prefixes of the pseudonymize rules of the policies (e.g. ``("P-", "E-")``)."""


@dataclass
class Artefact:
    """One thing the checks look at: a table, a text, an image or an opaque file.

    ``kind`` is ``"table"`` (``table`` set), ``"text"`` (``text``), ``"image"``
    (``image`` bytes and ``mime``; ``text`` may hold text found inside the image) or
    ``"binary"`` (``data``: a file that cannot be read).

    ``cell_stats`` gives contributor statistics for the dominance rules, computed from
    the microdata inside the sandbox (the table alone cannot tell)::

        {"column": "<value column label>",
         "cells": [{"row": <row label>, "total": 1234.5, "top": [900.0, 200.0],
                    "count": 17,          # optional: number of contributors
                    "n_negative": 0,      # optional: contributors below zero
                    "column": "<label>"}  # optional: per-cell column (pivot tables)
                   ...]}

    ``top`` lists the largest contributions, largest first, at least
    ``Rules.dominance_n`` of them when there are that many contributors (two suffice
    for the p% rule). Several value columns: ``{"columns": [<block as above>, ...]}``.

    ``table_kind`` is how a table was computed, when that is known: ``"frequency"``
    (counts) or ``"magnitude"`` (sums, means, ...); the kernel helper declares it in
    ``metadata.shuyu.kind``. ``from_text`` marks a table read out of a text artefact,
    whose identifiers the text's own scan reports.

    ``total_rows`` is the true row count when ``table`` is a truncated display;
    ``origin`` is merged into every finding's ``where``; ``review_note``, when set,
    adds a ``manual_review`` warning with that text (or the reason for ``binary``).
    """

    name: str
    kind: str
    table: pd.DataFrame | None = None
    text: str | None = None
    image: bytes | None = None
    mime: str | None = None
    cell_stats: dict | None = None
    data: bytes | None = None
    total_rows: int | None = None
    origin: dict = field(default_factory=dict)
    review_note: Both | None = None
    from_text: bool = False
    table_kind: str | None = None


_SEVERITY_RANK: Final[dict[str, int]] = {s: i for i, s in enumerate(SEVERITIES)}


@dataclass
class Report:
    """All findings of one run of :func:`run_checks`."""

    findings: list[Finding] = field(default_factory=list)
    rules: Rules | None = None

    @property
    def verdict(self) -> str:
        """``"fail"`` if any finding fails, else ``"warn"`` if any warns, else ``"pass"``."""
        severities = {f.severity for f in self.findings}
        if "fail" in severities:
            return "fail"
        if "warn" in severities:
            return "warn"
        return "pass"

    def counts(self) -> dict[str, int]:
        """Number of findings per severity (every severity present, possibly 0)."""
        counts = dict.fromkeys(SEVERITIES, 0)
        for finding in self.findings:
            counts[finding.severity] += 1
        return counts

    def as_dict(self) -> dict:
        """The report as JSON-able data, for storage next to the egress request."""
        return {
            "version": CHECKS_VERSION,
            "verdict": self.verdict,
            "counts": self.counts(),
            "rules": asdict(self.rules) if self.rules is not None else None,
            "findings": [f.as_dict() for f in self.findings],
        }

    def public(self) -> Report:
        """The report as the merchant may see it: without reviewer-only findings.

        Its verdict and counts are computed without them too, so that nothing a
        merchant sees depends on what the raw data holds.
        """
        return Report([f for f in self.findings if not f.reviewer_only], self.rules)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        """Read back what :meth:`as_dict` stored."""
        rules = Rules.from_dict(data["rules"]) if data.get("rules") else None
        return cls([Finding(**f) for f in data.get("findings", [])], rules)


def public_view(stored: Mapping[str, Any]) -> dict:
    """A stored report (:meth:`Report.as_dict`) as the merchant may see it.

    An empty mapping (a request not checked yet) stays empty.
    """
    if not stored:
        return dict(stored)
    return Report.from_dict(stored).public().as_dict()
