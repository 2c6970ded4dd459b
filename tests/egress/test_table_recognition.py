"""How the disclosure checks recognise tables and their kind (issue 21).

Tables reach the checks as notebook outputs made by IPython's own display formatter
from real pandas objects: a Series (``value_counts``, ``groupby().size()``) has only a
text form, a DataFrame both HTML and text, a Styler HTML, a report Markdown.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from IPython.core.formatters import DisplayFormatter

from shuyu import egress as kernel_egress
from shuyu_platform.egress.disclosure import (
    Artefact,
    Context,
    Report,
    artefacts_from_file,
    artefacts_from_outputs,
    run_checks,
)
from shuyu_platform.egress.disclosure.text_tables import tables_in_text

FORMATTER = DisplayFormatter()


def _shown(obj: object) -> dict:
    data, metadata = FORMATTER.format(obj)
    return {"output_type": "execute_result", "data": data, "metadata": metadata}


def _check(*outputs: dict) -> Report:
    return run_checks(artefacts_from_outputs(0, list(outputs)), Context())


def _cells(report: Report, check: str = "min_cell_count") -> list[tuple[str, str]]:
    return sorted(
        (str(f.where.get("row")), str(f.where.get("column")))
        for f in report.findings
        if f.check == check and f.severity == "fail"
    )


@pytest.fixture
def claims() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    districts = ["涪城区"] * 25 + ["游仙区"] * 7 + ["安州区"] * 1
    return pd.DataFrame({
        "district": districts,
        "age_band": rng.choice(["age_0_17", "age_18_64"], len(districts)),
        "person": [f"P-{i}" for i in range(len(districts))],
        "visits": rng.integers(0, 5, len(districts)),
        "amount": rng.lognormal(6, 1, len(districts)).round(2),
    })  # fmt: skip


def test_a_value_counts_series_is_count_checked(claims: pd.DataFrame) -> None:
    report = _check(_shown(claims["district"].value_counts()))
    assert _cells(report) == [("安州区", "count"), ("游仙区", "count")]
    assert report.verdict == "fail"


def test_a_groupby_size_series_is_a_frequency_table(claims: pd.DataFrame) -> None:
    report = _check(_shown(claims.groupby("district").size()))
    assert _cells(report) == [("安州区", "(values)"), ("游仙区", "(values)")]
    assert not [f for f in report.findings if f.check == "table_kind"]


def test_a_printed_series_and_a_printed_frame_are_read_as_tables(claims: pd.DataFrame) -> None:
    counts = claims.groupby(["district", "age_band"]).size()
    printed = {"output_type": "stream", "name": "stdout", "text": f"{counts}\n"}
    rows = {row for row, _ in _cells(_check(printed))}
    assert "安州区 age_0_17" in rows or "安州区 age_18_64" in rows
    frame = pd.crosstab(claims["district"], claims["age_band"])
    printed = {"output_type": "stream", "name": "stdout", "text": frame.to_string()}
    assert ("安州区", "age_0_17") in _cells(_check(printed)) or (
        "安州区",
        "age_18_64",
    ) in _cells(_check(printed))


def test_crosstab_categories_named_like_keys_are_still_counted(claims: pd.DataFrame) -> None:
    """``age_0_17`` names a category, not a key such as ``age``: the count rule applies."""
    frame = pd.crosstab(claims["district"], claims["age_band"], margins=True)
    cells = _cells(_check(_shown(frame)))
    assert {row for row, _ in cells} >= {"安州区", "游仙区"}
    assert {column for _, column in cells} <= {"age_0_17", "age_18_64", "All"}


def test_a_styled_frame_and_a_markdown_table_are_checked(claims: pd.DataFrame) -> None:
    frame = pd.crosstab(claims["district"], claims["age_band"])
    assert _cells(_check(_shown(frame.style))) == _cells(_check(_shown(frame)))
    markdown = "| district | n |\n|---|---|\n| 涪城区 | 25 |\n| 游仙区 | 7 |\n"
    output = {"output_type": "display_data", "data": {"text/markdown": markdown}, "metadata": {}}
    assert _cells(_check(output)) == [("游仙区", "n")]
    assert _cells(run_checks(artefacts_from_file("report.md", markdown.encode()), Context()))


def test_sums_of_whole_numbers_get_both_rules_and_a_reviewer_note(claims: pd.DataFrame) -> None:
    """``groupby()[[col]].sum()`` of whole numbers could be counts or sums: kind uncertain."""
    report = _check(_shown(claims.groupby("district")[["visits"]].sum()))
    notes = [f for f in report.findings if f.check == "table_kind"]
    assert len(notes) == 1 and notes[0].severity == "warn"
    assert "shuyu.egress.table" in notes[0].message


def test_an_amount_sum_without_statistics_warns(claims: pd.DataFrame) -> None:
    report = _check(_shown(claims.groupby("district")["amount"].sum()))
    warnings = [f for f in report.findings if f.check == "dominance" and f.severity == "warn"]
    assert warnings and "no contributor statistics" in warnings[0].message
    assert report.verdict in ("warn", "fail")


def test_the_helper_declares_frequency_tables(claims: pd.DataFrame) -> None:
    shown = _shown(kernel_egress.table(claims, by="district", columns="age_band", margins=True))
    assert shown["metadata"]["shuyu"]["kind"] == "frequency"
    report = _check(shown)
    assert not [f for f in report.findings if f.check in ("table_kind", "dominance")]
    assert {row for row, _ in _cells(report)} >= {"安州区", "游仙区"}


def test_the_helper_checks_every_cell_of_a_magnitude_crosstab(claims: pd.DataFrame) -> None:
    claims.loc[claims["district"] == "游仙区", "amount"] = np.nan  # all missing
    helper = kernel_egress.table(
        claims, by="district", value="amount", columns="age_band", contributor="person",
        margins=True,
    )  # fmt: skip
    report = _check(_shown(helper))
    counted = {(r, c) for r, c in _cells(report)}
    for column in ("age_0_17", "age_18_64"):
        assert ("游仙区", column) in counted  # no contributor has a value
    missing = [f for f in report.findings if f.check == "min_cell_count" and "missing" in f.message]
    assert missing
    assert not [f for f in report.findings if "no contributor statistics" in f.message]


def test_all_missing_and_zero_contributor_cells_fail() -> None:
    stats = {
        "column": "amount_sum",
        "cells": [
            {"row": "a", "total": float("nan"), "top": [], "count": 0},
            {"row": "b", "total": 0.0, "top": [], "count": 0},
            {"row": "c", "total": 5000.0, "top": [400.0, 300.0], "count": 20},
        ],
    }
    table = pd.DataFrame({"amount_sum": [np.nan, 0.0, 5000.0]}, index=["a", "b", "c"])
    report = run_checks([Artefact("t", "table", table=table, cell_stats=stats)], Context())
    assert [f.where["row"] for f in report.findings if f.check == "min_cell_count"] == ["a", "b"]


def test_text_tables_keep_multi_level_labels_and_truncation() -> None:
    frame = pd.DataFrame(
        {("amount", "sum"): [4017, 6432], ("amount", "count"): [8, 11]},
        index=pd.MultiIndex.from_tuples([("A", "F"), ("A", "M")], names=["d", "s"]),
    )
    (found,) = tables_in_text(repr(frame))
    assert list(found.frame.columns) == ["amount / sum", "amount / count"]
    assert list(found.frame.index) == ["A F", "A M"]
    (long,) = tables_in_text(repr(pd.Series(range(100))))
    assert long.total_rows == 100 and long.dtype == "int64"


def test_prose_is_not_read_as_a_table() -> None:
    assert tables_in_text("The claims rose by 5 percent in 2023.\nSee the appendix.") == []
