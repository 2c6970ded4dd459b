"""Differential-privacy query service: the only path from raw rows to a tenant (R1, R4).

A tenant asks a question in JSON (:mod:`.query` parses and checks it against the dataset's
policy and the tenant's grant), the budget ledger debits its privacy cost (:mod:`.budget`),
an engine answers it over the raw data with calibrated noise (:mod:`.engine`; the default
is OpenDP on Polars, :mod:`.opendp_engine`), and the answer is registered by content hash.
diffprivlib models (:mod:`.learn`) are trained the same way and debited from the same
ledger.

Accounting is **pure ε-differential privacy with basic sequential composition**: every
answer is ε-DP for the privacy unit the policy names (Laplace noise on counts and sums,
the exponential mechanism for quantiles, diffprivlib's ε-DP estimators for models), and
the ledger adds up the ε of every answer released for a (tenant, scenario, dataset).
"""
