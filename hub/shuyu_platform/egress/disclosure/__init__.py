"""Automatic statistical-disclosure checks run on every egress request (R10-R12).

A merchant who wants something out of the sandbox files an egress request: chosen cell
outputs of a notebook, or a file from the work folder. Before a reviewer looks, the
review service turns the frozen request into :class:`Artefact` objects
(:func:`artefacts_from_outputs`, :func:`artefacts_from_file`), runs :func:`run_checks`
on them and stores the resulting :class:`Report` (:meth:`Report.as_dict`) next to the
request. This module is pure: no database, no HTTP, no clock; the same input always gives
the same findings.

Checks (the ``check`` field of a :class:`Finding`)
    ``min_cell_count``
        Frequency tables: a cell ``x < Rules.min_cell_count`` fails, zeros included
        (``Rules.zeros_disclosive``, on by default as ACRO's ``zeros_are_disclosive``: a
        zero tells that nobody in a group has an attribute; a reviewer may accept a
        structural zero). Which columns are counts: count-named numeric columns (``n``,
        ``count``, ``freq``, ``size``, 人数, 数量, 频数, ...); every numeric column when
        the kernel helper declares the table a frequency table; and any other column of
        non-negative whole numbers whose name says nothing (crosstab categories such as
        ``F``/``M`` or ``age_0_17``) - such a column may as well hold sums of whole
        numbers, so it is *also* treated as a magnitude (see ``table_kind``). Columns named
        like keys (``year``, ``month``, ``code``, ``age``, 年份, 编码, ...; a name holding a
        number is no key) and shares (``pct``, 比例, ``%``) are not counts. Missing cells
        (NaN, ``-``, ``*``) are taken for suppressed. With contributor statistics
        (``cell_stats``) a cell's contributor ``count`` is checked the same way, for
        magnitude tables too, and a cell none of whose contributors has a value
        (``count`` 0: all missing) fails. Source: ACRO's ``MinimumThresholdCheck``
        (``safe_threshold: 10``) and ``PresenceOfZeroCheck``.
    ``dominance`` (n-k rule) and ``p_percent`` (p% rule)
        Need contributor statistics per cell (see :class:`Artefact`, ``cell_stats``;
        a notebook output carries them in ``metadata.shuyu.cell_stats``, which the
        kernel client's ``shuyu.egress.table`` fills from the microdata).
        n-k fails when the ``n`` largest contributors make up ``k`` or more of the cell
        total: ``sum(top[:n]) / total >= k``. p% fails when the contributors other than
        the two largest add up to less than ``p`` of the largest:
        ``(total - top1 - top2) / top1 < p``. A cell whose contributions are all zero
        fails (its ratios are 0/0, which ACRO's masks count as disclosive). Both rules
        are undefined with negative contributions: each such cell gets its own ``warn``
        (ACRO's "review", which also marks the cells with negative values). These are
        ACRO's ``NKCheck`` and ``PPercentCheck`` (acro 1.0.2, ``acro/sdcchecks.py``:
        ``proportion >= safe_nk_k``, ``p_val < safe_pratio_p``) with ACRO's defaults
        ``safe_nk_n: 2``, ``safe_pratio_p: 0.10``; ACRO's ``safe_nk_k`` is 0.90 while
        :class:`Rules` defaults to the stricter 0.85. A table with magnitude columns
        (sum/mean/extreme/amount-named, fractional numbers, or declared ``magnitude``)
        and no statistics for them gets one ``warn`` that dominance and contributor
        counts could not be checked: the request cannot pass without a reviewer. Rows
        whose group key is missing form a group of their own in the kernel helper's
        tables (``dropna=False``) and are checked like any other, not dropped unseen.
    ``table_kind``
        Columns of whole numbers whose kind the table cannot tell (counts, or sums of
        whole numbers such as ``groupby()[["visits"]].sum()``) get the count rule and
        one ``warn`` for the reviewer, never no rule. The kernel helper
        (``shuyu.egress.table``) declares the kind (``metadata.shuyu.kind``); that claim
        comes from inside the sandbox, so it only picks which rules apply (counts for a
        frequency table; the statistics it must bring for a magnitude table).
    ``row_level``
        Tables with more than ``Rules.max_rows`` rows (or ``max_columns`` columns) fail,
        counting rows a notebook display truncated (``1000 rows × 5 columns``) and the
        ``[1000 rows x 5 columns]`` footer of a DataFrame printed as text. In tables that
        do not look aggregated (no count or sum/mean-named column, not a frequency
        table), a string column with at least ``distinct_min_values`` values of which
        ``distinct_share`` or more are distinct warns (looks like an identifier); row
        labels are left out, as group keys are distinct by construction. Text longer
        than ``max_text_lines`` lines warns.
    ``pseudonyms``
        Masked-view pseudonyms (:mod:`shuyu_platform.data.masking`: a policy prefix such as
        ``P-`` plus 16 lower-case base32 characters) in a table column or a text fail:
        they let a recipient link rows of one person. Tokens without a known prefix are
        found too when they mix letters and digits.
    ``identifiers``
        Resident ID numbers (18 characters, checked by
        :func:`~shuyu_platform.data.identifiers.is_valid_id_card`, a lower-case ``x`` is
        accepted), unified social credit codes
        (:func:`~shuyu_platform.data.identifiers.is_valid_uscc`),
        bank card numbers and mobile numbers (:func:`~shuyu_platform.data.identifiers.is_mobile`
        on 11-digit runs, also written ``138 1234 5678``, ``138-1234-5678`` or with
        ``+86``) in text, table cells, row labels and column headers fail (a table cell
        holding nothing but an 11-digit number counts as a mobile number only if at
        least half of its column's all-digit cells are mobile numbers, so that a column
        of large amounts is not taken for phone numbers). Bank cards:
        16-19 digits (contiguous, or in groups of four separated by one space or
        hyphen), passing :func:`~shuyu_platform.data.identifiers.luhn_valid` and starting
        with a plausible issuer prefix (:data:`BANK_CARD_PREFIXES`): without the
        prefix test one long number in ten passes Luhn by chance. A span that is a
        valid ID number is not also reported as a credit code or card. Values in
        messages are always masked (``5101**********1234``).
    ``names``
        What looks like a person's name by a generic model (:mod:`.person_names`: a
        common Chinese surname and a given name standing on their own, or a pinyin
        surname and a capitalised word) in text or cells warns. The model answers the
        same for a real and an invented name, so the merchant may see these findings.
    ``known_names``
        ``Context.known_names`` (person names from the raw data) in text or cells warn,
        **for reviewers only** (``Finding.reviewer_only``): shown to the merchant, they
        would tell which guessed names are people in the raw data. :meth:`Report.public`
        (and :func:`public_view` of a stored report) is what a merchant sees: without
        them, its verdict and counts computed without them. Names are short, so matches
        may be ordinary words or other people. Messages mask names found by the generic
        model, never by the raw-data match (which would mark the real ones).
    ``image``
        Every image warns (a person must look at it). A file whose bytes do not match
        its image type, or a PNG with bytes after its end, fails (``file_type``); text
        inside images (SVG text, PNG text chunks) goes through the text checks.
    ``dp_provenance``
        A number whose :func:`number_key` is in ``Context.dp_numbers`` comes from a
        released DP answer. When every numeric cell of a table does, the table's
        ``min_cell_count``/``dominance``/``p_percent`` findings are replaced by one
        ``safe`` finding; otherwise an ``info`` gives the share matched, and columns
        that match entirely skip those checks. Numbers with fewer than
        ``Rules.dp_min_digits`` significant digits (7, 42, 0.5, 100) never count as
        matched: they coincide with some DP answer too easily, and a merchant could
        collect small DP answers to launder small raw counts.
    ``binary``, ``manual_review``, ``file_type``
        Files that are neither text nor a known format fail (they can neither be
        checked nor shown); output types this module does not understand warn.

Severities are ``fail``, ``warn``, ``info`` and ``safe``; :attr:`Report.verdict` is
``fail`` if any finding fails, else ``warn`` if any warns, else ``pass``.

Tables are read from every form a notebook shows them in: a DataFrame's HTML (also
styled, ``df.style``; pivot tables and crosstabs with margins, multi-level headers) and
its text, a Series' text (``value_counts()``, ``groupby().size()``: an unnamed integer
Series is a frequency table), ``print`` output, Markdown pipe tables in outputs and
``.md``/``.txt`` files (:mod:`.text_tables`), JSON, CSV and Arrow files. A display
bundle's text is read as a table only when its HTML holds none (pandas writes the same
table in both). Tables inside images are not read: every image warns.

The checks were compared cell by cell with ACRO 1.0.2 as the oracle (the test
``tests/egress/test_acro_oracle.py``): no cell ACRO marks disclosive passes here.

Known limits: columns are told apart by their names and values, so a count column named
like a key (``age``) or a share escapes the count rule, and transposed tables are not
recognised; shares (``value_counts(normalize=True)``) are not traced back to their
counts; a frequency table whose empty cells show as NaN (``size().unstack()``) has those
cells taken for suppressed; in pandas' text layout, a column is found by its right edge,
so hand-aligned text may be read as a table (only adding findings) and text columns
are read as row labels; numbers written with fewer than six significant digits do not
match DP answers registered with more; names match case-sensitively; images are not
read. The reviewer remains the control.

The package is split by concept: :mod:`.rules` (thresholds and result types),
:mod:`.scanner` (identifiers, pseudonyms, names), :mod:`.profile` (what each column of a
table is), :mod:`.provenance` (DP answers), :mod:`.checks` (the checks), and the readers
:mod:`.outputs`, :mod:`.html_tables`, :mod:`.text_tables`, :mod:`.files` and
:mod:`.png`.
"""

from __future__ import annotations

from .checks import run_checks
from .files import artefacts_from_file
from .outputs import artefacts_from_outputs
from .provenance import number_key
from .rules import (
    CHECKS,
    CHECKS_VERSION,
    SEVERITIES,
    Artefact,
    Context,
    Finding,
    Report,
    Rules,
    public_view,
)
from .scanner import BANK_CARD_PREFIXES

__all__ = [
    "BANK_CARD_PREFIXES",
    "CHECKS",
    "CHECKS_VERSION",
    "SEVERITIES",
    "Artefact",
    "Context",
    "Finding",
    "Report",
    "Rules",
    "artefacts_from_file",
    "artefacts_from_outputs",
    "number_key",
    "public_view",
    "run_checks",
]
