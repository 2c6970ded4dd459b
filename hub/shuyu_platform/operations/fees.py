"""Fees (R25): a validated pricing policy turns a tenant's monthly usage into a statement.

Public-interest scenarios are free; industrial (commercial) use is charged by unit price,
each item and the month's total capped (``policies/operations/pricing.yaml``,
``c.Shuyu.pricing_file``). Every statement attributes its cost to the source departments
whose datasets the tenant used ("who contributes, benefits"): DP charges to the
department of the dataset queried, the rest in equal shares to the departments of the
datasets the tenant was granted that month.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .. import messages
from ..core.db import session_scope
from ..core.settings import Shuyu
from ..data.policy import DatasetPolicy
from .metering import Usage, tenants_in, usage

Item = Literal[
    "cpu_hours",
    "memory_gb_hours",
    "storage_gb",
    "dp_queries",
    "dp_epsilon",
    "exports_released",
    "sealed_jobs",
    "imports",
]
#: Each billable item: its label (Chinese and English) and unit.
ITEMS: dict[str, tuple[str, str]] = {
    "cpu_hours": ("沙箱计算 Sandbox CPU", "CPU-hour"),
    "memory_gb_hours": ("沙箱内存 Sandbox memory", "GB-hour"),
    "storage_gb": ("存储 Storage", "GB-month"),
    "dp_queries": ("差分隐私查询 DP queries", "query"),
    "dp_epsilon": ("隐私预算 Privacy budget spent", "ε"),
    "exports_released": ("出域成果 Released exports", "export"),
    "sealed_jobs": ("密封作业 Sealed jobs", "job"),
    "imports": ("数据导入 Imports", "import"),
}
#: Items charged to the department of the dataset they used.
PER_DATASET: frozenset[str] = frozenset({"dp_queries", "dp_epsilon"})
CENT = Decimal("0.01")


class PricingError(ValueError):
    """The pricing policy is unreadable or invalid; the message names every problem."""


Money = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=4)]


class Pricing(BaseModel):
    """The pricing policy file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    free_natures: list[Literal["public_interest", "commercial"]]
    unknown_nature: Literal["public_interest", "commercial"]
    prices: dict[Item, Money]
    item_caps: dict[Item, Money] = Field(default_factory=dict)
    monthly_cap: Money | None = None


def load_pricing(path: Path) -> Pricing:
    """Read and validate the pricing policy, or raise :class:`PricingError` naming why."""
    try:
        data = yaml.safe_load(Path(path).read_text("utf-8"))
        return Pricing.model_validate(data)
    except (OSError, yaml.YAMLError) as err:
        raise PricingError(f"{path}: {err}") from None
    except ValidationError as err:
        raise PricingError(
            "\n".join(
                f"{path}: {'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}"
                for e in err.errors()
            )
        ) from None


@dataclass
class Line:
    """One line of a statement."""

    item: str
    label: str
    unit: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal
    capped: bool = False

    @property
    def shown_quantity(self) -> str:
        """The quantity as a person reads it: no trailing zeros, no exponent."""
        return f"{self.quantity.normalize():f}"


@dataclass
class Statement:
    """A tenant's monthly statement: usage, priced lines, total, and who it is owed to."""

    tenant: str
    month: str
    currency: str
    nature: str
    free: bool
    lines: list[Line]
    subtotal: Decimal
    total: Decimal
    capped: bool
    by_department: dict[str, Decimal]
    usage: Usage
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON form (amounts as strings, exact)."""
        out = asdict(self)
        out["usage"] = self.usage.as_dict()
        return _plain(out)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _quantities(used: Usage) -> dict[str, Decimal]:
    return {
        "cpu_hours": Decimal(str(used.cpu_seconds)) / 3600,
        "memory_gb_hours": Decimal(str(used.memory_gb_hours)),
        "storage_gb": Decimal(str(used.storage_gb)),
        "dp_queries": Decimal(used.dp_queries),
        "dp_epsilon": Decimal(str(used.dp_epsilon)),
        "exports_released": Decimal(used.exports_released),
        "sealed_jobs": Decimal(used.sealed_jobs),
        "imports": Decimal(used.imports),
    }


def price(used: Usage, pricing: Pricing, policies: dict[str, DatasetPolicy]) -> Statement:
    """The statement of ``used`` under ``pricing``."""
    nature = used.nature or pricing.unknown_nature
    free = nature in pricing.free_natures
    notes = []
    if not used.nature:
        notes.append(
            messages.text(
                "No approved application on record: charged as {nature}.",
                nature=messages.both(nature),
            )
        )
    if free:
        notes.append(messages.text("Public-interest use is free."))
    for name in used.not_metered:
        notes.append(messages.text("{item}: not metered on this platform yet.", item=name))
    lines = []
    quantities = _quantities(used)
    for item, (label, unit) in ITEMS.items():
        unit_price = Decimal(0) if free else pricing.prices.get(item, Decimal(0))
        quantity = quantities[item].quantize(Decimal("0.000001"), ROUND_HALF_UP)
        amount = (quantity * unit_price).quantize(CENT, ROUND_HALF_UP)
        cap = pricing.item_caps.get(item)
        capped = cap is not None and amount > cap
        if capped:
            amount = Decimal(cap).quantize(CENT)
        lines.append(Line(item, label, unit, quantity, unit_price, amount, capped))
    subtotal = sum((line.amount for line in lines), Decimal(0))
    total = subtotal
    capped = pricing.monthly_cap is not None and subtotal > pricing.monthly_cap
    if capped:
        total = Decimal(pricing.monthly_cap).quantize(CENT)
    statement = Statement(
        tenant=used.tenant,
        month=used.month,
        currency=pricing.currency,
        nature=nature,
        free=free,
        lines=lines,
        subtotal=subtotal,
        total=total,
        capped=capped,
        by_department={},
        usage=used,
        notes=notes,
    )
    statement.by_department = attribute(statement, policies)
    return statement


def _department(policies: dict[str, DatasetPolicy], dataset: str) -> str:
    policy = policies.get(dataset)
    return policy.catalogue.department if policy else f"({dataset})"


def attribute(statement: Statement, policies: dict[str, DatasetPolicy]) -> dict[str, Decimal]:
    """The statement's total split over source departments (see the module docstring),
    scaled down in proportion when a cap applied; the shares add up to the total."""
    used = statement.usage
    shares: dict[str, Decimal] = {}
    for line in statement.lines:
        if not line.amount:
            continue
        if line.item in PER_DATASET and used.datasets:
            weights = {
                d: Decimal(u.queries if line.item == "dp_queries" else str(u.epsilon))
                for d, u in used.datasets.items()
            }
        else:
            weights = {d: Decimal(1) for d in used.granted or sorted(used.datasets)}
        whole = sum(weights.values())
        if not whole:
            shares["(unattributed)"] = shares.get("(unattributed)", Decimal(0)) + line.amount
            continue
        for dataset, weight in weights.items():
            name = _department(policies, dataset)
            shares[name] = shares.get(name, Decimal(0)) + line.amount * weight / whole
    if statement.subtotal and statement.total != statement.subtotal:
        scale = statement.total / statement.subtotal
        shares = {k: v * scale for k, v in shares.items()}
    rounded = {k: v.quantize(CENT, ROUND_HALF_UP) for k, v in sorted(shares.items())}
    drift = statement.total - sum(rounded.values(), Decimal(0))
    if rounded and drift:  # rounding remainder to the largest share, so shares add up
        largest = max(rounded, key=lambda k: rounded[k])
        rounded[largest] += drift
    return rounded


def statement_for(
    settings: Shuyu, tenant: str, month: str, policies: dict[str, DatasetPolicy]
) -> Statement:
    """Meter and price one tenant's month."""
    pricing = load_pricing(Path(settings.pricing_file))
    with session_scope(settings.db_url) as session:
        used = usage(session, settings, tenant, month)
    return price(used, pricing, policies)


def statements(settings: Shuyu, month: str, policies: dict[str, DatasetPolicy]) -> list[Statement]:
    """Every tenant's statement of ``month`` (the operator's view)."""
    with session_scope(settings.db_url) as session:
        tenants = tenants_in(session, month)
    return [statement_for(settings, t, month, policies) for t in tenants]


def statement_csv(statement: Statement) -> bytes:
    """The statement as CSV, UTF-8 with a byte-order mark (so spreadsheet programs on
    Chinese Windows read the Chinese labels right)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["租户 tenant", statement.tenant, "月份 month", statement.month])
    writer.writerow(["性质 nature", statement.nature, "币种 currency", statement.currency])
    writer.writerow(["项目 item", "名称 label", "数量 quantity", "单位 unit", "单价 unit price",
                     "金额 amount", "封顶 capped"])  # fmt: skip
    for line in statement.lines:
        writer.writerow(
            [line.item, line.label, line.quantity, line.unit, line.unit_price, line.amount,
             "yes" if line.capped else ""]
        )  # fmt: skip
    writer.writerow(["subtotal", "小计 Subtotal", "", "", "", statement.subtotal, ""])
    writer.writerow(
        ["total", "合计 Total", "", "", "", statement.total, "yes" if statement.capped else ""]
    )
    for department, amount in statement.by_department.items():
        writer.writerow(["department", department, "", "", "", amount, ""])
    for note in statement.notes:
        writer.writerow(["note", note])
    return ("\ufeff" + out.getvalue()).encode("utf-8")
