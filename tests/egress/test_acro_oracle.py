"""ACRO as the oracle of the disclosure checks (issue 21): no cell passes that ACRO stops.

``acro_corpus.py`` runs in ACRO's own virtual environment (``.venv-acro``, made by the
Makefile) and writes a seeded corpus of tables with ACRO's outcome for every cell. Here
each table is shown the ways a notebook shows it (pandas' HTML and text, ``print``, a
Series, a Styler, a Markdown table, the kernel helper ``shuyu.egress.table``), turned
into nbformat outputs by IPython's own display formatter, and checked by the platform.

A cell is *stopped* by the platform when a ``fail`` finding points at it, or when a
warning covers its whole table (contributor statistics missing, kind uncertain): the
request then cannot pass without a reviewer. A *dangerous disagreement* is a cell ACRO
marks disclosive, shown in the output, that the platform does not stop; there must be
none. Cells the platform fails and ACRO passes are over-strict: they are allowed and
printed (run with ``-s`` to see the summary).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from IPython.core.formatters import DisplayFormatter

from shuyu import egress as kernel_egress
from shuyu_platform.egress.disclosure import Context, artefacts_from_outputs, run_checks

ROOT = Path(__file__).resolve().parents[2]
ACRO_PYTHON = ROOT / ".venv-acro" / "bin" / "python"
SEED = 21
TABLES = 40
#: Seconds the ACRO side may take (it imports statsmodels; the machine may be busy).
TIMEOUT = 600
#: The corpus is built in the first test's setup; comparing takes a minute or two more.
pytestmark = [pytest.mark.acro, pytest.mark.timeout(TIMEOUT + 300)]

ROWS = ["r1", "r2", "r3", "r4"]
COLUMNS = ["c1", "c2", "c3"]
LOCATED = frozenset({"min_cell_count", "dominance", "p_percent"})


@pytest.fixture(scope="module")
def corpus() -> dict[str, Any]:
    """The seeded corpus with ACRO's per-cell outcomes, from ACRO's own environment."""
    assert ACRO_PYTHON.exists(), (
        f"{ACRO_PYTHON} is missing: `make install-test` creates ACRO's virtual environment"
    )
    run = subprocess.run(
        [
            str(ACRO_PYTHON),
            str(Path(__file__).with_name("acro_corpus.py")),
            *("--seed", str(SEED), "--tables", str(TABLES)),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    data = json.loads(run.stdout)
    assert len(data["tables"]) == TABLES
    return data


def _microdata(table: dict[str, Any]) -> pd.DataFrame:
    frame = pd.DataFrame(table["microdata"])
    frame["row"] = pd.Categorical(frame["row"], categories=ROWS)
    frame["col"] = pd.Categorical(frame["col"], categories=COLUMNS)
    return frame


_FORMATTER = DisplayFormatter()


def _shown(obj: Any) -> dict[str, Any]:
    """``obj`` as the execute_result a notebook stores, from IPython's display formatter."""
    data, metadata = _FORMATTER.format(obj)
    return {"output_type": "execute_result", "execution_count": 1, "data": data,
            "metadata": metadata}  # fmt: skip


def _printed(obj: Any) -> dict[str, Any]:
    return {"output_type": "stream", "name": "stdout", "text": f"{obj}\n"}


def _markdown(frame: pd.DataFrame) -> dict[str, Any]:
    """A hand-written Markdown report of ``frame`` (the pipe-table layout)."""
    head = "| " + " | ".join(["", *(str(c) for c in frame.columns)]) + " |"
    rule = "|" + "---|" * (len(frame.columns) + 1)
    body = [
        "| " + " | ".join([str(i), *(f"{v:g}" for v in row)]) + " |"
        for i, row in zip(frame.index, frame.to_numpy().tolist(), strict=True)
    ]
    text = "\n".join(["## 按类别统计", "", head, rule, *body])
    return {"output_type": "display_data", "data": {"text/markdown": text}, "metadata": {}}


@dataclass
class Rendition:
    """One way of showing a corpus table: its outputs and which cells it shows."""

    name: str
    outputs: list[dict[str, Any]]
    cells: set[tuple[str, str]]


def _wide_cells(frame: pd.DataFrame) -> set[tuple[str, str]]:
    return {(str(r), str(c)) for r in frame.index for c in frame.columns}


def _long_cells(series: pd.Series | pd.DataFrame) -> set[tuple[str, str]]:
    return {(str(r), str(c)) for r, c in series.index}


def renditions(table: dict[str, Any]) -> Iterator[Rendition]:
    """The ways a merchant's notebook would show this table."""
    data = _microdata(table)
    margins = bool(table["margins"])
    kind = table["kind"]
    if kind.startswith("frequency"):
        crosstab = pd.crosstab(data["row"], data["col"], margins=margins, dropna=False)
        yield Rendition("crosstab", [_shown(crosstab)], _wide_cells(crosstab))
        yield Rendition("print(crosstab)", [_printed(crosstab)], _wide_cells(crosstab))
        yield Rendition("crosstab.style", [_shown(crosstab.style)], _wide_cells(crosstab))
        yield Rendition("markdown", [_markdown(crosstab)], _wide_cells(crosstab))
        helper = kernel_egress.table(data, by="row", columns="col", margins=margins)
        yield Rendition("shuyu.egress.table", [_shown(helper)], _wide_cells(helper.frame))
        size = data.groupby(["row", "col"], observed=False).size()
        yield Rendition("groupby().size()", [_shown(size)], _long_cells(size))
        counts = data.value_counts(["row", "col"], sort=False)
        yield Rendition("value_counts()", [_shown(counts)], _long_cells(counts))
        return
    agg = "mean" if kind == "mean" else "sum"
    pivot = data.pivot_table(
        index="row", columns="col", values="amount", aggfunc=agg, margins=margins,
        observed=False, dropna=False,
    )  # fmt: skip
    yield Rendition("pivot_table", [_shown(pivot)], _wide_cells(pivot))
    helper = kernel_egress.table(
        data, by="row", value="amount", agg=agg, columns="col", contributor="person",
        margins=margins,
    )  # fmt: skip
    yield Rendition("shuyu.egress.table", [_shown(helper)], _wide_cells(helper.frame))
    series = data.groupby(["row", "col"], observed=False)["amount"].agg(agg)
    yield Rendition("groupby()[col].agg()", [_shown(series)], _long_cells(series))
    frame = data.groupby(["row", "col"], observed=False)[["amount"]].agg(agg)
    yield Rendition("groupby()[[col]].agg()", [_shown(frame)], _long_cells(frame))


def _parts(value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        return [p for v in value for p in _parts(v)]
    return str(value).split()


def _cell_of(where: dict[str, Any]) -> tuple[str, str] | None:
    """The (row, column) corpus cell a finding points at, if any."""
    if "row" not in where:
        return None
    row = _parts(where["row"])
    if len(row) >= 2:
        return row[0], row[1]
    column = _parts(where.get("column", ""))
    if len(row) == 1 and column:
        return row[0], column[-1]
    return None


@dataclass
class Outcome:
    """What the platform did with one rendition's cells."""

    failed: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    warned: set[tuple[str, str]] = field(default_factory=set)
    """Cells with a warning of their own (negative contributions: ACRO's "review")."""
    covered: bool = False
    """A warning covers the whole table (statistics missing, kind uncertain)."""
    notes: set[str] = field(default_factory=set)


def platform_outcome(rendition: Rendition) -> Outcome:
    """Run the platform's checks on the rendition and sort the findings by cell."""
    artefacts = artefacts_from_outputs(0, rendition.outputs)
    assert any(a.kind == "table" for a in artefacts), f"{rendition.name}: no table read"
    report = run_checks(artefacts, Context())
    outcome = Outcome()
    for finding in report.findings:
        if finding.severity not in ("fail", "warn"):
            continue
        cell = _cell_of(finding.where)
        if finding.severity == "fail" and finding.check in LOCATED and cell is not None:
            outcome.failed.setdefault(cell, set()).add(finding.check)
        elif finding.severity == "warn" and finding.check in ("dominance", "table_kind"):
            if cell is not None:
                outcome.warned.add(cell)
            else:
                outcome.covered = True
            outcome.notes.add(finding.check)
    return outcome


def compare(corpus: dict[str, Any]) -> dict[str, Any]:
    """Cell-by-cell comparison of ACRO's outcomes and the platform's findings."""
    dangerous: list[str] = []
    helper_missed: list[str] = []
    over_strict: Counter[str] = Counter()
    stopped_by: Counter[str] = Counter()
    cells = renditions_run = 0
    for table in corpus["tables"]:
        grid = table["outcome"]
        acro = {
            (r[0], c[0]): grid["cells"][i][j]
            for i, r in enumerate(grid["rows"])
            for j, c in enumerate(grid["columns"])
        }
        for rendition in renditions(table):
            renditions_run += 1
            outcome = platform_outcome(rendition)
            for cell, verdict in acro.items():
                if cell not in rendition.cells:
                    continue
                cells += 1
                failed = outcome.failed.get(cell)
                covered = outcome.covered or cell in outcome.warned
                own = failed or cell in outcome.warned
                if verdict != "ok" and rendition.name == "shuyu.egress.table" and not own:
                    helper_missed.append(f"table {table['id']} cell {cell}: {verdict}")
                if verdict != "ok":
                    if failed:
                        stopped_by["fail"] += 1
                    elif covered:
                        stopped_by["reviewer warning"] += 1
                    else:
                        dangerous.append(
                            f"table {table['id']} ({table['kind']}) {rendition.name} "
                            f"cell {cell}: ACRO {verdict!r}, platform passes it"
                        )
                elif failed:
                    over_strict[f"{rendition.name}: {', '.join(sorted(failed))}"] += 1
    return {
        "tables": len(corpus["tables"]),
        "renditions": renditions_run,
        "cells": cells,
        "dangerous": dangerous,
        "helper_missed": helper_missed,
        "over_strict": over_strict,
        "stopped_by": stopped_by,
    }


@pytest.fixture(scope="module")
def comparison(corpus: dict[str, Any]) -> dict[str, Any]:
    """The comparison of the whole corpus, made once for the tests below."""
    return compare(corpus)


def test_no_cell_acro_stops_passes_the_platform(
    corpus: dict[str, Any], comparison: dict[str, Any]
) -> None:
    result = comparison
    print(
        f"\nACRO oracle (acro {corpus['acro_version']}, seed {corpus['seed']}): "
        f"{result['tables']} tables, {result['renditions']} renditions, "
        f"{result['cells']} shown cells compared; ACRO-disclosive cells stopped by "
        f"{dict(result['stopped_by'])}; dangerous disagreements: {len(result['dangerous'])}."
    )
    print("Over-strict cells (platform fails, ACRO passes), by rendition and check:")
    for what, n in sorted(result["over_strict"].items()):
        print(f"  {n:4d}  {what}")
    assert result["cells"] > 1000
    assert not result["dangerous"], "\n".join(result["dangerous"][:40])


def test_the_helper_table_is_stopped_cell_by_cell(comparison: dict[str, Any]) -> None:
    """With the helper, every ACRO-disclosive cell has its own finding.

    A fail, or for cells with negative contributions a warning of their own (ACRO's
    "review": dominance is not defined there); never only a table-wide warning.
    """
    assert not comparison["helper_missed"], "\n".join(comparison["helper_missed"][:20])


def test_the_comparison_can_fail() -> None:
    """A platform that passed everything would be caught: the comparison is no tautology."""
    table = {
        "id": 0,
        "kind": "frequency",
        "margins": False,
        "microdata": {
            "row": ["r1"] * 3 + ["r2"] * 12,
            "col": ["c1"] * 15,
            "person": [f"p{i}" for i in range(15)],
            "amount": [1.0] * 15,
        },
        "outcome": {
            "rows": [[r] for r in ROWS],
            "columns": [[c] for c in COLUMNS],
            "cells": [["MinimumThresholdCheck;"] * 3 for _ in ROWS],
        },
    }
    table["outcome"]["cells"][1][0] = "ok"  # r2/c1 counts 12
    result = compare({"tables": [table]})
    assert not result["dangerous"]
    blind = sys.modules[__name__]
    original = blind.platform_outcome
    try:
        blind.platform_outcome = lambda rendition: Outcome()  # type: ignore[assignment]
        assert compare({"tables": [table]})["dangerous"]
    finally:
        blind.platform_outcome = original
