"""The masking engine: each rule on ordinary values and on the edge cases raw data holds.

Nulls, empty strings, non-ASCII (Chinese) names, impossible dates and non-finite
numbers must never crash a rule; keyed rules must be stable for one tenant and differ
between tenants.
"""

from __future__ import annotations

import base64
import hmac
import random
import string
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pydantic import ValidationError

from shuyu_platform.data import masking
from shuyu_platform.data.masking import mask_column, mask_table, tenant_key, view_schema
from shuyu_platform.data.policy import FieldPolicy, PolicyError, load_policy

REPO = Path(__file__).resolve().parents[2]
SECRET = b"platform-master-secret-for-tests"
KEY = tenant_key(SECRET, "kangning")
OTHER_KEY = tenant_key(SECRET, "huaxin")
TODAY = date(2026, 6, 15)


def policy_field(kind: str, rule: str, **parameters: Any) -> FieldPolicy:
    """A grade L3 field of type ``kind`` masked by ``rule``."""
    return FieldPolicy.model_validate(
        {"title": "测试", "type": kind, "grade": "L3", "masking": {"rule": rule, **parameters}}
    )


def mask(
    values: list[Any] | pa.Array,
    kind: str,
    rule: str,
    *,
    arrow_type: pa.DataType | None = None,
    key: bytes = KEY,
    **parameters: Any,
) -> list[Any]:
    """Mask ``values`` with one rule and return the result as Python values."""
    array = values if isinstance(values, pa.Array) else pa.array(values, type=arrow_type)
    field = policy_field(kind, rule, **parameters)
    result = mask_column("f", array, field, key=key, reference_date=TODAY)
    assert len(result) == len(array)
    return result.to_pylist()


def reference_token(value: str, prefix: str = "", key: bytes = KEY) -> str:
    """A pseudonym computed the slow, obvious way (the documented construction)."""
    sub_key = hmac.digest(key, b"shuyu.masking.pseudonymize", "sha256")
    digest = hmac.digest(sub_key, value.encode("utf-8"), "sha256")
    return prefix + base64.b32encode(digest[:10]).decode().lower()


# ================================================================================ keys


def test_tenant_keys_are_stable_and_differ_between_tenants_and_secrets() -> None:
    assert tenant_key(SECRET, "kangning") == KEY
    assert len(KEY) == 32
    assert KEY != OTHER_KEY
    assert tenant_key(b"another-platform-master-secret", "kangning") != KEY


@pytest.mark.parametrize(
    ("secret", "tenant"), [(b"short", "kangning"), (SECRET, ""), ("text-not-bytes" * 3, "t")]
)
def test_tenant_key_rejects_weak_input(secret: Any, tenant: str) -> None:
    with pytest.raises(ValueError):
        tenant_key(secret, tenant)


def test_a_short_masking_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        mask(["x"], "string", "pseudonymize", key=b"short")


# ======================================================================== pseudonymize


def test_pseudonyms_follow_the_documented_construction() -> None:
    values = ["P00000000001", "王小明", "", "ab c"]
    assert mask(values, "string", "pseudonymize", prefix="P-") == [
        reference_token(value, "P-") for value in values
    ]
    assert mask(values, "string", "pseudonymize") == [reference_token(v) for v in values]


def test_pseudonyms_keep_nulls_and_give_the_empty_string_a_token() -> None:
    out = mask([None, "", "李雷", None, "李雷"], "string", "pseudonymize", prefix="P-")
    assert out[0] is None and out[3] is None
    assert out[1] == reference_token("", "P-")
    assert out[2] == out[4] == reference_token("李雷", "P-")
    assert all(len(token) == 2 + masking.TOKEN_CHARS for token in out if token is not None)


def test_pseudonyms_of_an_all_null_or_empty_column() -> None:
    assert mask([None, None], "string", "pseudonymize") == [None, None]
    assert mask([], "string", "pseudonymize", arrow_type=pa.string()) == []


def test_pseudonyms_differ_between_tenants_and_are_stable_for_one() -> None:
    values = [f"P{n:011d}" for n in range(200)]
    first = mask(values, "string", "pseudonymize")
    again = mask(values, "string", "pseudonymize")
    other = mask(values, "string", "pseudonymize", key=OTHER_KEY)
    assert first == again
    assert len(set(first)) == len(values)
    assert not set(first) & set(other)


def test_repeated_unique_dictionary_and_chunked_columns_give_the_same_tokens() -> None:
    rng = random.Random(7)
    unique = [f"SI{n:014d}" for n in range(6000)]
    repeated = [rng.choice(unique[:50]) if n % 3 else None for n in range(6000)]
    for values in (unique, repeated):
        expected = [None if v is None else reference_token(v) for v in values]
        plain = pa.array(values, type=pa.string())
        assert mask(plain, "string", "pseudonymize") == expected
        assert mask(plain.dictionary_encode(), "string", "pseudonymize") == expected
        chunked = pa.chunked_array([plain.slice(0, 1000), plain.slice(1000)])
        result = mask_column(
            "f", chunked, policy_field("string", "pseudonymize"), key=KEY, reference_date=TODAY
        )
        assert result.to_pylist() == expected


def test_sliced_columns_are_pseudonymised_from_their_own_values() -> None:
    values = pa.array([f"id-{n}" if n % 4 else None for n in range(100)]).slice(37, 20)
    assert mask(values, "string", "pseudonymize") == [
        None if v is None else reference_token(v) for v in values.to_pylist()
    ]


def test_non_string_values_are_pseudonymised_by_their_text() -> None:
    assert mask([42, None], "int", "pseudonymize", arrow_type=pa.int64()) == [
        reference_token("42"),
        None,
    ]
    assert mask([date(2023, 5, 17)], "date", "pseudonymize") == [reference_token("2023-05-17")]


def test_one_tenant_gets_the_same_token_for_a_value_in_any_field() -> None:
    code = "91510703816684636W"
    enterprise = mask([code], "string", "pseudonymize", prefix="E-")
    employer = mask([None, code], "string", "pseudonymize", prefix="E-")
    assert enterprise[0] == employer[1]


# ============================================================================= partial


@pytest.mark.parametrize(
    ("value", "first", "last", "char", "expected"),
    [
        ("王小明", 1, 0, "*", "王**"),
        ("欧阳娜娜", 1, 1, "*", "欧**娜"),
        ("绵阳金瑞物流股份有限公司", 2, 4, "*", "绵阳******有限公司"),
        ("MYIMG202310625228", 5, 2, "*", "MYIMG**********28"),
        ("李", 1, 0, "*", "*"),  # not longer than what is kept: masked whole
        ("ab", 1, 1, "#", "##"),
        ("abc", 0, 0, "*", "***"),
        ("abcdef", 0, 2, "x", "xxxxef"),
        ("", 2, 2, "*", ""),
        (None, 2, 2, "*", None),
        ("张三丰", 1, 0, "某", "张某某"),
        ("ＡＢＣＤ", 1, 1, "*", "Ａ**Ｄ"),
    ],
)
def test_partial_masks_by_unicode_characters(
    value: str | None, first: int, last: int, char: str, expected: str | None
) -> None:
    out = mask([value], "string", "partial", keep_first=first, keep_last=last, mask_char=char)
    assert out == [expected]


def reference_partial(value: str | None, first: int, last: int, char: str = "*") -> str | None:
    if value is None:
        return None
    if len(value) <= first + last:
        return char * len(value)
    return value[:first] + char * (len(value) - first - last) + value[len(value) - last :]


@pytest.mark.parametrize(("first", "last"), [(0, 0), (2, 0), (0, 3), (2, 2), (5, 2)])
def test_partial_on_ascii_codes_matches_the_plain_definition(first: int, last: int) -> None:
    rng = random.Random(first * 10 + last)
    fixed = [
        None if rng.random() < 0.2 else "".join(rng.choices(string.digits, k=12))
        for _ in range(500)
    ]
    mixed = [
        None
        if rng.random() < 0.1
        else "".join(rng.choices(string.ascii_letters, k=rng.randint(0, 9)))
        for _ in range(500)
    ]
    with_text = [*mixed[:50], "王五", "测试数据"]
    for values in (fixed, mixed, with_text):
        array = pa.array(values, type=pa.string())
        for column in (array, array.slice(13, 300)):
            out = mask(column, "string", "partial", keep_first=first, keep_last=last)
            assert out == [reference_partial(v, first, last) for v in column.to_pylist()]


# ========================================================================= generalize


def test_prefix_keeps_the_first_characters() -> None:
    values = ["8A00.0", "2C25", "X", "", None, "王小明"]
    assert mask(values, "string", "generalize", to="prefix", prefix_length=2) == [
        "8A",
        "2C",
        "X",
        "",
        None,
        "王小",
    ]


def test_year_and_month_truncate_dates_and_keep_their_type() -> None:
    days = pa.array([date(1987, 6, 15), None, date(2024, 2, 29)], type=pa.date32())
    field = policy_field("date", "generalize", to="year")
    result = mask_column("birth_date", days, field, key=KEY)
    assert result.type == pa.date32()
    assert result.to_pylist() == [date(1987, 1, 1), None, date(2024, 1, 1)]
    assert mask(days, "date", "generalize", to="month") == [
        date(1987, 6, 1),
        None,
        date(2024, 2, 1),
    ]


def test_year_and_month_truncate_timestamps() -> None:
    times = pa.array(
        [datetime(2023, 11, 29, 16, 44, 16), None], type=pa.timestamp("ms", tz="Asia/Shanghai")
    )
    field = policy_field("timestamp", "generalize", to="month")
    result = mask_column("diagnosis_time", times, field, key=KEY)
    assert result.type == pa.timestamp("ms", tz="Asia/Shanghai")
    month = result.to_pylist()[0]  # floored in the column's own time zone
    assert (month.month, month.day, month.hour, month.minute) == (11, 1, 0, 0)
    assert mask(times, "timestamp", "generalize", to="year")[1] is None


def test_impossible_dates_become_null() -> None:
    out_of_range = pa.array([2**31 - 1, -(2**31), 0], type=pa.int32()).view(pa.date32())
    assert mask(out_of_range, "date", "generalize", to="year") == [None, None, date(1970, 1, 1)]
    huge = pa.array([2**62, 0], type=pa.int64()).view(pa.timestamp("s"))
    assert mask(huge, "timestamp", "generalize", to="month") == [None, datetime(1970, 1, 1)]


def test_dates_written_as_text_are_parsed_strictly() -> None:
    text = ["2023-02-30", "2023-02-28", "garbage", None, " 2024-01-31 ", "", "2023-2-3"]
    assert mask(text, "date", "generalize", to="month") == [
        None,
        date(2023, 2, 1),
        None,
        None,
        date(2024, 1, 1),
        None,
        None,
    ]
    stamps = ["2023-05-17 13:04:05", "2023-05-17T13:04:05", "2023-13-01 00:00:00", "x"]
    assert mask(stamps, "timestamp", "generalize", to="month") == [
        datetime(2023, 5, 1),
        datetime(2023, 5, 1),
        None,
        None,
    ]


def test_age_bands_are_counted_on_the_reference_date() -> None:
    births = [
        date(1996, 6, 15),  # 30 today
        date(1996, 6, 16),  # 30 tomorrow: still 29
        date(1986, 6, 16),  # 39
        date(2026, 6, 15),  # born today: 0
        date(2026, 6, 16),  # not born yet
        None,
    ]
    assert mask(births, "date", "generalize", to="age_band") == [
        "30-39",
        "20-29",
        "30-39",
        "0-9",
        None,
        None,
    ]
    assert mask(births[:2], "date", "generalize", to="age_band", band_years=5) == [
        "30-34",
        "25-29",
    ]


def test_age_bands_need_a_reference_date() -> None:
    field = policy_field("date", "generalize", to="age_band")
    with pytest.raises(ValueError, match=r"'birth_date'.*reference date"):
        mask_column("birth_date", pa.array([date(2000, 1, 1)]), field, key=KEY)


def test_grid_snaps_coordinates_down() -> None:
    values = [104.735, 31.4679, -0.05, 0.3, None, float("nan"), float("inf")]
    assert mask(values, "float", "generalize", to="grid", grid_degrees=0.1) == [
        104.7,
        31.4,
        -0.1,
        0.3,
        None,
        None,
        None,
    ]
    assert mask([7, -7, None], "int", "generalize", to="grid", grid_degrees=5.0) == [5, -10, None]


# ============================================================================ numbers


def test_round_goes_to_the_nearest_multiple_halves_away_from_zero() -> None:
    out = mask([374.07, 1.25, -0.05, None, float("nan"), float("-inf")], "float", "round", to=0.5)
    assert out == [374.0, 1.5, 0.0, None, None, None]
    assert str(out[2]) == "0.0"  # never -0.0
    assert mask([149, 150, -150, None], "int", "round", to=100.0) == [100, 200, -200, None]
    assert mask([0.1 + 0.2], "float", "round", to=0.1) == [0.3]


def test_round_output_types() -> None:
    ints = pa.array([49, 120], type=pa.int8())
    whole = mask_column("n", ints, policy_field("int", "round", to=100.0), key=KEY)
    assert whole.type == pa.int64() and whole.to_pylist() == [0, 100]
    big = mask_column("n", ints, policy_field("int", "round", to=1000.0), key=KEY)
    assert big.to_pylist() == [0, 0]
    over = mask_column(
        "n", pa.array([127], pa.int8()), policy_field("int", "round", to=50.0), key=KEY
    )
    assert over.to_pylist() == [150]  # computed in int64: no int8 overflow
    halves = mask_column("n", ints, policy_field("int", "round", to=0.5), key=KEY)
    assert halves.type == pa.float64()


def test_round_to_significant_figures_keeps_relative_precision() -> None:
    values = [1234.5, 48765.0, 0.01234, -1250.0, 0.0, 7.0, None, float("nan"), float("inf")]
    assert mask(values, "float", "round", significant=2) == [
        1200.0,
        49000.0,
        0.012,
        -1300.0,
        0.0,
        7.0,
        None,
        None,
        None,
    ]
    assert mask([5810, 149, None], "int", "round", significant=1) == [6000, 100, None]
    field = policy_field("float", "round", significant=1)
    assert masking.masking_label(field) == "round:1sf"
    with pytest.raises(ValidationError, match="exactly one of"):
        policy_field("float", "round", to=10.0, significant=2)


def test_top_code_also_bottom_codes() -> None:
    values = [-5.0, 3.0, 120.0, None, float("-inf")]
    assert mask(values, "float", "top_code", min=0.0, max=100.0) == [0.0, 3.0, 100.0, None, 0.0]
    assert mask([-3, 2, None], "int", "top_code", min=0.0) == [0, 2, None]
    with pytest.raises(ValidationError, match="give max"):
        policy_field("float", "top_code")


def test_bands_can_be_shown_as_typical_values_and_keep_the_column_numeric() -> None:
    edges, shown = [0, 100, 30000, float("inf")], [60, 5000, 76800]
    bands = policy_field("float", "bucket", edges=edges, values=shown)
    amounts = pa.array([50.0, 150.0, 30000.0, 9e9, -1.0, None])
    out = mask_column("f", amounts, bands, key=KEY).to_pylist()
    assert out == [60.0, 5000.0, 76800.0, 76800.0, None, None]
    field = policy_field("float", "bucket", edges=[0, 1], values=[0.5])
    assert masking.output_type(field) == pa.float64()
    with pytest.raises(ValidationError, match="labels or values"):
        policy_field("float", "bucket", edges=[0, 1], values=[0.5], labels=["a"])


def test_generalize_to_periods_of_several_years_keeps_dates() -> None:
    days = [date(1987, 6, 15), date(1990, 1, 1), date(1969, 12, 31), None]
    assert mask(days, "date", "generalize", to="year", years=5) == [
        date(1985, 1, 1),
        date(1990, 1, 1),
        date(1965, 1, 1),
        None,
    ]
    with pytest.raises(ValidationError, match="only allowed when to is 'year'"):
        policy_field("date", "generalize", to="month", years=5)


def test_noise_is_keyed_per_person_and_tenant_and_stable() -> None:
    field = policy_field("float", "noise", relative_sd=0.05, to=1.0)
    values = pa.array([1000.0] * 2000 + [None])
    people = pa.array([f"P{i:05d}" for i in range(1000)] * 2 + ["P99999"])
    first = mask_column("benefit", values, field, key=KEY, unit=people).to_pylist()
    again = mask_column("benefit", values, field, key=KEY, unit=people).to_pylist()
    other = mask_column("benefit", values, field, key=OTHER_KEY, unit=people).to_pylist()
    assert first == again and first[-1] is None
    assert first[:1000] == first[1000:2000]  # one person, one noise, in every row
    noisy = pa.array(first[:1000]).to_numpy(zero_copy_only=False)
    assert 40 < noisy.std() < 60 and abs(noisy.mean() - 1000) < 6
    assert sum(a != b for a, b in zip(first, other, strict=True)) > 900
    with pytest.raises(ValueError, match="noise needs the privacy-unit column"):
        mask_column("benefit", values, field, key=KEY)


def test_top_code_caps_large_values() -> None:
    values = [100.0, 50000.0, 72000.5, None, float("nan"), float("inf"), float("-inf")]
    assert mask(values, "float", "top_code", max=50000) == [
        100.0,
        50000.0,
        50000.0,
        None,
        None,
        50000.0,
        float("-inf"),
    ]
    assert mask([3, 9, None], "int", "top_code", max=5.0, arrow_type=pa.int32()) == [3, 5, None]


def test_bucket_uses_labels_and_includes_the_last_upper_edge() -> None:
    labelled = mask(
        [0, 99.9, 100, 100000, 100000.5, -1, None, float("nan")],
        "float",
        "bucket",
        edges=[0, 100, 100000],
        labels=["小", "大"],
    )
    assert labelled == ["小", "小", "大", "大", None, None, None, None]
    assert mask([5, 150, 1000], "int", "bucket", edges=[0, 100, 1000]) == [
        "[0, 100)",
        "[100, 1000]",
        "[100, 1000]",
    ]
    assert mask([0.3], "float", "bucket", edges=[0.25, 0.5]) == ["[0.25, 0.5]"]


def test_numbers_written_as_text_are_read_or_nulled() -> None:
    assert mask(["12.34", "abc", None, " 7 "], "float", "round", to=1.0) == [12.0, None, None, 7.0]


# ========================================================================== date shift


def shifted(
    dates: list[Any], units: list[Any], *, key: bytes = KEY, max_days: int = 30
) -> list[Any]:
    field = policy_field("date", "date_shift", max_days=max_days)
    array = pa.array(dates, type=pa.date32())
    return mask_column("d", array, field, key=key, unit=pa.array(units)).to_pylist()


def reference_shift(unit: str, key: bytes, max_days: int) -> int:
    sub_key = hmac.digest(key, b"shuyu.masking.date_shift", "sha256")
    number = int.from_bytes(hmac.digest(sub_key, unit.encode(), "sha256")[:8], "big")
    return number % (2 * max_days + 1) - max_days


def test_date_shift_moves_each_unit_by_its_own_stable_offset() -> None:
    people = [f"P{n:011d}" for n in range(300)]
    day = date(2024, 3, 1)
    out = shifted([day] * 300, people)
    offsets = [(moved - day).days for moved in out]
    assert offsets == [reference_shift(p, KEY, 30) for p in people]
    assert all(-30 <= offset <= 30 for offset in offsets)
    assert len(set(offsets)) > 40  # spread over the range, not one constant
    # Another dataset holding the same people (other dates, other order): same offsets.
    later = [date(2025, 1, 1) + (date(2024, 1, n % 28 + 1) - date(2024, 1, 1)) for n in range(300)]
    again = shifted(later[::-1], people[::-1])
    assert [(m - d).days for m, d in zip(again, later[::-1], strict=True)] == offsets[::-1]
    # Another tenant: other offsets.
    other = shifted([day] * 300, people, key=OTHER_KEY)
    assert sum(a != b for a, b in zip(out, other, strict=True)) > 250


def test_date_shift_handles_nulls_and_timestamps() -> None:
    assert shifted([None, date(2024, 1, 1), date(2024, 1, 1)], ["a", None, ""])[:2] == [
        None,
        None,
    ]
    field = policy_field("timestamp", "date_shift", max_days=10)
    times = pa.array([datetime(2024, 1, 1, 12, 30)], type=pa.timestamp("s"))
    moved = mask_column("t", times, field, key=KEY, unit=pa.array(["a"])).to_pylist()[0]
    assert moved.time() == datetime(2024, 1, 1, 12, 30).time()
    assert (moved.date() - date(2024, 1, 1)).days == reference_shift("a", KEY, 10)


def test_date_shift_needs_the_unit() -> None:
    field = policy_field("date", "date_shift", max_days=10)
    with pytest.raises(ValueError, match=r"'d'.*privacy-unit"):
        mask_column("d", pa.array([date(2024, 1, 1)]), field, key=KEY)


# ======================================================================= keep and drop


def test_keep_returns_values_unchanged_and_decodes_dictionaries() -> None:
    field = FieldPolicy.model_validate({"title": "性别", "type": "category", "grade": "L2"})
    values = pa.array(["M", "F", None, "M"]).dictionary_encode()
    result = mask_column("sex", values, field, key=KEY)
    assert result.type == pa.string()
    assert result.to_pylist() == ["M", "F", None, "M"]


def test_drop_has_nothing_to_show() -> None:
    field = FieldPolicy.model_validate({"title": "姓名", "type": "string", "grade": "L4"})
    with pytest.raises(ValueError, match=r"'name'.*dropped"):
        mask_column("name", pa.array(["王小明"]), field, key=KEY)


def test_a_rule_refuses_a_column_it_cannot_read() -> None:
    field = policy_field("date", "generalize", to="year")
    with pytest.raises(ValueError, match=r"'birth_date'.*not a date"):
        mask_column("birth_date", pa.array([1.5]), field, key=KEY)


# ============================================================================= tables


@pytest.fixture(scope="module")
def health() -> Any:
    return load_policy(REPO / "policies" / "health_records.yaml")


def raw_health_rows() -> pa.Table:
    return pa.table(
        {
            "person_id": ["P00000000001", "P00000000002", None],
            "name": ["王小明", "欧阳娜娜", ""],
            "id_card": ["510703198701011234", "51070319870101123X", None],
            "phone": ["13800000000", "13900000000", "13700000000"],
            "sex": ["M", "F", None],
            "birth_date": pa.array([date(1987, 6, 15), None, date(2000, 2, 29)]),
            "district": ["涪城区", "游仙区", "江油市"],
            "diagnosis_time": pa.array(
                [datetime(2023, 11, 29, 16, 44, 16), None, datetime(2024, 1, 1)],
                type=pa.timestamp("ms"),
            ),
            "icd11_code": ["2C25", "", None],
            "imaging_number": ["MYIMG202310625228", None, ""],
            "dosage_mg": [374.07, None, float("nan")],
            "settlement_amount": [22859.05, 72000.0, None],
            "surgery_record_number": [None, "SS20230000001", None],
        }
    )


def test_mask_table_masks_only_the_requested_fields_in_policy_order(health: Any) -> None:
    table = raw_health_rows()
    view = mask_table(
        table,
        health,
        ["settlement_amount", "person_id", "birth_date"],
        key=KEY,
        reference_date=TODAY,
    )
    assert view.column_names == ["person_id", "birth_date", "settlement_amount"]
    assert view.column("person_id").to_pylist() == [
        reference_token("P00000000001", "P-"),
        reference_token("P00000000002", "P-"),
        None,
    ]
    assert view.column("birth_date").to_pylist() == [date(1987, 1, 1), None, date(2000, 1, 1)]
    # The band each amount falls in, shown as the band's typical value (top band: 30,000+).
    assert view.column("settlement_amount").to_pylist() == [17600.0, 76800.0, None]


def test_mask_table_with_every_visible_field(health: Any) -> None:
    fields = list(health.visible_fields())
    view = mask_table(raw_health_rows(), health, fields, key=KEY, reference_date=TODAY)
    assert view.schema.equals(view_schema(health, fields, raw_health_rows().schema))
    assert view.column("imaging_number").to_pylist() == ["MYIMG**********28", None, ""]
    assert view.column("icd11_code").to_pylist() == ["2C", "", None]
    assert view.column("dosage_mg").to_pylist() == [374.0, None, None]
    for dropped in ("name", "id_card", "phone"):
        assert dropped not in view.column_names


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (["person_id", "name"], "'name'.*L4"),
        (["id_card"], "'id_card'.*L4"),
        (["person_ids"], "no field 'person_ids'.*did you mean 'person_id'"),
        (["sex", "sex"], "'sex' is requested twice"),
        ([], "no fields requested"),
        ("sex", "not the string"),
    ],
)
def test_mask_table_refuses_fields_outside_the_view(health: Any, fields: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mask_table(raw_health_rows(), health, fields, key=KEY, reference_date=TODAY)


def test_mask_table_refuses_a_dropped_field_and_a_missing_column() -> None:
    enterprise = load_policy(REPO / "policies" / "enterprise_credit.yaml")
    with pytest.raises(ValueError, match=r"'equity_structure'.*dropped"):
        mask_table(
            pa.table({"x": [1]}), enterprise, ["equity_structure"], key=KEY, reference_date=TODAY
        )
    with pytest.raises(ValueError, match=r"'industry'.*not a column"):
        mask_table(pa.table({"x": [1]}), enterprise, ["industry"], key=KEY, reference_date=TODAY)


def test_view_schema_types(health: Any) -> None:
    schema = view_schema(health, list(health.visible_fields()), raw_health_rows().schema)
    assert schema.field("person_id").type == pa.string()
    assert schema.field("birth_date").type == pa.date32()
    assert schema.field("diagnosis_time").type == pa.timestamp("ms")
    assert schema.field("dosage_mg").type == pa.float64()
    assert schema.field("birth_date").metadata[b"shuyu.masking"] == b"generalize:year"
    assert schema.field("sex").metadata[b"shuyu.grade"] == b"L2"
    canonical = view_schema(health, ["birth_date", "settlement_amount"])
    assert canonical.types == [pa.date32(), pa.float64()]


# ===================================================================== policy problems


def test_a_malformed_masking_rule_names_the_file_and_the_field(tmp_path: Path) -> None:
    text = (REPO / "policies" / "health_records.yaml").read_text("utf-8")
    old = "masking: {rule: partial, keep_first: 5, keep_last: 2}"
    assert text.count(old) == 1
    path = tmp_path / "health_records.yaml"
    path.write_text(text.replace(old, "masking: {rule: partial, keep_first: -5, keep_last: 2}"))
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    message = str(caught.value)
    assert str(path) in message
    assert "fields.imaging_number.masking.keep_first" in message
