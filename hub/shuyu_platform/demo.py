"""The demo installation: known accounts, generated data, and the welcome banner.

Passwords here are public on purpose (they are printed by ``make demo``); only their
bcrypt hashes are stored. Nothing in this module is used by a production install.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .access import grants
from .core import db
from .core.accounts import AccountStore
from .core.settings import Shuyu
from .data.policy import load_policies


@dataclass(frozen=True)
class DemoAccount:
    """One demo login and what it is for."""

    name: str
    role: str
    real_name: str
    tenant: str | None = None
    departments: tuple[str, ...] = ()

    @property
    def password(self) -> str:
        """The demo password (public)."""
        return f"{self.name}-demo-2026"


DEMO_TENANTS = {
    "kangning": "康宁健康保险科技有限公司 (smart underwriting)",
    "huaxin": "华信企业征信服务有限公司 (enterprise credit)",
}

DEMO_ACCOUNTS: tuple[DemoAccount, ...] = (
    DemoAccount("alice", "merchant", "李明", "kangning"),
    DemoAccount("carol", "merchant", "陈静", "kangning"),
    DemoAccount("bob", "merchant", "王强", "huaxin"),
    DemoAccount("rita", "reviewer", "赵丽"),
    DemoAccount(  # in the demo, one source reviewer speaks for every source department
        "sam",
        "source-reviewer",
        "孙涛",
        departments=(
            "市卫生健康委员会",
            "市人力资源和社会保障局",
            "市市场监督管理局",
            "市交通运输局",
        ),
    ),
    DemoAccount("ada", "admin", "周敏"),
    DemoAccount("audrey", "auditor", "吴刚"),
    DemoAccount("victor", "visitor", "郑华"),
)


def create_demo_accounts(settings: Shuyu) -> list[DemoAccount]:
    """Write (or reset) every demo account into the hub's accounts file."""
    store = AccountStore(settings.accounts_file, settings.password_hash_cost)
    for acc in DEMO_ACCOUNTS:
        store.add(
            acc.name,
            real_name=acc.real_name,
            role=acc.role,
            password=acc.password,
            tenant=acc.tenant,
            departments=acc.departments,
            replace=True,
        )
    return list(DEMO_ACCOUNTS)


#: (tenant, dataset, fields or None for every visible one, row filter) of the demo.
DEMO_GRANTS: tuple[tuple[str, str, list[str] | None, dict[str, list[Any]]], ...] = (
    ("kangning", "health_records", None, {}),
    ("kangning", "social_insurance", None, {}),
    ("huaxin", "enterprise_credit", None, {}),
    (
        "huaxin",
        "health_records",
        ["person_id", "sex", "birth_date", "district", "icd11_code"],
        {"district": ["涪城区", "游仙区"]},
    ),
)


def create_demo_grants(settings: Shuyu, *, actor: str = "operator:demo") -> None:
    """Issue the demo grants that are not active yet, then build views and synthetic twins.

    Re-running it keeps existing grants (so pseudonyms and budgets stay) and rebuilds
    the views from the current raw data.
    """
    from .access.tenant_views import build_tenant
    from .data.synthetic import build_all

    policies = load_policies(Path(settings.policies_dir))
    with db.session_scope(settings.db_url) as session:
        for tenant, dataset, fields, row_filter in DEMO_GRANTS:
            if not grants.active(session, tenant=tenant, dataset=dataset):
                grants.issue(
                    session,
                    policies[dataset],
                    tenant=tenant,
                    fields=fields,
                    row_filter=row_filter,
                    scenario="演示场景",
                    actor=actor,
                )
    for tenant in sorted({t for t, *_ in DEMO_GRANTS}):
        build_tenant(settings, tenant, actor=actor, policies=policies)
    build_all(policies, settings.zone("raw"), settings.zone("synthetic"))


def banner(settings: Shuyu) -> str:
    """What ``make demo`` prints before the hub starts: where to log in, as whom."""
    lines = [
        "",
        "  数域 Shuyu demo",
        f"  Log in at {settings.public_hub_url}/hub/login   (state in {settings.home})",
        "",
        f"  {'user':<8} {'password':<20} {'role':<16} tenant",
    ]
    for acc in DEMO_ACCOUNTS:
        tenant = f"{acc.tenant}: {DEMO_TENANTS[acc.tenant]}" if acc.tenant else ""
        lines.append(f"  {acc.name:<8} {acc.password:<20} {acc.role:<16} {tenant}")
    lines += [
        "",
        f"  Open to anyone: {settings.public_hub_url}/services/shuyu/join (merchant registration),",
        f"                  {settings.public_hub_url}/services/shuyu/products (product register).",
        f"  Dashboards:     {settings.dashboards_url}/services/dashboards/ (signed in).",
        "  Example notebooks to upload into a sandbox: notebooks/ (see its README).",
        "",
        "  Stop with Ctrl-C.",
        "",
    ]
    return "\n".join(lines)
