"""The build's tunable limits: counts, sizes and shares every stage of a twin uses."""

from __future__ import annotations

from datetime import date
from typing import Final

#: Rows of a twin when ``rows`` is not given: the raw row count, at most this.
DEFAULT_MAX_ROWS: Final[int] = 100_000

#: A category, value, month or template seen fewer times than this is never drawn.
MIN_COUNT: Final[int] = 10

#: Quantiles kept per raw batch of a numeric column.
QUANTILES: Final[int] = 100

#: Numeric values are drawn between these quantiles (the extremes are never reproduced).
CLIP: Final[tuple[float, float]] = (0.01, 0.99)

#: A numeric column with at most this many distinct values is drawn like a category.
LOW_CARDINALITY: Final[int] = 64

#: A numeric column needs this many values for a quantile sketch; else neutral values.
MIN_NUMERIC_VALUES: Final[int] = 100

#: Distinct values (or templates) tracked per column before it counts as free text.
MAX_CATEGORIES: Final[int] = 10_000

#: Rows read per raw batch.
READ_BATCH_ROWS: Final[int] = 131_072

#: Rows generated, checked and written per chunk (one Parquet row group each).
CHUNK_ROWS: Final[int] = 65_536

#: Rounds of redrawing collisions before the build gives up.
MAX_ATTEMPTS: Final[int] = 100

#: Rounds after which colliding values are redrawn as neutral values instead.
_FALLBACK_AFTER: Final[int] = 20

#: Bloom filter size per raw value, and the largest filter (32 MiB).
FILTER_BITS_PER_VALUE: Final[int] = 16
MAX_FILTER_BITS: Final[int] = 1 << 28

#: Share of a sample that must pass a format check for the column to get that format.
_KIND_SHARE: Final[float] = 0.9
#: Sampled values a format is recognised from.
_KIND_SAMPLE: Final[int] = 256
#: Share of values the learned buckets or templates must cover to be used.
_COVERAGE: Final[float] = 0.8
_TEMPLATE_COVERAGE: Final[float] = 0.5

#: Dates used when a date column gives too little to learn from.
_NEUTRAL_DAYS: Final[tuple[int, int]] = (
    (date(2000, 1, 1) - date(1970, 1, 1)).days,
    (date(2025, 1, 1) - date(1970, 1, 1)).days,
)
