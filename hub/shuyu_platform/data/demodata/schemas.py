"""The demo datasets, their titles and Arrow schemas (column order, types, nullability)."""

from __future__ import annotations

from typing import Final

import pyarrow as pa

#: Every dataset this module can generate, in catalogue order.
DATASETS: Final[tuple[str, ...]] = (
    "health_records",
    "enterprise_credit",
    "bus_ridership",
    "social_insurance",
)

#: Chinese catalogue titles of the datasets.
DATASET_TITLES: Final[dict[str, str]] = {
    "health_records": "居民健康档案",
    "enterprise_credit": "企业信用",
    "bus_ridership": "公交线路客流",
    "social_insurance": "社会保险",
}


# =============================================================================== API


def schema(dataset: str) -> pa.Schema:
    """Return the Arrow schema of ``dataset``: column order, types and nullability.

    This is the schema of the tables written. Parquet has no second-resolution
    timestamps, so ``health_records.diagnosis_time`` (``timestamp[s]``) is stored as
    milliseconds and reads back as ``timestamp[ms]``; ``table.cast(schema(dataset))``
    restores the declared types losslessly.
    """
    return _SCHEMAS[_require_dataset(dataset)]


def _require_dataset(dataset: str) -> str:
    if dataset not in _SCHEMAS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    return dataset


# ========================================================================= schemas


def _field(name: str, kind: pa.DataType, description: str, *, nullable: bool = False) -> pa.Field:
    return pa.field(name, kind, nullable=nullable, metadata={"description": description})


def _dataset_schema(dataset: str, fields: list[pa.Field]) -> pa.Schema:
    metadata = {"shuyu.dataset": dataset, "shuyu.title": DATASET_TITLES[dataset]}
    return pa.schema(fields, metadata=metadata)


_STR, _F64, _I32, _DATE = pa.string(), pa.float64(), pa.int32(), pa.date32()

_SCHEMAS: Final[dict[str, pa.Schema]] = {
    "health_records": _dataset_schema(
        "health_records",
        [
            _field("person_id", _STR, "档案编号: P + 11 digits, unique"),
            _field("name", _STR, "姓名"),
            _field("id_card", _STR, "公民身份号码 (GB 11643)"),
            _field("phone", _STR, "手机号码"),
            _field("sex", _STR, "性别: M / F"),
            _field("birth_date", _DATE, "出生日期"),
            _field("district", _STR, "所属区县"),
            _field("diagnosis_time", pa.timestamp("s"), "诊断时间 (local time)"),
            _field("icd11_code", _STR, "ICD-11 诊断编码"),
            _field("imaging_number", _STR, "影像号: MYIMG + year + 8 digits", nullable=True),
            _field("dosage_mg", _F64, "用药剂量 (mg)"),
            _field("settlement_amount", _F64, "医保结算金额 (元)"),
            _field(
                "surgery_record_number", _STR, "手术记录号: SS + year + 7 digits", nullable=True
            ),
        ],
    ),
    "enterprise_credit": _dataset_schema(
        "enterprise_credit",
        [
            _field("credit_code", _STR, "统一社会信用代码 (GB 32100), unique"),
            _field("enterprise_name", _STR, "企业名称"),
            _field("legal_representative", _STR, "法定代表人"),
            _field("legal_rep_id_card", _STR, "法定代表人公民身份号码 (GB 11643)"),
            _field("registered_capital", _F64, "注册资本 (万元)"),
            _field("equity_structure", _STR, "股权结构: 姓名:比例%;..."),
            _field("industry", _STR, "行业门类 (GB/T 4754)"),
            _field("district", _STR, "登记区县"),
            _field("established_date", _DATE, "成立日期"),
            _field("penalty_count", _I32, "行政处罚次数"),
            _field("penalty_amount", _F64, "行政处罚金额合计 (元)"),
        ],
    ),
    "bus_ridership": _dataset_schema(
        "bus_ridership",
        [
            _field("line", _STR, "线路"),
            _field("station", _STR, "站点"),
            _field("service_date", _DATE, "运营日期"),
            _field("hour", pa.int8(), "小时 (6-22)"),
            _field("boardings", _I32, "上车人次"),
            _field("alightings", _I32, "下车人次"),
            _field("district", _STR, "所属区县"),
        ],
    ),
    "social_insurance": _dataset_schema(
        "social_insurance",
        [
            _field("insured_id", _STR, "参保编号: SI + 14 digits, unique"),
            _field("name", _STR, "姓名"),
            _field("id_card", _STR, "公民身份号码 (GB 11643)"),
            _field("insurance_type", _STR, "险种"),
            _field("contribution_base", _F64, "缴费基数 (元/月)"),
            _field("months_paid", _I32, "累计缴费月数"),
            _field("benefit_amount", _F64, "待遇金额 (元)"),
            _field("district", _STR, "参保区县"),
            _field(
                "employer_credit_code",
                _STR,
                "参保单位统一社会信用代码 (GB 32100)",
                nullable=True,
            ),
        ],
    ),
}
