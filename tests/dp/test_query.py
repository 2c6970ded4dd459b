"""DP requests are checked against the policy and the grant before anything is spent."""

from __future__ import annotations

from typing import Any

import pytest

from harness import REPO
from shuyu_platform.data.policy import DatasetPolicy, load_policies
from shuyu_platform.dp import query

#: What the huaxin demo grant of health_records holds.
HUAXIN = ["person_id", "sex", "birth_date", "district", "icd11_code"]


@pytest.fixture(scope="module")
def health() -> DatasetPolicy:
    return load_policies(REPO / "policies")["health_records"]


def parse(policy: DatasetPolicy, granted: list[str] | None = None, **body: Any) -> query.QuerySpec:
    return query.parse(
        {"dataset": "health_records", **body}, policy, granted or list(policy.fields)
    )


def filterable(policy: DatasetPolicy, *names: str) -> DatasetPolicy:
    """``policy`` with more filterable columns (to test typing on dates)."""
    more = (*policy.dp.filterable, *names)
    return policy.model_copy(update={"dp": policy.dp.model_copy(update={"filterable": more})})


def test_a_full_request_is_parsed_and_typed(health: DatasetPolicy) -> None:
    spec = parse(
        filterable(health, "birth_date"),
        epsilon=0.25,
        filters=[
            {"column": "birth_date", "op": ">=", "value": "1980-01-01"},
            {"column": "district", "op": "in", "value": ["涪城区"]},
        ],
        group_by=["sex", {"column": "dosage_mg", "bins": [0, 100]}],
        statistics={
            "n": {"fn": "count"},
            "p90": {"fn": "quantile", "column": "dosage_mg", "q": 0.9},
        },
    )
    assert spec.epsilon == 0.25 and spec.epsilon_micro == 250_000
    assert spec.filters[0].value.isoformat() == "1980-01-01"
    assert spec.key_names() == ["sex", "dosage_mg_bin"]
    assert spec.group_by[1].labels == ("<0", "[0, 100)", ">=100")  # type: ignore[union-attr]
    assert spec.as_dict()["filters"][0]["value"] == "1980-01-01"


def test_epsilon_defaults_to_a_tenth_within_the_cap(health: DatasetPolicy) -> None:
    assert parse(health, statistics={"n": {"fn": "count"}}).epsilon == 0.1


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (
            {"statistics": {"n": {"fn": "sum", "column": "wage"}}},
            400,
            "health_records has no column 'wage'",
        ),
        (
            {"statistics": {"n": {"fn": "sum", "column": "settlement_amount"}}},
            403,
            "'settlement_amount' of health_records is not in your grant",
        ),
        (
            {"group_by": ["dosage_mg"], "statistics": {"n": {"fn": "count"}}},
            400,
            "'dosage_mg' has no public key set",
        ),
        (
            {"statistics": {"n": {"fn": "sum", "column": "sex"}}},
            400,
            "'sex' is a category column, not a number",
        ),
        (
            {"epsilon": 0, "statistics": {"n": {"fn": "count"}}},
            400,
            "epsilon must be greater than 0",
        ),
        (
            {"epsilon": -1, "statistics": {"n": {"fn": "count"}}},
            400,
            "epsilon must be greater than 0",
        ),
        (
            {"epsilon": 0.3, "statistics": {"n": {"fn": "count"}}},
            400,
            "above the per-query cap of 0.25",
        ),
        (
            {"epsilon": "lots", "statistics": {"n": {"fn": "count"}}},
            400,
            "epsilon must be a number",
        ),
        (
            {"epsilon": 1e-9, "statistics": {"n": {"fn": "count"}}},
            400,
            "epsilon must be at least 1e-06",
        ),
        ({"statistics": {}}, 400, "statistics must be a non-empty object"),
        ({"statistics": {"n": {"fn": "median"}}}, 400, "unknown fn 'median'"),
        ({"statistics": {"n": {"fn": "count", "column": "sex"}}}, 400, "count takes no column"),
        (
            {"statistics": {"q": {"fn": "quantile", "column": "dosage_mg", "q": 1.5}}},
            400,
            "q must be between 0 and 1",
        ),
        ({"statistics": {"n-1": {"fn": "count"}}}, 400, "'n-1' is not a usable output name"),
        (
            {
                "filters": [{"column": "sex", "op": "~=", "value": "M"}],
                "statistics": {"n": {"fn": "count"}},
            },
            400,
            "unknown op '~='",
        ),
        (
            {
                "filters": [{"column": "sex", "op": "in", "value": []}],
                "statistics": {"n": {"fn": "count"}},
            },
            400,
            "in needs a non-empty list",
        ),
        (
            {
                "filters": [{"column": "sex", "op": "<", "value": "M"}],
                "statistics": {"n": {"fn": "count"}},
            },
            400,
            "compares numbers or dates",
        ),
        ({"filters": "sex=M", "statistics": {"n": {"fn": "count"}}}, 400, "filters must be a list"),
        (
            {
                "group_by": [{"column": "dosage_mg", "bins": [5, 1]}],
                "statistics": {"n": {"fn": "count"}},
            },
            400,
            "bin edges must increase",
        ),
        (
            {"alpha": 0.7, "statistics": {"n": {"fn": "count"}}},
            400,
            "alpha must be between 0 and 0.5",
        ),
        (
            {"sql": "select *", "statistics": {"n": {"fn": "count"}}},
            400,
            "unknown request keys: sql",
        ),
        (
            {"dry_run": "yes", "statistics": {"n": {"fn": "count"}}},
            400,
            "dry_run must be true or false",
        ),
    ],
)
def test_bad_requests_are_refused_with_a_specific_message(
    health: DatasetPolicy, body: dict[str, Any], status: int, message: str
) -> None:
    with pytest.raises(query.QueryError) as refused:
        parse(health, [*HUAXIN, "dosage_mg"], **body)
    assert refused.value.status == status
    assert message in refused.value.message


def test_too_many_groups_are_refused_before_anything_runs(health: DatasetPolicy) -> None:
    with pytest.raises(query.QueryError, match="groups; at most 10,000 per query"):
        parse(
            health,
            group_by=[
                {"column": "dosage_mg", "bins": [100 * i for i in range(101)]},
                {"column": "settlement_amount", "bins": [1000 * i for i in range(101)]},
            ],
            statistics={"n": {"fn": "count"}},
        )


def test_a_body_that_is_not_an_object_is_refused(health: DatasetPolicy) -> None:
    with pytest.raises(query.QueryError, match="must be a JSON object"):
        query.parse([1, 2], health, list(health.fields))


# ------------------------------------------------ filters that could single someone out

COUNT = {"n": {"fn": "count"}}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"filters": [{"column": "person_id", "op": "==", "value": "P-0000001"}]},
            "may not filter or group by 'person_id': it is the privacy unit",
        ),
        (
            {"filters": [{"column": "person_id", "op": "in", "value": ["a", "b"]}]},
            "it is the privacy unit",
        ),
        (
            {"filters": [{"column": "id_card", "op": "==", "value": "510703198001011234"}]},
            "'id_card': it is a direct identifier",
        ),
        ({"group_by": ["person_id"]}, "it is the privacy unit"),
        (
            {"filters": [{"column": "birth_date", "op": "==", "value": "1980-03-12"}]},
            "'birth_date': the policy does not list it as filterable "
            "(filterable columns: sex, district, dosage_mg, settlement_amount)",
        ),
        (
            {"filters": [{"column": "icd11_code", "op": "==", "value": "XN678"}]},
            "the policy does not list it as filterable",
        ),
        (
            {"filters": [{"column": "diagnosis_time", "op": ">=", "value": "2024-05-01T08:00"}]},
            "the policy does not list it as filterable",
        ),
        (
            {"filters": [{"column": "settlement_amount", "op": "==", "value": 12345.67}]},
            "may only be compared with <, <=, > or >=",
        ),
        (
            {"filters": [{"column": "settlement_amount", "op": "in", "value": [12345.67]}]},
            "not matched with in",
        ),
        (
            {"filters": [{"column": "settlement_amount", "op": ">=", "value": 12345.66}]},
            "may only be cut at multiples of 1000 (the policy's step), not at 12345.7",
        ),
        (
            {"group_by": [{"column": "settlement_amount", "bins": [12345.66, 12345.68]}]},
            "group_by[0].bins: 'settlement_amount' may only be cut at multiples of 1000",
        ),
        (
            {"group_by": [{"column": "surgery_record_number", "bins": [1]}]},
            "the policy does not list it as filterable",
        ),
    ],
)
def test_filters_and_keys_that_could_isolate_one_person_are_refused(
    health: DatasetPolicy, body: dict[str, Any], message: str
) -> None:
    with pytest.raises(query.QueryError) as refused:
        parse(health, statistics=COUNT, **body)
    assert refused.value.status == 403
    assert message in refused.value.message


def test_the_privacy_unit_is_refused_even_where_a_policy_lists_it(
    health: DatasetPolicy,
) -> None:
    """Defence in depth: the query check does not trust the policy check alone."""
    careless = filterable(health, "person_id", "phone")
    for column in ("person_id", "phone"):
        with pytest.raises(query.QueryError, match="may not filter or group by"):
            parse(careless, statistics=COUNT, filters=[{"column": column, "op": "is_null"}])


def test_banded_filters_on_filterable_columns_pass(health: DatasetPolicy) -> None:
    spec = parse(
        health,
        statistics=COUNT,
        filters=[
            {"column": "settlement_amount", "op": ">=", "value": 1000},
            {"column": "settlement_amount", "op": "<", "value": 10_000},
            {"column": "sex", "op": "==", "value": "F"},
            {"column": "district", "op": "not_in", "value": ["涪城区"]},
        ],
        group_by=[{"column": "dosage_mg", "bins": [0, 100, 500]}],
    )
    assert [f.value for f in spec.filters[:2]] == [1000, 10_000]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2024-05-01T08:00:00+08:00", "carries a time zone"),
        ("2024-05-01T00:00:00Z", "carries a time zone"),
        ("yesterday", "'yesterday' is not an ISO date"),
    ],
)
def test_times_with_a_zone_are_refused_before_any_debit(
    health: DatasetPolicy, value: str, message: str
) -> None:
    dated = filterable(health, "diagnosis_time", "birth_date")
    for column in ("diagnosis_time", "birth_date"):
        with pytest.raises(query.QueryError) as refused:
            parse(dated, statistics=COUNT, filters=[{"column": column, "op": ">=", "value": value}])
        assert refused.value.status == 400 and message in refused.value.message
    spec = parse(
        dated,
        statistics=COUNT,
        filters=[{"column": "diagnosis_time", "op": ">=", "value": "2024-05-01T08:00"}],
    )
    assert spec.filters[0].value.tzinfo is None
