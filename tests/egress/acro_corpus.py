"""The ACRO side of the oracle test: a seeded corpus of tables and ACRO's verdict per cell.

Runs in its own virtual environment with ACRO installed (``.venv-acro``, made by the
Makefile; ACRO pins its own dependencies, which clash with the platform's), never in the
platform's. Usage::

    .venv-acro/bin/python tests/egress/acro_corpus.py --seed 21 --tables 60 > corpus.json

For each table it writes the microdata it was computed from, how it was computed, and
ACRO's outcome for every cell (``"ok"`` or the names of the checks the cell fails), with
ACRO's default risk appetite (``default.yaml``: threshold 10, n-k 2/0.90, p 0.10, zeros
disclosive). ``tests/egress/test_acro_oracle.py`` shows the same tables the ways a
notebook would and compares the platform's findings with these outcomes.

The corpus is built to sit at and around the thresholds: group sizes from 0 to 30 (a
category with no rows gives zero cells), contributions where one or two contributors
hold 80-99 % of a cell (n-k and p% near their limits), cells whose values are all
missing, and negative contributions.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import json
import logging
import sys
from typing import Any

import numpy as np
import pandas as pd

ROWS = ("r1", "r2", "r3", "r4")
COLUMNS = ("c1", "c2", "c3")


def _microdata(rng: np.random.Generator, *, negatives: bool, missing: bool) -> pd.DataFrame:
    """Rows of one table: a row and a column category, a contributor and an amount."""
    sizes = rng.choice([0, 1, 2, 3, 5, 8, 9, 10, 11, 14, 20, 30], size=(len(ROWS), len(COLUMNS)))
    records: list[dict[str, Any]] = []
    person = 0
    for i, r in enumerate(ROWS):
        for j, c in enumerate(COLUMNS):
            n = int(sizes[i, j])
            style = rng.choice(["even", "one_big", "two_big", "near"])
            amounts = rng.lognormal(6, 0.6, n)
            if n and style == "one_big":
                amounts[0] = amounts.sum() * rng.uniform(4, 40)
            elif n >= 2 and style == "two_big":
                amounts[:2] = amounts.sum() * rng.uniform(3, 20)
            elif n >= 3 and style == "near":
                # Top two near 90 % of the total, rest near 10 % of the largest.
                rest = amounts[2:].sum()
                amounts[0] = rest / rng.uniform(0.08, 0.12)
                amounts[1] = amounts[0] * rng.uniform(0.1, 0.9)
            amounts = np.round(amounts, 2)
            if negatives and n and rng.random() < 0.3:
                amounts[-1] = -abs(amounts[-1])
            if missing and n and rng.random() < 0.3:
                amounts[:] = np.nan
            for a in amounts:
                records.append({"row": r, "col": c, "person": f"p{person}", "amount": float(a)})
                person += 1
    return pd.DataFrame.from_records(records, columns=["row", "col", "person", "amount"])


def _categorical(frame: pd.DataFrame) -> pd.DataFrame:
    """Categories fixed to every level, so empty groups show as zero cells."""
    frame = frame.copy()
    frame["row"] = pd.Categorical(frame["row"], categories=ROWS)
    frame["col"] = pd.Categorical(frame["col"], categories=COLUMNS)
    return frame


def _outcome_grid(outcome: pd.DataFrame) -> dict[str, Any]:
    def label(value: Any) -> list[str]:
        parts = value if isinstance(value, tuple) else (value,)
        return [str(p) for p in parts if str(p) != ""]

    return {
        "rows": [label(r) for r in outcome.index],
        "columns": [label(c) for c in outcome.columns],
        "cells": [[str(v).strip() for v in row] for row in outcome.to_numpy().tolist()],
    }


def build(seed: int, tables: int) -> dict[str, Any]:
    """The corpus: ``tables`` tables, each with its microdata and ACRO's outcomes."""
    logging.disable(logging.CRITICAL)
    from acro import ACRO

    rng = np.random.default_rng(seed)
    kinds = ["frequency", "frequency_margins", "sum", "sum_margins", "mean"]
    corpus: list[dict[str, Any]] = []
    for t in range(tables):
        kind = kinds[t % len(kinds)]
        negatives = kind != "mean" and rng.random() < 0.25
        missing = rng.random() < 0.3
        frame = _microdata(rng, negatives=negatives, missing=missing)
        data = _categorical(frame)
        with contextlib.redirect_stdout(io.StringIO()):
            acro = ACRO(suppress=False)
            margins = kind.endswith("margins")
            if kind.startswith("frequency"):
                acro.crosstab(data["row"], data["col"], margins=margins)
            elif kind.startswith("sum"):
                acro.crosstab(
                    data["row"], data["col"], values=data["amount"], aggfunc="sum", margins=margins
                )
            else:
                acro.pivot_table(data, index="row", columns="col", values="amount", aggfunc="mean")
            record = next(iter(acro.results.results.values()))
        corpus.append(
            {
                "id": t,
                "kind": kind,
                "margins": margins,
                "acro_status": record.status,
                "microdata": frame.to_dict(orient="list"),
                "outcome": _outcome_grid(record.outcome),
                "table": record.output[0].to_dict(orient="split"),
            }
        )
    return {
        "seed": seed,
        "acro_version": importlib.metadata.version("acro"),
        "tables": corpus,
    }


def main() -> None:
    """Write the corpus as JSON to standard output."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--tables", type=int, default=60)
    args = parser.parse_args()
    json.dump(build(args.seed, args.tables), sys.stdout, default=str)


if __name__ == "__main__":
    main()
