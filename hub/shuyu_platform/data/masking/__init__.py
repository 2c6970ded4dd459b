"""The masking engine: turns raw columns into what a tenant's view may show.

Each field of a dataset policy (:mod:`shuyu_platform.data.policy`) names one masking rule;
:func:`mask_column` applies it to one Arrow column and :func:`mask_table` to the requested
fields of a raw table. Everything is vectorised with ``pyarrow.compute`` and numpy; the
only per-value Python work is the keyed hash of pseudonyms and date shifts, done once per
*distinct* value whenever a column repeats values (see :func:`_map_distinct`).

Keys
    :func:`tenant_key` derives one 32-byte key per tenant from the platform's master
    secret. Every keyed rule derives its own sub-key from it,
    ``k_<purpose> = HMAC-SHA256(key, "shuyu.masking.<purpose>")``, so a pseudonym never
    equals a date-shift hash, and the tenant key itself never touches data. Tokens and
    shifts are stable across rebuilds for one tenant and unrelated between tenants.

Output types (also given by :func:`view_schema`)
    ============================  ====================================================
    ``keep``                      the raw type (a dictionary column is decoded)
    ``pseudonymize``              string: ``prefix`` + 16 characters of base32
    ``partial``, ``prefix``       string
    ``generalize`` year / month   the raw date / timestamp type, truncated to the first
                                  day (instant) of the year or month: 1987-06-15 becomes
                                  1987-01-01. A date stays a date, so it sorts, filters
                                  and subtracts as one; the field's ``shuyu.masking``
                                  metadata says it is generalised.
    ``generalize`` age_band       string ``"30-39"`` (age on the reference date)
    ``bucket``                    string: the label, or ``"[lower, upper)"``
    ``round``, ``top_code``,      int64 when the raw column is an integer and the rule's
    ``generalize`` grid,          parameter is a whole number, float64 otherwise
    ``noise``, ``microaggregate``
    ``date_shift``                the raw date / timestamp type
    ============================  ====================================================

Pseudonyms
    ``prefix + base32(HMAC-SHA256(k_pseudonym, value)[:10])``: the first 80 of the 256
    bits, written as 16 lower-case RFC 4648 base32 characters (``a-z``, ``2-7``). The
    truncation keeps tokens short; the price is possible collisions, two values sharing
    a token. By the birthday bound the chance that *any* two of ``n`` distinct values
    collide is about ``n**2 / 2**81``: 4e-13 for a million values, 4e-9 for 100 million,
    well below any other source of error in the data. Inverting a token needs the key,
    whatever its length. The value hashed is the UTF-8 text of a string, or Arrow's text
    form of any other type (``2023-05-17``, ``42``), and not the field's name: one tenant
    gets the same token for a credit code in every dataset, so its views join on it.
    Nulls stay null; the empty string is a value like any other and gets a token.

Date shifts
    Each privacy unit (e.g. a person) gets one offset in days,
    ``int.from_bytes(HMAC-SHA256(k_date_shift, unit)[:8], "big") % (2*max_days + 1) - max_days``,
    applied to every date of that unit: the same person moves by the same number of days
    in every dataset and every rebuild of one tenant, so intervals between a person's
    events survive, while another tenant sees other shifts. A row whose unit is null gets
    a null date (it cannot be shifted consistently, and showing it unshifted would leak).

Invalid input never raises: nulls stay null (except where a rule says otherwise); dates
outside years 1-9999 and unparseable date strings become null; NaN becomes null in
numeric rules; strings are measured in Unicode code points, never bytes.


Microaggregation
    ``microaggregate`` replaces each value by the mean of its group of at least ``k`` rows;
    the groups depend on the whole column, so they are fitted first
    (:func:`fit_groups`) and handed to :func:`mask_table`.

Modules: :mod:`.keys`, :mod:`.schema` (fields and output types), :mod:`.columns`
(the rules applied to tables and columns), :mod:`.microaggregation`.
"""

from .columns import mask_column, mask_table, pseudonymize
from .keys import MIN_KEY_BYTES, TOKEN_CHARS, import_key, tenant_key
from .microaggregation import MicroGroups, fit_groups, value_counts
from .schema import (
    is_keyed,
    masking_label,
    needs_unit,
    output_type,
    view_fields,
    view_schema,
)

__all__ = [
    "MIN_KEY_BYTES",
    "TOKEN_CHARS",
    "MicroGroups",
    "fit_groups",
    "import_key",
    "is_keyed",
    "mask_column",
    "mask_table",
    "masking_label",
    "needs_unit",
    "output_type",
    "pseudonymize",
    "tenant_key",
    "value_counts",
    "view_fields",
    "view_schema",
]
