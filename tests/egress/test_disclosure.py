"""Tests for shuyu_platform.egress.disclosure: the automatic disclosure checks of egress requests.

Every check has positive and negative examples; identifiers are built with the helpers of
shuyu_platform.data.identifiers so that they are valid by construction, and pseudonyms come
from the real masking engine.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shuyu_platform.data.identifiers import (
    build_id_cards,
    build_org_codes,
    build_usccs,
    is_valid_id_card,
    luhn_check_digit,
    luhn_valid,
)
from shuyu_platform.data.masking import mask_column
from shuyu_platform.data.policy import FieldPolicy
from shuyu_platform.egress.disclosure import (
    Artefact,
    Context,
    Finding,
    Report,
    Rules,
    artefacts_from_file,
    artefacts_from_outputs,
    number_key,
    run_checks,
)

# ------------------------------------------------------------------------ helpers


def _ids(region: int = 510703, birth: str = "1990-01-01", n: int = 1000) -> list[str]:
    """``n`` valid ID card numbers (sequences 0..n-1)."""
    return [b.decode() for b in build_id_cards([region], [birth], np.arange(n))]


ID = _ids(n=1)[0]
ID_X = next(i for i in _ids() if i.endswith("X"))
ID_LUHN_62 = next(i for i in _ids(620102) if luhn_valid(i))  # Gansu: starts like a card
USCC = build_usccs([110000], build_org_codes(["60003734"]))[0].decode()
CARD_19 = "622202123456789012" + luhn_check_digit("622202123456789012")
VISA_TEST = "4111111111111111"
MOBILE = "13812345678"


def _pseudonyms(values: list[str], prefix: str | None = "P-") -> list[str]:
    policy = FieldPolicy.model_validate(
        {
            "title": "档案编号",
            "type": "string",
            "grade": "L3",
            "masking": {"rule": "pseudonymize", "prefix": prefix},
        }
    )
    return mask_column("person_id", pa.array(values), policy, key=b"k" * 32).to_pylist()


def _png(width: int = 2, height: int = 1, extra: bytes = b"", trailing: bytes = b"") -> bytes:
    """A minimal valid 8-bit greyscale PNG, optionally with extra chunks or trailing bytes."""
    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + extra
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
        + trailing
    )


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def _run(*artefacts: Artefact, **context: object) -> Report:
    return run_checks(list(artefacts), Context(**context))  # type: ignore[arg-type]


def _table(df: pd.DataFrame, **kwargs: object) -> Artefact:
    return Artefact("t", "table", table=df, **kwargs)  # type: ignore[arg-type]


def _text(text: str) -> Artefact:
    return Artefact("x", "text", text=text)


def _of(report: Report, check: str, severity: str | None = None) -> list[Finding]:
    return [
        f
        for f in report.findings
        if f.check == check and (severity is None or f.severity == severity)
    ]


def _output(output_type: str, **fields: object) -> dict:
    """An nbformat 4 output, as ``nbformat.v4.new_output`` builds it.

    (Built by hand: importing nbformat costs two seconds for its schema validator.)
    """
    output: dict = {"output_type": output_type, **fields}
    if output_type in ("display_data", "execute_result"):
        output.setdefault("metadata", {})
    if output_type == "execute_result":
        output.setdefault("execution_count", 1)
    return output


def _html_output(df: pd.DataFrame, *, repr_html: bool = False) -> dict:
    html = df._repr_html_() if repr_html else df.to_html()
    return _output("display_data", data={"text/html": html})


# ---------------------------------------------------------------------- number_key


def test_number_key_is_six_significant_digits_in_canonical_form() -> None:
    assert number_key(1234567.891) == number_key(1234570) == "1234570.0"
    assert number_key(42) == number_key(42.0) == number_key("42") == "42.0"
    assert number_key(np.float64(0.000123456789)) == "0.000123457"
    assert number_key(-0.0) == number_key(0) == "0.0"
    assert number_key(12.3457) != number_key(12.3458)
    assert (number_key(float("nan")), number_key(float("inf"))) == ("nan", "inf")


# ------------------------------------------------------------------ min cell count


def test_small_frequency_cell_fails_naming_row_and_column() -> None:
    sex = pd.Series(["F"] * 3 + ["M"] * 12 + ["F"] * 15 + ["M"] * 14, name="sex")
    district = pd.Series(["涪城区"] * 15 + ["游仙区"] * 29, name="district")
    report = _run(_table(pd.crosstab(district, sex)))
    [finding] = _of(report, "min_cell_count")
    assert finding.severity == "fail"
    assert "row '涪城区'" in finding.message and "column 'F'" in finding.message
    assert finding.where["row"] == "涪城区" and finding.where["column"] == "F"
    assert finding.where["value"] == 3
    assert report.verdict == "fail"


def test_zero_counts_fail_as_in_acro_and_large_counts_pass() -> None:
    table = pd.DataFrame({"F": [0, 10, 250], "M": [12, 0, 31]}, index=["a", "b", "c"])
    findings = _of(_run(_table(table)), "min_cell_count")
    assert [(f.where["row"], f.where["column"]) for f in findings] == [("a", "F"), ("b", "M")]
    assert "a zero tells" in findings[0].message
    relaxed = _run(_table(table), rules=Rules(zeros_disclosive=False))
    assert _of(relaxed, "min_cell_count") == []


def test_only_count_named_columns_are_checked_when_present() -> None:
    table = pd.DataFrame({"year": [2021, 2021], "month": [3, 4], "人数": [12, 4]})
    findings = _of(_run(_table(table)), "min_cell_count")
    assert [(f.where["column"], f.where["row_position"]) for f in findings] == [("人数", 1)]


def test_non_frequency_tables_are_not_count_checked() -> None:
    means = pd.DataFrame({"district": ["a", "b"], "avg_dosage": [3.5, 7.25]})
    label_only = pd.DataFrame({"district": ["a", "b"], "month": [3, 4]})
    assert _of(_run(_table(means), _table(label_only)), "min_cell_count") == []


def test_min_cell_count_threshold_comes_from_the_rules() -> None:
    table = pd.DataFrame({"n": [7, 4]}, index=["a", "b"])
    report = _run(_table(table), rules=Rules(min_cell_count=5))
    assert [f.where["value"] for f in _of(report, "min_cell_count")] == [4]


def test_findings_beyond_the_cap_are_summed_up() -> None:
    table = pd.DataFrame({"n": [3] * 30})
    findings = _of(_run(_table(table)), "min_cell_count")
    assert len(findings) == 21
    assert findings[-1].where == {"more": 10} and "10 more" in findings[-1].message
    [artefact] = artefacts_from_file("big.csv", ("n\n" + "3\n" * 30).encode())
    findings = _of(run_checks([artefact], Context()), "min_cell_count")
    assert findings[-1].where == {"file": "big.csv", "more": 10}


# ---------------------------------------------------------------- dominance and p%


def _sums(*cells: dict) -> tuple[pd.DataFrame, dict]:
    rows = [c["row"] for c in cells]
    table = pd.DataFrame({"settlement_sum": [float(c["total"]) for c in cells]}, index=rows)
    return table, {"column": "settlement_sum", "cells": list(cells)}


def test_nk_rule_follows_acro_greater_or_equal() -> None:
    table, stats = _sums(
        {"row": "a", "total": 100, "top": [50, 35, 5]},  # exactly 85%: fails (ACRO: >=)
        {"row": "b", "total": 100, "top": [30, 20, 10]},  # 50%: passes
    )
    report = _run(_table(table, cell_stats=stats))
    [finding] = _of(report, "dominance")
    assert (finding.severity, finding.where["row"], finding.where["share"]) == ("fail", "a", 0.85)
    assert _of(report, "p_percent") == []


def test_p_percent_rule_fails_when_the_rest_is_small_against_the_largest() -> None:
    table, stats = _sums(
        {"row": "a", "total": 1000, "top": [500, 460]},  # (1000-960)/500 = 8% < 10%
        {"row": "b", "total": 1000, "top": [300, 200]},  # 500/300: passes
    )
    report = _run(_table(table, cell_stats=stats), rules=Rules(dominance_k=1.0))
    [finding] = _of(report, "p_percent")
    assert finding.where["row"] == "a" and finding.where["ratio"] == pytest.approx(0.08)
    assert _of(report, "dominance") == []
    assert "460" not in finding.message and "500" not in finding.message  # no microdata


def test_dominance_is_undefined_with_negative_contributors() -> None:
    table, stats = _sums({"row": "a", "total": 100, "top": [90, 20], "n_negative": 1})
    [finding] = _of(_run(_table(table, cell_stats=stats)), "dominance")
    assert finding.severity == "warn" and "negative" in finding.message


def test_too_few_contributors_in_a_magnitude_cell_fails() -> None:
    table, stats = _sums(
        {"row": "a", "total": 100, "top": [20, 15], "count": 4},
        {"row": "b", "total": 100, "top": [20, 15], "count": 40},
    )
    [finding] = _of(_run(_table(table, cell_stats=stats)), "min_cell_count")
    assert finding.where["row"] == "a" and finding.where["contributors"] == 4


def test_sums_without_contributor_statistics_warn() -> None:
    report = _run(_table(pd.DataFrame({"结算金额": [1200.5, 800.25]}, index=["a", "b"])))
    [finding] = _of(report, "dominance")
    assert finding.severity == "warn" and "could not be checked" in finding.message
    assert report.verdict == "warn"
    counts = pd.DataFrame({"count": [12, 40]}, index=["a", "b"])
    table, stats = _sums({"row": "a", "total": 100, "top": [20, 15]})
    assert _of(_run(_table(counts), _table(table, cell_stats=stats)), "dominance") == []


def test_malformed_cell_stats_warn() -> None:
    table, _ = _sums({"row": "a", "total": 100, "top": [20, 15]})
    report = _run(_table(table, cell_stats={"column": "x", "cells": "oops"}))
    [finding] = _of(report, "dominance")
    assert finding.severity == "warn" and "malformed" in finding.message


# ---------------------------------------------------------------------- row level


def test_tables_over_max_rows_fail() -> None:
    rules = Rules(max_rows=50)
    big = pd.DataFrame({"x": np.arange(51) / 3})
    small = pd.DataFrame({"x": np.arange(50) / 3})
    assert [f.severity for f in _of(_run(_table(big), rules=rules), "row_level")] == ["fail"]
    assert _of(_run(_table(small), rules=rules), "row_level") == []


def test_truncated_notebook_display_counts_every_row() -> None:
    big = pd.DataFrame({"a": range(1000), "b": np.arange(1000) / 3})
    output = _output(
        "execute_result", data={"text/html": big._repr_html_(), "text/plain": repr(big)}
    )
    artefacts = artefacts_from_outputs(2, [output])
    [table] = [a for a in artefacts if a.kind == "table"]
    assert len(table.table) == 10 and table.total_rows == 1000  # type: ignore[arg-type]
    findings = _of(_run(*artefacts), "row_level", "fail")
    assert {f.artefact for f in findings} == {
        "cell 2 output 1 (text/html table 1)",
        "cell 2 output 1 (text/plain)",
    }


def test_identifier_like_string_column_warns() -> None:
    codes = pd.DataFrame({"code": [f"A{i:04d}" for i in range(30)], "x": np.arange(30) / 7})
    [finding] = _of(_run(_table(codes)), "row_level")
    assert finding.severity == "warn" and finding.where["column"] == "code"
    categories = pd.DataFrame({"sex": ["M", "F", "F"] * 10, "x": np.arange(30) / 7})
    grouped = pd.DataFrame({"icd": [f"C{i:02d}" for i in range(30)], "n": range(10, 40)})
    assert _of(_run(_table(categories), _table(grouped)), "row_level") == []


def test_long_text_warns() -> None:
    rules = Rules(max_text_lines=10)
    assert _of(_run(_text("row\n" * 11), rules=rules), "row_level", "warn")
    assert _of(_run(_text("row\n" * 10), rules=rules), "row_level") == []


# ---------------------------------------------------------------------- pseudonyms


def test_pseudonym_column_fails_without_echoing_tokens() -> None:
    tokens = _pseudonyms(["a", "b", "c", "a"])
    report = _run(_table(pd.DataFrame({"pid": tokens, "x": [1.5] * 4})), pseudonym_prefixes=("P-",))
    [finding] = _of(report, "pseudonyms")
    assert finding.severity == "fail" and finding.where["cells"] == 4
    assert not any(t in json.dumps(report.as_dict()) for t in tokens)


def test_pseudonyms_in_text_with_and_without_known_prefix() -> None:
    [prefixed] = _pseudonyms(["x"])
    assert _of(_run(_text(f"patient {prefixed} visited"), pseudonym_prefixes=("P-",)), "pseudonyms")
    # Unknown prefix or none at all: found when the token mixes letters and digits.
    assert _of(_run(_text("S-ab2cd3ef4gh5ij6k and ab2cd3ef4gh5ij6k")), "pseudonyms")


def test_pseudonym_lookalikes_are_not_flagged() -> None:
    text = "P-abcdefghijklmno P-ABCDEFGHIJKLMNOP P-abcdefghijklmnopq internationalize"
    assert _of(_run(_text(text), pseudonym_prefixes=("P-",)), "pseudonyms") == []


# --------------------------------------------------------------------- identifiers


def _kinds(report: Report) -> list[str]:
    return [f.where["kind"] for f in _of(report, "identifiers")]


def test_id_card_numbers_in_text_fail_masked() -> None:
    report = _run(_text(f"身份证号{ID}，另一位 {ID_X.lower()}"))
    findings = _of(report, "identifiers", "fail")
    assert [f.where["kind"] for f in findings] == ["id_card", "id_card"]
    assert findings[0].where["masked"] == ID[:4] + "*" * 10 + ID[-4:]
    assert findings[0].where["line"] == 1 and findings[0].where["char"] == 5


def test_ids_with_a_bad_check_character_are_ignored() -> None:
    bad = ID[:17] + ("0" if ID[17] != "0" else "1")
    assert not is_valid_id_card(bad)
    assert _kinds(_run(_text(f"no {bad} here"))) == []


def test_mobile_numbers_in_their_usual_forms() -> None:
    text = f"{MOBILE} / 138 1234 5678 / +86 138-1234-5678 / 8613812345678"
    assert _kinds(_run(_text(text))) == ["mobile"] * 4
    assert _kinds(_run(_text("12812345678 138123456789 1381234567"))) == []


def test_unified_social_credit_codes() -> None:
    bad = USCC[:17] + ("0" if USCC[17] != "0" else "1")
    assert _kinds(_run(_text(f"企业 {USCC} 与 {bad}"))) == ["uscc"]


def test_bank_cards_need_length_prefix_and_luhn() -> None:
    text = f"{CARD_19}; 4111 1111 1111 1111; {VISA_TEST}"
    assert _kinds(_run(_text(text))) == ["bank_card"] * 3
    implausible = "700000000000000" + luhn_check_digit("700000000000000")  # 16, bad prefix
    wrong_luhn = VISA_TEST[:-1] + "2"
    short = "4111111111111" + luhn_check_digit("4111111111111")  # 14 digits
    order_number = "1698765432101234567"  # 19 digits, e.g. a timestamp-based id
    text = f"{implausible} {wrong_luhn} {short} {order_number}"
    assert _kinds(_run(_text(text))) == []


def test_an_id_number_is_not_also_reported_as_a_card() -> None:
    assert ID_LUHN_62.startswith("62") and luhn_valid(ID_LUHN_62)
    assert _kinds(_run(_text(ID_LUHN_62))) == ["id_card"]


def test_identifiers_in_table_cells_labels_and_headers() -> None:
    table = pd.DataFrame(
        {
            "phone": np.array([13812345678, 13912345678, 1000], dtype="int64"),
            "id": ["-", ID, ID],
            f"holder {ID_X}": [1.5, 2.5, 3.5],
        },
        index=pd.Index(["a", USCC, "c"], name="firm"),
    )
    report = _run(_table(table))
    found = {
        (f.where["column"], f.where["kind"], f.where["cells"]) for f in _of(report, "identifiers")
    }
    assert found == {
        ("phone", "mobile", 2),
        ("id", "id_card", 2),
        ("(row labels, level 0)", "uscc", 1),
        ("(column headers)", "id_card", 1),
    }
    [id_finding] = [f for f in _of(report, "identifiers") if f.where["column"] == "id"]
    assert id_finding.where["first_row"] == USCC[:4] + "*" * 10 + USCC[-4:]
    assert id_finding.where["first_row_position"] == 1


def test_large_amounts_are_not_taken_for_phone_numbers() -> None:
    amounts = pd.DataFrame({"revenue": [15_000_000_000, 230_000_000, 4_500_000, 12_000_000]})
    phones = pd.DataFrame({"tel": [13_812_345_678, 13_912_345_678, 0, 15_000_000_000]})
    report = _run(_table(amounts), _table(phones))
    assert [(f.where["column"], f.where["cells"]) for f in _of(report, "identifiers")] == [
        ("tel", 3)
    ]


def test_messages_and_locations_never_hold_a_full_identifier() -> None:
    secrets = [ID, ID_X, USCC, CARD_19, MOBILE]
    # Identifiers as row labels of a failing frequency table, in cells, in text.
    table = pd.DataFrame({"n": [3, 4], "note": [f"tel {MOBILE}", CARD_19]}, index=[ID, USCC])
    text = " ".join(secrets)
    report = _run(_table(table), _text(text), known_names=frozenset({"张伟"}))
    assert _of(report, "min_cell_count") and _of(report, "identifiers")
    stored = json.dumps(report.as_dict(), ensure_ascii=False)
    for secret in secrets:
        assert secret not in stored
        assert secret[4:-4] not in stored  # not even the middle part


# -------------------------------------------------------------------------- names


def test_known_names_warn_reviewers_only_with_a_false_positive_caveat() -> None:
    names = frozenset({"张伟", "Ann Lee"})
    report = _run(
        _text("会诊医生：张伟\nsigned by Ann Lee"),
        _table(pd.DataFrame({"doctor": ["张伟", "王芳"], "n": [12, 15]})),
        known_names=names,
    )
    findings = _of(report, "known_names")
    assert [f.severity for f in findings] == ["warn"] * 3
    assert all(f.reviewer_only and "ordinary word" in f.message for f in findings)
    assert "张伟" not in json.dumps(report.as_dict(), ensure_ascii=False)
    assert findings[0].where["masked"] == "张*" and findings[1].where["line"] == 2
    # The generic model flags what looks like a name, in text and in a column.
    generic = _of(report, "names")
    assert [f.where.get("masked") for f in generic] == ["张*", "张*"]
    assert not any(f.reviewer_only for f in generic)
    public = report.public()
    assert not _of(public, "known_names") and public.verdict == "warn"


def test_names_absent_short_or_inside_words_do_not_warn() -> None:
    names = frozenset({"张伟", "王", "Ann"})
    report = _run(_text("王先生的 Annual report, planned"), known_names=names)
    assert _of(report, "known_names") == [] and _of(report, "names") == []


def test_the_generic_name_model_knows_names_not_places_or_statistics() -> None:
    report = _run(
        _text("患者 欧阳娜娜 与 李明 的理赔；Zhang Wei signed"),
        _table(pd.DataFrame({"district": ["涪城区", "游仙区"], "n": [12, 15]})),
        _table(pd.DataFrame({"项目": ["合计", "平均费用"], "n": [12, 15]})),
    )
    assert [f.where["masked"] for f in _of(report, "names")] == ["欧***", "李*", "Zh*****ei"]


# ------------------------------------------------------------------------- images


def test_png_output_needs_a_human_look() -> None:
    output = _output(
        "display_data",
        data={
            "image/png": base64.b64encode(_png(3, 2)).decode(),
            "text/plain": "<Figure size 640x480 with 1 Axes>",
        },
    )
    report = run_checks(artefacts_from_outputs(5, [output]), Context())
    [finding] = report.findings
    assert (finding.check, finding.severity) == ("image", "warn")
    assert "3×2 px" in finding.message and finding.where["mime"] == "image/png"
    assert finding.artefact == "cell 5 output 1 (image/png)" and report.verdict == "warn"


def test_png_with_hidden_data_or_text_is_inspected() -> None:
    trailing = artefacts_from_file("chart.png", _png(trailing=b"PAR1 secret rows"))
    assert _of(run_checks(trailing, Context()), "file_type", "fail")
    text_chunk = _chunk(b"tEXt", b"Comment\0" + ID.encode())
    report = run_checks(artefacts_from_file("chart.png", _png(extra=text_chunk)), Context())
    assert _of(report, "identifiers") and not _of(report, "file_type")


def test_a_file_named_png_that_is_not_one_fails() -> None:
    report = run_checks(artefacts_from_file("chart.png", b"PAR1 not an image"), Context())
    assert [f.check for f in report.findings if f.severity == "fail"] == ["file_type"]


def test_svg_text_is_scanned() -> None:
    svg = f'<svg xmlns="http://www.w3.org/2000/svg"><text x="1" y="2">{MOBILE}</text></svg>'
    report = run_checks(artefacts_from_file("plot.svg", svg.encode()), Context())
    assert _of(report, "image", "warn") and _kinds(report) == ["mobile"]


# ------------------------------------------------------------------ DP provenance

DP_ANSWERS = (1234.56789, 2345.6789, 345.678901, 4567.8)


def _dp_table() -> pd.DataFrame:
    return pd.DataFrame({"settlement_sum": list(DP_ANSWERS)}, index=list("abcd"))


def test_dp_output_replaces_count_and_dominance_findings() -> None:
    _, stats = _sums({"row": "a", "total": 100, "top": [99, 1], "count": 2})
    dp = frozenset(number_key(v) for v in DP_ANSWERS)
    report = _run(_table(_dp_table(), cell_stats=stats), dp_numbers=dp)
    [finding] = report.findings
    assert (finding.check, finding.severity) == ("dp_provenance", "safe")
    assert finding.where["set_aside"] == 3 and report.verdict == "pass"  # count, n-k, p%
    # Without the DP registry the same table fails.
    assert _run(_table(_dp_table(), cell_stats=stats)).verdict == "fail"


def test_dp_answers_shown_by_pandas_are_recognised() -> None:
    dp = frozenset(number_key(v) for v in DP_ANSWERS)
    artefacts = artefacts_from_outputs(1, [_html_output(_dp_table(), repr_html=True)])
    assert [f.severity for f in run_checks(artefacts, Context(dp_numbers=dp)).findings] == ["safe"]


def test_partial_dp_match_is_info_with_the_share() -> None:
    dp = frozenset(number_key(v) for v in DP_ANSWERS[:2])
    report = _run(_table(_dp_table()), dp_numbers=dp)
    [info] = _of(report, "dp_provenance")
    assert info.severity == "info" and info.where["share"] == 0.5 and "50%" in info.message
    assert _of(report, "dominance", "warn")  # the table is not exempt


def test_short_numbers_never_count_as_dp() -> None:
    table = pd.DataFrame({"n": [3, 5, 12]}, index=list("abc"))
    dp = frozenset(number_key(v) for v in (3, 5, 12))
    report = _run(_table(table), dp_numbers=dp)
    assert len(_of(report, "min_cell_count", "fail")) == 2
    assert not _of(report, "dp_provenance", "safe")


# ---------------------------------------------------------------- notebook outputs


def test_to_html_inside_display_data_is_parsed_back() -> None:
    df = pd.DataFrame(
        {
            "district": ["涪城区", "游仙区", "江油市"],
            "n": [12, 30, 0],
            "mean_amount": [1.5, 2.25, np.nan],
            "note": ["ok", "<b>&amp;</b>", ""],
        }
    ).set_index("district")
    output = _html_output(df)
    [artefact] = artefacts_from_outputs(3, [output])
    assert artefact.name == "cell 3 output 1 (text/html table 1)"
    assert artefact.origin == {"cell": 3, "output": 0, "mime": "text/html", "table": 0}
    table = artefact.table
    assert table is not None
    assert table.index.name == "district" and table.index.tolist() == df.index.tolist()
    assert table.columns.tolist() == ["n", "mean_amount", "note"]
    assert table["n"].dtype == "int64" and table["n"].tolist() == [12, 30, 0]
    assert table["mean_amount"].iloc[:2].tolist() == [1.5, 2.25]
    assert np.isnan(table["mean_amount"].iloc[2])
    assert table["note"].tolist()[:2] == ["ok", "<b>&amp;</b>"]


def test_crosstab_and_multiindex_displays() -> None:
    frame = pd.DataFrame(
        {"d": ["a", "a", "b", "b"], "s": ["M", "F", "M", "M"], "v": [1.0, 2.0, 3.0, 4.5]}
    )
    grouped = frame.groupby(["d", "s"]).agg({"v": ["count", "mean"]})
    [artefact] = artefacts_from_outputs(0, [_html_output(grouped, repr_html=True)])
    table = artefact.table
    assert table is not None
    assert table.columns.tolist() == ["v / count", "v / mean"]
    assert table.index.names == ["d", "s"] and table.index.tolist()[2] == ("b", "M")
    report = run_checks([artefact], Context())
    assert {f.where["column"] for f in _of(report, "min_cell_count")} == {"v / count"}
    assert _of(report, "dominance", "warn")


def test_stream_error_json_and_unknown_outputs() -> None:
    outputs = [
        _output("stream", name="stdout", text=["phone: ", f"{MOBILE}\n"]),
        _output(
            "error",
            ename="ValueError",
            evalue="bad",
            traceback=[f"\x1b[0;31mValueError\x1b[0m: {ID}"],
        ),
        _output("display_data", data={"application/json": [{"k": "a", "count": 3}]}),
        _output("display_data", data={"application/vnd.plotly.v1+json": {"data": [{"x": [1]}]}}),
    ]
    artefacts = artefacts_from_outputs(7, outputs)
    assert [(a.kind, a.name) for a in artefacts] == [
        ("text", "cell 7 output 1 (stdout)"),
        ("text", "cell 7 output 2 (error)"),
        ("table", "cell 7 output 3 (application/json)"),
        ("text", "cell 7 output 4 (application/vnd.plotly.v1+json)"),
    ]
    report = run_checks(artefacts, Context())
    assert _kinds(report) == ["mobile", "id_card"]
    assert _of(report, "min_cell_count")[0].where["output"] == 2
    assert _of(report, "manual_review", "warn")[0].where["output"] == 3


def test_plain_html_without_tables_becomes_text() -> None:
    output = _output(
        "display_data", data={"text/html": f"<p>call <b>{MOBILE}</b></p><style>p{{}}</style>"}
    )
    [artefact] = artefacts_from_outputs(0, [output])
    assert artefact.kind == "text" and artefact.text == f"call {MOBILE}"


# -------------------------------------------------------------------------- files


def test_csv_file_keeps_long_digit_strings_and_reads_numbers() -> None:
    csv = f"district,n,card,amount\n涪城区,12,{CARD_19},1200.5\n游仙区,4,-,800\n"
    [artefact] = artefacts_from_file("result.csv", csv.encode("utf-8"))
    table = artefact.table
    assert artefact.kind == "table" and artefact.name == "file result.csv" and table is not None
    assert table["n"].tolist() == [12, 4] and table["amount"].tolist() == [1200.5, 800.0]
    assert table["card"].tolist() == [CARD_19, "-"]
    report = run_checks([artefact], Context())
    assert _kinds(report) == ["bank_card"]
    assert [f.where["row_position"] for f in _of(report, "min_cell_count")] == [1]
    assert report.findings[0].where["file"] == "result.csv"


def test_suppression_marks_keep_a_count_column_numeric() -> None:
    [artefact] = artefacts_from_file("r.csv", b"district,n\na,*\nb,4\nc,-\nd,120\n")
    assert artefact.table is not None and artefact.table["n"].dtype == "float64"
    findings = _of(run_checks([artefact], Context()), "min_cell_count")
    assert [f.where["row_position"] for f in findings] == [1]


def test_gb18030_csv_and_tsv() -> None:
    [artefact] = artefacts_from_file("r.csv", "区县,人数\n涪城区,3\n".encode("gb18030"))
    assert artefact.table is not None and artefact.table.columns.tolist() == ["区县", "人数"]
    [tsv] = artefacts_from_file("r.tsv", b"a\tcount\nx\t5\n")
    assert _of(run_checks([artefact, tsv], Context()), "min_cell_count", "fail")


def test_parquet_file() -> None:
    buffer = io.BytesIO()
    table = pa.table({"district": ["a", "b"], "count": [3, 40], "id": [ID, None]})
    pq.write_table(table, buffer)
    [artefact] = artefacts_from_file("out/result.parquet", buffer.getvalue())
    assert artefact.kind == "table" and artefact.table is not None
    assert artefact.table.shape == (2, 3)
    report = run_checks([artefact], Context())
    assert len(_of(report, "min_cell_count")) == 1 and _kinds(report) == ["id_card"]


def test_other_files() -> None:
    records = json.dumps([{"k": "a", "n": 12}, {"k": "b", "n": 40}]).encode()
    [json_table] = artefacts_from_file("r.json", records)
    [json_text] = artefacts_from_file("r.json", b'{"note": "hello"}')
    [markdown] = artefacts_from_file("README.md", f"# Notes\n{MOBILE}\n".encode())
    [unknown_text] = artefacts_from_file("results.dat", b"plain text")
    [binary] = artefacts_from_file("model.pkl", b"\x80\x04\x95\x00\xff\xfe")
    [bad_parquet] = artefacts_from_file("x.parquet", b"not parquet")
    assert [a.kind for a in (json_table, json_text, markdown, unknown_text)] == [
        "table",
        "text",
        "text",
        "text",
    ]
    report = run_checks([json_table, json_text, markdown, unknown_text], Context())
    assert report.verdict == "fail" and _kinds(report) == ["mobile"]
    for artefact in (binary, bad_parquet):
        [finding] = run_checks([artefact], Context()).findings
        assert (finding.check, finding.severity) == ("binary", "fail")


def test_notebook_file_sources_and_outputs() -> None:
    notebook = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {},
        "cells": [
            {"cell_type": "markdown", "id": "m", "metadata": {}, "source": "# 报告"},
            {
                "cell_type": "code",
                "id": "c",
                "metadata": {},
                "execution_count": 1,
                "source": ["x = lookup(\n", f"'{ID}')"],
                "outputs": [_html_output(pd.DataFrame({"n": [2]}, index=["a"]))],
            },
        ],
    }
    artefacts = artefacts_from_file("report.ipynb", json.dumps(notebook).encode())
    assert [a.name for a in artefacts] == [
        "file report.ipynb cell 0 source",
        "file report.ipynb cell 1 source",
        "file report.ipynb cell 1 output 1 (text/html table 1)",
    ]
    report = run_checks(artefacts, Context())
    assert _kinds(report) == ["id_card"] and _of(report, "min_cell_count")


# ------------------------------------------------------------------ report, rules


def test_verdict() -> None:
    def report(*severities: str) -> Report:
        return Report([Finding("names", s, "x", "m", {}) for s in severities])

    assert report().verdict == "pass"
    assert report("info", "safe").verdict == "pass"
    assert report("info", "warn").verdict == "warn"
    assert report("warn", "fail", "safe").verdict == "fail"
    with pytest.raises(ValueError, match="severity"):
        Finding("names", "error", "x", "m", {})


def test_report_round_trips_through_json() -> None:
    report = _run(_table(pd.DataFrame({"n": [3]}, index=["a"])), _text(MOBILE))
    stored = json.loads(json.dumps(report.as_dict()))
    assert stored["verdict"] == "fail" and stored["counts"]["fail"] == 2
    assert stored["rules"]["min_cell_count"] == 10 and stored["version"] == 1
    assert Report.from_dict(stored) == report


def test_rules_are_validated() -> None:
    assert Rules.from_dict({"min_cell_count": 5}).min_cell_count == 5
    with pytest.raises(ValueError, match="unknown"):
        Rules.from_dict({"min_cel_count": 5})
    with pytest.raises(ValueError):
        Rules(dominance_k=1.5)
    with pytest.raises(ValueError):
        Rules(min_cell_count=0)
