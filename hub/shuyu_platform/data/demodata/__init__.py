"""Deterministic synthetic *raw* datasets shaped like Mianyang's first public-data catalogue.

The demo and the tests need "government data" to put behind the sandbox: this package
writes it. Each dataset is one Parquet file in the raw zone, ``<raw_dir>/<dataset>.parquet``:

* ``health_records`` (居民健康档案): one diagnosis per resident, with ID card, phone,
  ICD-11 code, settlement amount and optional imaging / surgery record numbers;
* ``enterprise_credit`` (企业信用): enterprises with credit code, legal representative,
  shareholders, registered capital and administrative penalties;
* ``bus_ridership`` (公交线路客流): hourly boardings and alightings per line and station;
* ``social_insurance`` (社会保险): insured persons with insurance type, contribution base,
  months paid, benefits and employer credit code.

Identity-bearing columns are realistic on purpose, because the masking job and the egress
disclosure checks must find them: ID card numbers pass GB 11643 and agree with the row's
sex, birth date and district; credit codes pass GB 32100; phones are mainland mobiles.
Everything else is invented: no row describes a real person or enterprise.

Generation is deterministic and streamed. The same ``(rows, seed)`` always gives the same
table content and the same file bytes (for a given pyarrow version); each dataset draws
from its own random stream, so generating one dataset never changes another. Rows are
built fully vectorised in chunks of :data:`CHUNK_ROWS`, each from a random stream derived
from ``(seed, dataset, chunk index)``, and each chunk is written as one zstd-compressed row
group, so memory stays bounded however many rows are asked for. Files appear atomically:
an interrupted run never leaves a partial ``.parquet`` behind.


Modules: :mod:`.schemas` (datasets and Arrow schemas), :mod:`.generator` (chunked,
atomic writing), :mod:`.columns` (seeded streams and column builders), :mod:`.people`
(residents and their identifiers), and one module per dataset (:mod:`.health`,
:mod:`.enterprise`, :mod:`.bus`, :mod:`.social`).
"""

from .generator import CHUNK_ROWS, MAX_ROWS, ProgressCallback, generate, row_count
from .people import DISTRICTS
from .schemas import DATASET_TITLES, DATASETS, schema

__all__ = [
    "CHUNK_ROWS",
    "DATASETS",
    "DATASET_TITLES",
    "DISTRICTS",
    "MAX_ROWS",
    "ProgressCallback",
    "generate",
    "row_count",
    "schema",
]
