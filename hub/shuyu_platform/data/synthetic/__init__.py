"""Synthetic twins: each dataset's raw schema filled with invented rows, for every tenant (R5).

A tenant without a grant still has to write and test its code against something shaped
like the real data. :func:`build_synthetic` writes ``synthetic/<dataset>.parquet``: the raw
file's exact schema (column names, types, order, nullability) holding plausible values
and no real row. The sandbox mounts that folder read-only for every tenant.

What is learned from the raw file, and what is not
--------------------------------------------------

The raw file is streamed batch by batch (memory does not grow with its size) and only
coarse per-column marginals are kept:

* **categorical** columns (``type: category``, L1/L2 strings, booleans) keep the
  frequency of each value seen at least :data:`MIN_COUNT` times, so a rare value, which
  could point at one person, never appears. When the policy lists ``dp.public_keys``,
  only those keys are drawn. A column with more than :data:`MAX_CATEGORIES` distinct
  values is treated as text (see templates below);
* **numeric** columns keep a quantile sketch (:data:`QUANTILES` quantiles per batch, finer
  in the tails, merged) and draw values between the 1st and the 99th percentile only,
  never the extremes; floats keep the raw number of decimals. A numeric column with at most
  :data:`LOW_CARDINALITY` distinct values (an hour, a count) draws from its frequent
  values inside that range instead;
* **dates and timestamps** keep a histogram of months (coarsened to years or decades when
  too few months reach :data:`MIN_COUNT`), and timestamps a histogram of the hour of day;
  days, minutes and seconds are drawn uniformly;
* **free text and identifiers** (``identifier: true``, L3/L4 strings, or a column the
  policy does not describe) are never learned. The build only recognises their *format*
  from a small sample: resident ID card, unified social credit code, mobile number,
  Chinese personal name, enterprise name, or else a *template* of character classes
  shared by at least :data:`MIN_COUNT` values (``P`` followed by eleven digits, say), in
  which every digit and every Chinese character is drawn afresh. ID cards, credit codes
  and phones come from :mod:`shuyu_platform.data.identifiers` and pass their checksums; names
  come from a generic list of surnames and given-name characters, never from the data;
* every column keeps its null rate (0 for a non-nullable column).

Columns are drawn **independently of each other**: cross-column correlations (diagnosis
and cost, sex and name, insurance type and employer) are deliberately not preserved. A
twin is for writing code, not for analysis. The same ``(raw file, seed, rows)`` always
gives the same rows.

No real row
-----------

After drawing, the build checks and redraws:

* every value of a *checked* column (an identifier, or sensitive text: the columns whose
  values are invented) is absent from the raw values of that column, and every value of
  an identifier column is also absent from the identifier values of *every* raw dataset
  (:func:`raw_identifiers`, one Bloom filter of them all, which :func:`build_all`
  passes to each build): the same person's ID card number appears in several datasets,
  and a twin must not hold any real one. Identifier values
  are also unique within their column (personal and enterprise names excepted). A value
  still colliding after :data:`_FALLBACK_AFTER` rounds (its format leaves too few free
  values) is redrawn as a neutral value (twelve random digits for text) instead;
* no synthetic row equals a raw row. A row holding a value in a checked column already
  differs from every raw row; the remaining rows (all rows of a dataset without
  identifiers or sensitive text) are compared by a 64-bit hash of the whole row, and
  their unchecked columns redrawn.

Raw values and rows are remembered during the single pass over the raw file as 64-bit
hashes in Bloom filters (:class:`_HashFilter`): a filter has no false negatives, so a
value it does not hold is certainly not a raw value; a false positive (about 1.4 %) only
causes a needless redraw. The memory cost is one filter per checked column, plus one of
the rows when some rows can lack a checked value: :data:`FILTER_BITS_PER_VALUE` bits per
raw row, rounded up to a power of two, at most :data:`MAX_FILTER_BITS` bits. That is 2 MiB
per filter for a million raw rows (12 MiB for health_records' six checked columns) and
never more than 32 MiB per filter, whatever the size (beyond about 16 million rows, false
positives and so redraws grow). The twin's own identifier hashes (8 bytes per row and
unique column) are kept to keep identifiers distinct. If collisions remain after
:data:`MAX_ATTEMPTS` rounds the build fails rather than write a twin it cannot vouch for.

Writing
-------

The twin is written in row groups of :data:`CHUNK_ROWS` rows, zstd-compressed, into a
hidden temporary file beside the target, fsynced and renamed over it: readers see the
previous twin or the complete new one, and a failed build leaves the previous twin
untouched. The file's metadata says it is synthetic (``shuyu.synthetic: "true"``) and
names the dataset, the policy version, the seed and how each column was drawn. A raw file
that is missing or not readable Parquet raises :class:`SyntheticError` naming it, before
anything is written.

Where it lives
--------------

:mod:`.build` (the two entry points, reading and atomic writing), :mod:`.marginals`
(the learners of the single raw pass), :mod:`.sketches` (quantile sketch, template
counts), :mod:`.formats` (recognised formats and invented values), :mod:`.drawing` (one
model per column), :mod:`.no_real_row` (the redraw loop), :mod:`.hashing` (value and row
hashes, the Bloom filter), :mod:`.kinds` (column types), :mod:`.limits` (the constants
above) and :mod:`.results` (report and error).
"""

from shuyu_platform.data.synthetic.build import (
    RawIdentifiers,
    build_all,
    build_synthetic,
    raw_identifiers,
)
from shuyu_platform.data.synthetic.limits import CHUNK_ROWS, DEFAULT_MAX_ROWS, MIN_COUNT
from shuyu_platform.data.synthetic.results import SyntheticError, SyntheticReport

__all__ = [
    "CHUNK_ROWS",
    "DEFAULT_MAX_ROWS",
    "MIN_COUNT",
    "RawIdentifiers",
    "SyntheticError",
    "SyntheticReport",
    "build_all",
    "build_synthetic",
    "raw_identifiers",
]
