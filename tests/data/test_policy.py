"""Dataset policies: the shipped ones load, and every malformed one is located precisely.

Bad policies are made by copying the shipped files into a temporary folder and editing
their text, so the line numbers asserted are those an operator would see.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from shuyu_platform.data.policy import (
    GRADE_DESCRIPTIONS,
    DatasetPolicy,
    FieldPolicy,
    PolicyError,
    Problem,
    load_policies,
    load_policy,
    policy_digest,
)

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "policies"
DATASETS = {"health_records", "enterprise_credit", "bus_ridership", "social_insurance"}
NINE_DISTRICTS = [
    "涪城区", "游仙区", "安州区", "三台县", "盐亭县",
    "梓潼县", "北川羌族自治县", "平武县", "江油市",
]  # fmt: skip


# ----------------------------------------------------------------------------- helpers


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    """A writable copy of the shipped policy files."""
    folder = tmp_path / "policies"
    folder.mkdir()
    for path in SHIPPED.glob("*.yaml"):
        shutil.copy(path, folder / path.name)
    return folder


def edit(path: Path, old: str, new: str) -> int:
    """Replace the one occurrence of ``old`` by ``new``; return the line where it starts."""
    text = path.read_text("utf-8")
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {path.name}"
    at = text.index(old)
    path.write_text(text[:at] + new + text[at + len(old) :], "utf-8")
    return text.count("\n", 0, at) + 1


def line_of(path: Path, needle: str) -> int:
    """The 1-based number of the one line of ``path`` that contains ``needle``."""
    hits = [n for n, line in enumerate(path.read_text("utf-8").splitlines(), 1) if needle in line]
    assert len(hits) == 1, f"{needle!r} is on lines {hits} of {path.name}"
    return hits[0]


def problems_of(folder: Path) -> list[Problem]:
    with pytest.raises(PolicyError) as caught:
        load_policies(folder)
    error = caught.value
    assert str(error) == "\n".join(str(p) for p in error.problems)
    return error.problems


def only_problem(folder: Path) -> Problem:
    problems = problems_of(folder)
    assert len(problems) == 1, "\n".join(map(str, problems))
    return problems[0]


def assert_at(problem: Problem, file: Path, line: int | None, path: str) -> None:
    """The problem names exactly this file, line and key path (also in its text)."""
    assert (problem.file, problem.line, problem.path) == (str(file), line, path), str(problem)
    where = f"{file}:{line}" if line is not None else str(file)
    assert str(problem).startswith(f"{where}: {path}: " if path else f"{where}: ")


# ------------------------------------------------------------------ shipped policies


def test_the_four_shipped_policies_load_and_cross_validate() -> None:
    policies = load_policies(SHIPPED)
    assert set(policies) == DATASETS
    for name, policy in policies.items():
        assert policy.dataset == name
        assert policy.raw_file == f"{name}.parquet"
        assert set(policy.catalogue.provision_modes) >= {"masked_view", "dp_query", "synthetic"}
        unit = policy.privacy.privacy_unit
        assert unit is None or unit in policy.fields
        for qi in policy.privacy.quasi_identifiers:
            assert qi in policy.visible_fields()
        for field_name, field in policy.fields.items():
            assert field.title, field_name
            if field.grade == "L4":
                assert field.masking.rule == "drop" and not field.visible
            if field.identifier:
                assert field.masking.rule != "keep", field_name
    assert "api" in policies["bus_ridership"].catalogue.provision_modes
    assert policies["bus_ridership"].privacy.privacy_unit is None


def test_shipped_policies_match_the_requested_masking() -> None:
    policies = load_policies(SHIPPED)
    health = policies["health_records"]
    assert health.privacy.privacy_unit == "person_id"
    # The insurer's attacker model: what it knows, and the diagnosis it must not learn.
    assert health.privacy.quasi_identifiers == (
        "sex",
        "birth_date",
        "district",
        "settlement_amount",
    )
    assert health.privacy.sensitive_attributes == ("icd11_code",)
    assert health.privacy.l_diversity is not None and health.privacy.l_diversity.l >= 2
    assert health.privacy.k_anonymity == 5
    settlement = health.fields["settlement_amount"].masking
    assert settlement.rule == "bucket" and settlement.edges[-1] == float("inf")
    assert settlement.values is not None and len(settlement.values) == len(settlement.edges) - 1
    assert len(health.fields["settlement_amount"].hierarchy) >= 2
    assert health.fields["icd11_code"].masking.prefix_length == 2
    assert health.fields["district"].dp is not None
    assert list(health.fields["district"].dp.public_keys or ()) == NINE_DISTRICTS
    assert set(health.identifier_fields()) >= {"name", "id_card", "phone"}
    assert set(health.fields) - set(health.visible_fields()) == {"name", "id_card", "phone"}

    enterprise = policies["enterprise_credit"]
    capital = enterprise.fields["registered_capital"].masking
    assert capital.rule == "bucket" and capital.labels is not None
    assert len(capital.labels) == len(capital.edges) - 1
    assert enterprise.fields["equity_structure"].masking.rule == "drop"
    assert enterprise.privacy.k_anonymity == 3

    social = policies["social_insurance"]
    assert social.catalogue.update_frequency == "monthly"
    assert social.fields["insurance_type"].dp is not None
    assert len(social.fields["insurance_type"].dp.public_keys or ()) == 7
    assert set(social.identifier_fields()) == {
        "insured_id", "name", "id_card", "employer_credit_code",
    }  # fmt: skip


def test_policy_fields_are_exactly_the_generated_columns() -> None:
    """The generator writes the raw files; every column has a policy, of a matching type."""
    pytest.importorskip("pyarrow")
    import pyarrow as pa

    from shuyu_platform.data import demodata

    kinds = {
        "string": pa.types.is_string,
        "category": pa.types.is_string,
        "int": pa.types.is_integer,
        "float": pa.types.is_floating,
        "date": pa.types.is_date,
        "timestamp": pa.types.is_timestamp,
    }
    for name, policy in load_policies(SHIPPED).items():
        schema = demodata.schema(name)
        assert list(policy.fields) == schema.names, name
        for column in schema:
            field = policy.fields[column.name]
            assert kinds[field.type](column.type), (name, column.name, column.type)
            assert field.nullable == column.nullable, (name, column.name)


def test_catalogue_entry_is_json_and_hides_every_l4_field() -> None:
    for policy in load_policies(SHIPPED).values():
        entry = policy.catalogue_entry()
        assert json.loads(json.dumps(entry, ensure_ascii=False)) == entry
        assert entry["dataset"] == policy.dataset
        for key in ("title", "title_en", "department", "summary", "update_frequency"):
            assert isinstance(entry[key], str) and entry[key], key
        assert entry["provision_modes"]
        assert [f["name"] for f in entry["fields"]] == list(policy.fields)
        for field in entry["fields"]:
            assert set(field) == {
                "name", "title", "description", "type", "grade", "grade_label", "masked",
                "visible",
            }  # fmt: skip
            assert GRADE_DESCRIPTIONS[field["grade"]]["zh"] in field["grade_label"]
            if field["grade"] == "L4":
                assert field["visible"] is False and field["masked"] == "drop"
    health = load_policies(SHIPPED)["health_records"].catalogue_entry()
    fields = {f["name"]: f for f in health["fields"]}
    assert health["title"] == "居民健康档案" and health["department"] == "市卫生健康委员会"
    assert fields["id_card"] == fields["id_card"] | {"grade": "L4", "visible": False}
    assert fields["birth_date"]["masked"] == "generalize" and fields["birth_date"]["visible"]


def test_grade_descriptions_have_chinese_and_english_labels() -> None:
    assert {g: d["zh"] for g, d in GRADE_DESCRIPTIONS.items()} == {
        "L1": "公开", "L2": "内部", "L3": "敏感", "L4": "禁止",
    }  # fmt: skip
    assert GRADE_DESCRIPTIONS["L4"]["en"] == "forbidden"


def test_masking_defaults_by_grade() -> None:
    base = {"title": "字段", "type": "string"}
    assert FieldPolicy.model_validate({**base, "grade": "L1"}).masking.rule == "keep"
    assert FieldPolicy.model_validate({**base, "grade": "L2"}).masking.rule == "keep"
    assert FieldPolicy.model_validate({**base, "grade": "L4"}).masking.rule == "drop"
    date = {"title": "日期", "type": "date", "grade": "L3"}
    banded = FieldPolicy.model_validate(
        {**date, "masking": {"rule": "generalize", "to": "age_band"}}
    )
    assert banded.masking.band_years == 10


def test_load_policy_reads_one_file_and_the_digest_hashes_every_file() -> None:
    policy = load_policy(SHIPPED / "bus_ridership.yaml")
    assert isinstance(policy, DatasetPolicy) and policy.dataset == "bus_ridership"
    digest = policy_digest(SHIPPED)
    assert set(digest) == {f"{name}.yaml" for name in DATASETS}
    for name, value in digest.items():
        assert value == hashlib.sha256((SHIPPED / name).read_bytes()).hexdigest()


def test_policies_are_immutable() -> None:
    policy = load_policy(SHIPPED / "health_records.yaml")
    with pytest.raises(ValueError, match="frozen"):
        policy.fields["sex"].grade = "L1"  # type: ignore[misc]


# ------------------------------------------------------------------- located errors


def test_unknown_key_is_reported_with_a_suggestion(policies: Path) -> None:
    target = policies / "health_records.yaml"
    line = edit(target, "    description: M 男，F 女", "    descripton: M 男，F 女")
    problem = only_problem(policies)
    assert_at(problem, target, line, "fields.sex.descripton")
    assert "did you mean 'description'" in problem.message


def test_wrong_type(policies: Path) -> None:
    target = policies / "health_records.yaml"
    line = edit(target, "  k_anonymity: 5", "  k_anonymity: five")
    problem = only_problem(policies)
    assert_at(problem, target, line, "privacy.k_anonymity")
    assert "valid integer" in problem.message


def test_unknown_masking_rule(policies: Path) -> None:
    target = policies / "health_records.yaml"
    line = edit(target, '{rule: pseudonymize, prefix: "P-"}', '{rule: hashh, prefix: "P-"}')
    problem = only_problem(policies)
    assert_at(problem, target, line, "fields.person_id.masking.rule")
    assert "'hashh'" in problem.message and "'pseudonymize'" in problem.message


def test_l3_field_must_state_its_masking(policies: Path) -> None:
    target = policies / "health_records.yaml"
    edit(target, "    masking: {rule: generalize, to: year}\n", "")
    problem = only_problem(policies)
    assert_at(problem, target, line_of(target, "  birth_date:"), "fields.birth_date.masking")
    assert "L3" in problem.message and "masking" in problem.message


def test_l4_field_cannot_be_kept(policies: Path) -> None:
    target = policies / "social_insurance.yaml"
    old = (
        "身份号码\n    type: string\n    grade: L4\n    identifier: true\n    masking: {rule: drop}"
    )
    # Not an identifier, so that keeping it breaks only the L4 rule.
    new = old.replace("true", "false").replace("drop", "keep")
    line = edit(target, old, new) + 4
    problem = only_problem(policies)
    assert_at(problem, target, line, "fields.id_card.masking.rule")
    assert "L4" in problem.message and "drop" in problem.message


def test_round_on_a_string_field(policies: Path) -> None:
    target = policies / "health_records.yaml"
    line = edit(
        target,
        "masking: {rule: partial, keep_first: 5, keep_last: 2}",
        "masking: {rule: round, to: 10}",
    )
    problem = only_problem(policies)
    assert_at(problem, target, line, "fields.imaging_number.masking.rule")
    assert "string" in problem.message


def test_bucket_edges_must_increase(policies: Path) -> None:
    target = policies / "enterprise_credit.yaml"
    line = edit(target, "edges: [0, 100, 500, 1000,", "edges: [0, 100, 500, 500,")
    problem = only_problem(policies)
    assert_at(problem, target, line, "fields.registered_capital.masking.edges.3")
    assert "strictly increasing" in problem.message


def test_generalize_parameters(policies: Path) -> None:
    target = policies / "health_records.yaml"
    # age_band without band_years is fine: it defaults to ten years.
    edit(target, "{rule: generalize, to: year}", "{rule: generalize, to: age_band}")
    banded = load_policies(policies)["health_records"].fields["birth_date"].masking
    assert (banded.to, banded.band_years) == ("age_band", 10)
    # grid without grid_degrees is not.
    line = edit(target, "masking: {rule: round, to: 0.5}", "masking: {rule: generalize, to: grid}")
    problem = only_problem(policies)
    assert_at(problem, target, line, "fields.dosage_mg.masking.grid_degrees")
    assert "grid" in problem.message


def test_out_of_range_parameter(policies: Path) -> None:
    target = policies / "health_records.yaml"
    line = edit(target, "{rule: round, to: 0.5}", "{rule: round, to: 0}")
    problem = only_problem(policies)
    assert_at(problem, target, line, "fields.dosage_mg.masking.to")
    assert problem.message == "Input should be greater than 0"


def test_quasi_identifier_must_name_a_field(policies: Path) -> None:
    target = policies / "health_records.yaml"
    line = edit(
        target, "[sex, birth_date, district, settlement_amount]", "[sex, birth_date, county]"
    )
    problem = only_problem(policies)
    assert_at(problem, target, line, "privacy.quasi_identifiers.2")
    assert "'county'" in problem.message


def test_quasi_identifier_must_be_visible(policies: Path) -> None:
    target = policies / "health_records.yaml"
    line = edit(target, "[sex, birth_date, district, settlement_amount]", "[sex, phone, district]")
    problem = only_problem(policies)
    assert_at(problem, target, line, "privacy.quasi_identifiers.1")
    assert "dropped" in problem.message


def test_duplicate_key_in_a_mapping(policies: Path) -> None:
    target = policies / "health_records.yaml"
    first = line_of(target, "M 男，F 女") + 2  # sex: title, description, type, grade
    edit(target, "    grade: L2\n    dp: {public_keys: [M, F]}",
         "    grade: L2\n    grade: L1\n    dp: {public_keys: [M, F]}")  # fmt: skip
    problem = only_problem(policies)
    assert_at(problem, target, first + 1, "fields.sex.grade")
    assert f"duplicate key 'grade' (first at line {first})" in problem.message


def test_yaml_syntax_error_uses_the_parser_mark(policies: Path) -> None:
    target = policies / "health_records.yaml"
    line = edit(target, "    dp: {public_keys: [M, F]}", "    dp: {public_keys: [M, F}")
    problem = only_problem(policies)
    assert_at(problem, target, line, "")
    assert problem.message.startswith("invalid YAML:")


def test_unsafe_yaml_tags_are_refused(policies: Path) -> None:
    target = policies / "bus_ridership.yaml"
    line = edit(target, "version: 1", "version: !!python/object/apply:os.getpid []")
    problem = only_problem(policies)
    assert_at(problem, target, line, "")
    assert "python/object/apply" in problem.message


def test_file_name_must_match_the_dataset(policies: Path) -> None:
    target = policies / "bus_ridership.yaml"
    line = edit(target, "dataset: bus_ridership", "dataset: bus_lines")
    problem = only_problem(policies)
    assert_at(problem, target, line, "dataset")
    assert "'bus_lines'" in problem.message and "bus_ridership.yaml" in problem.message


def test_two_files_cannot_define_the_same_dataset(policies: Path) -> None:
    second = policies / "health_records.yml"
    shutil.copy(policies / "health_records.yaml", second)
    problem = only_problem(policies)
    assert_at(problem, second, line_of(second, "dataset: health_records"), "dataset")
    assert str(policies / "health_records.yaml") in problem.message


def test_empty_folder(tmp_path: Path) -> None:
    problem = only_problem(tmp_path)
    assert_at(problem, tmp_path, None, "")
    assert "no policy files" in problem.message


def test_missing_folder(tmp_path: Path) -> None:
    assert_at(only_problem(tmp_path / "nowhere"), tmp_path / "nowhere", None, "")


def test_empty_file(policies: Path) -> None:
    target = policies / "bus_ridership.yaml"
    target.write_text("# nothing yet\n", "utf-8")
    problem = only_problem(policies)
    assert_at(problem, target, 1, "")
    assert "empty" in problem.message


def test_every_problem_of_every_file_in_one_error(policies: Path) -> None:
    health = policies / "health_records.yaml"
    social = policies / "social_insurance.yaml"
    typo = edit(health, "    description: M 男，F 女", "    descripton: M 男，F 女")
    rule = edit(health, "masking: {rule: round, to: 0.5}", "masking: {rule: top_coded}")
    negative = edit(social, "masking: {rule: round, to: 60}", "masking: {rule: round, to: -60}")
    duplicate = edit(social, "  k_anonymity: 5\n", "  k_anonymity: 5\n  k_anonymity: 6\n") + 1
    problems = problems_of(policies)
    assert [(p.file, p.line, p.path) for p in problems] == [
        (str(health), typo, "fields.sex.descripton"),
        (str(health), rule, "fields.dosage_mg.masking.rule"),
        (str(social), negative, "fields.months_paid.masking.to"),
        (str(social), duplicate, "privacy.k_anonymity"),
    ]
    assert "top_coded" in problems[1].message
    lines = str(PolicyError(problems)).splitlines()
    assert lines[2] == f"{social}:{negative}: fields.months_paid.masking.to: " + (
        "Input should be greater than 0"
    )


def test_load_policy_raises_with_every_problem_of_the_file(tmp_path: Path) -> None:
    target = tmp_path / "health_records.yaml"
    text = (SHIPPED / "health_records.yaml").read_text("utf-8")
    data = yaml.safe_load(text)
    data["version"] = 0
    data["raw_file"] = "../health_records.parquet"
    target.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy(target)
    assert {(p.path, p.line) for p in caught.value.problems} == {
        ("version", line_of(target, "version: 0")),
        ("raw_file", line_of(target, "raw_file:")),
    }


# ====================================================================== attacker model


def test_a_sensitive_attribute_must_be_a_visible_field_and_no_quasi_identifier(
    policies: Path,
) -> None:
    target = policies / "health_records.yaml"
    line = edit(target, "sensitive_attributes: [icd11_code]", "sensitive_attributes: [sex]")
    problem = only_problem(policies)
    assert_at(problem, target, line, "privacy.sensitive_attributes.0")
    assert "also a quasi-identifier" in problem.message
    edit(target, "sensitive_attributes: [sex]", "sensitive_attributes: [phone]")
    assert "dropped from every view" in only_problem(policies).message


def test_sensitive_attributes_need_an_l_diversity(policies: Path) -> None:
    target = policies / "health_records.yaml"
    edit(target, "  l_diversity: {l: 3, measure: distinct}\n", "")
    problem = only_problem(policies)
    assert problem.path == "privacy.l_diversity"
    assert "need an l_diversity" in problem.message


def test_a_hierarchy_level_must_generalise_and_fit_the_field(policies: Path) -> None:
    target = policies / "health_records.yaml"
    line = edit(
        target,
        "      - {rule: generalize, to: year, years: 20}",
        "      - {rule: round, to: 10}",
    )
    problem = only_problem(policies)
    assert_at(problem, target, line, "fields.birth_date.hierarchy.2.rule")
    assert "round applies to float or int fields" in problem.message
    line = edit(target, "      - {rule: round, to: 10}", "      - {rule: keep}")
    problem = only_problem(policies)
    assert problem.path == "fields.birth_date.hierarchy.2.rule"
    assert "keep does not" in problem.message


def test_risk_limits_are_shares(policies: Path) -> None:
    target = policies / "health_records.yaml"
    line = edit(target, "    max_suppressed_share: 0.05\n", "    max_suppressed_share: 1.5\n")
    problem = only_problem(policies)
    assert_at(problem, target, line, "privacy.risk_limits.max_suppressed_share")
