"""Who may do what: Shuyu's roles, its custom JupyterHub scopes, and tenants.

The people of ARCHITECTURE.md § People map to JupyterHub RBAC roles. What a role may
do inside Shuyu's own services is a ``custom:shuyu:*`` scope; the services check
these scopes on the hub-issued OAuth token and keep no permission store of their own.

A tenant (a data merchant organisation) is the JupyterHub group ``tenant-<slug>``.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

SERVICE_NAME = "shuyu"
TENANT_GROUP_PREFIX = "tenant-"
TENANT_SLUG = re.compile(r"^[a-z][a-z0-9-]{1,38}[a-z0-9]$")

#: Custom scopes and what they allow (shown by the hub in its token pages).
SCOPES: dict[str, str] = {
    "custom:shuyu:catalogue:read": "Read the public dataset catalogue.",
    "custom:shuyu:grants:read": "See one's own tenant's grants and the state of its views.",
    "custom:shuyu:dp:query": "Ask differential-privacy queries within the tenant's budget.",
    "custom:shuyu:egress:request": "File egress requests for cell outputs and files.",
    "custom:shuyu:egress:review": "Review egress requests; approve or reject them.",
    "custom:shuyu:applications:submit": "Apply for a scenario and its data grants.",
    "custom:shuyu:applications:review": "Compliance review of scenario applications.",
    "custom:shuyu:applications:source-review": "Source-department review of applications.",
    "custom:shuyu:tenants:manage": "Onboard, suspend and resume tenants and datasets.",
    "custom:shuyu:policies:manage": "Edit dataset policies and grants.",
    "custom:shuyu:audit:read": "Read the audit chain and verify it.",
    "custom:shuyu:dashboards:view": "View published showcase dashboards.",
    "custom:shuyu:supply:write": "Supply new raw versions of one's own department's datasets.",
    "custom:shuyu:imports:request": "Request imports of one's own data; see and delete them.",
    "custom:shuyu:imports:review": "Review import requests; approve or reject them.",
}

CATALOGUE_READ = "custom:shuyu:catalogue:read"
GRANTS_READ = "custom:shuyu:grants:read"
DP_QUERY = "custom:shuyu:dp:query"
EGRESS_REQUEST = "custom:shuyu:egress:request"
EGRESS_REVIEW = "custom:shuyu:egress:review"
POLICIES_MANAGE = "custom:shuyu:policies:manage"
APPLICATIONS_SUBMIT = "custom:shuyu:applications:submit"
APPLICATIONS_REVIEW = "custom:shuyu:applications:review"
APPLICATIONS_SOURCE_REVIEW = "custom:shuyu:applications:source-review"
TENANTS_MANAGE = "custom:shuyu:tenants:manage"
AUDIT_READ = "custom:shuyu:audit:read"
SUPPLY_WRITE = "custom:shuyu:supply:write"
IMPORTS_REQUEST = "custom:shuyu:imports:request"
IMPORTS_REVIEW = "custom:shuyu:imports:review"
ACCESS_SERVICE = f"access:services!service={SERVICE_NAME}"
#: The hub-managed Voila service of published showcase dashboards.
DASHBOARDS_SERVICE = "dashboards"
ACCESS_DASHBOARDS = f"access:services!service={DASHBOARDS_SERVICE}"

#: Scopes every signed-in person holds (JupyterHub's default ``user`` role is narrowed
#: to these, so only merchants get a server of their own).
BASE_USER_SCOPES = [
    "read:users:name!user",
    "read:users:groups!user",
    "read:users:activity!user",
    ACCESS_SERVICE,
    ACCESS_DASHBOARDS,
    CATALOGUE_READ,
    "custom:shuyu:dashboards:view",
]

#: The hub service whose token the ``shuyu`` command uses, and what it may do.
OPERATOR_SERVICE = "shuyu-operator"
OPERATOR_SCOPES = ["admin:servers", "list:users", "read:users", "list:groups", "read:groups"]

#: The hub role of the source departments' service accounts (one per department), whose
#: API tokens the government data-exchange connection uses to supply new raw versions.
SUPPLIER_ROLE = "shuyu-supplier"
SUPPLIER_SCOPES = [ACCESS_SERVICE, SUPPLY_WRITE]


def supply_account(department: str) -> str:
    """The hub service name of a source department's supply account (stable, ASCII)."""
    return "supply-" + hashlib.sha256(department.encode("utf-8")).hexdigest()[:10]


#: The idle culler (jupyterhub-idle-culler) and what it needs.
CULLER_SERVICE = "idle-culler"
CULLER_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]

#: Scopes of a sandbox's own token ($JUPYTERHUB_API_TOKEN, which the kernel client
#: uses): the hub's defaults for a server plus what a merchant does from a kernel. The
#: hub grants only the subset the user actually holds.
SERVER_TOKEN_SCOPES = [
    "users:activity!user",
    "access:servers!server",
    "read:users:name!user",
    "read:users:groups!user",
    ACCESS_SERVICE,
    CATALOGUE_READ,
    GRANTS_READ,
    "custom:shuyu:dp:query",
    "custom:shuyu:egress:request",
]

#: Shuyu roles: description, extra scopes, and where the role lands after login.
ROLES: dict[str, dict[str, Any]] = {
    "merchant": {
        "description": "Data merchant staff (数据商): a sandbox of their own, DP queries, "
        "egress requests, scenario applications.",
        "scopes": [
            "self",
            GRANTS_READ,
            "custom:shuyu:dp:query",
            "custom:shuyu:egress:request",
            "custom:shuyu:applications:submit",
            IMPORTS_REQUEST,
        ],
        "landing": "server",
    },
    "reviewer": {
        "description": "Operator compliance staff (运营机构合规核查): review egress requests and "
        "applications; never edit them.",
        "scopes": [
            "custom:shuyu:egress:review",
            "custom:shuyu:applications:review",
            IMPORTS_REVIEW,
        ],
        "landing": "/services/shuyu/",
    },
    "source-reviewer": {
        "description": "Data-source department (数源部门): review applications that touch "
        "their datasets.",
        "scopes": ["custom:shuyu:applications:source-review"],
        "landing": "/services/shuyu/",
    },
    "admin": {
        "description": "Operator administrators: onboard and suspend tenants, edit policies; "
        "never raw data, never a tenant's sandbox.",
        "scopes": [
            "admin-ui",
            "admin:users",
            "admin:groups",
            "admin:servers",
            "list:services",
            "read:services",
            "read:hub",
            "read:roles",
            "read:metrics",
            "custom:shuyu:tenants:manage",
            "custom:shuyu:policies:manage",
        ],
        "landing": "/hub/admin",
    },
    "auditor": {
        "description": "Regulator (主管部门): read the audit chain and reports, nothing else.",
        "scopes": [AUDIT_READ],
        "landing": "/services/shuyu/audit",
    },
    "visitor": {
        "description": "The public: view published dashboards and the catalogue.",
        "scopes": [],
        "landing": "/services/shuyu/catalogue",
    },
}

#: Hub role names that differ from the Shuyu role name. JupyterHub's built-in ``admin``
#: role cannot be redefined, and it grants ``access:servers`` (opening any tenant's
#: sandbox), which Shuyu's administrators must not have; so they get their own role.
HUB_ROLE_NAMES = {"admin": "shuyu-admin"}


def hub_role(role: str) -> str:
    """The JupyterHub role name of a Shuyu role."""
    return HUB_ROLE_NAMES.get(role, role)


def shuyu_role(hub_role_names: set[str] | list[str]) -> str | None:
    """The Shuyu role among a user's JupyterHub role names (None if none)."""
    held = set(hub_role_names)
    for name in ROLES:
        if hub_role(name) in held:
            return name
    return None


def tenant_group(slug: str) -> str:
    """The JupyterHub group name of a tenant."""
    return f"{TENANT_GROUP_PREFIX}{slug}"


def tenant_of_groups(groups: list[str] | set[str]) -> str | None:
    """The tenant slug among a user's group names, or None if the user has none."""
    tenants = sorted(
        g[len(TENANT_GROUP_PREFIX) :] for g in groups if g.startswith(TENANT_GROUP_PREFIX)
    )
    return tenants[0] if tenants else None


def role_definition(role: str) -> dict[str, Any]:
    """The JupyterHub role dict of a Shuyu role, without members.

    Every Shuyu role carries the base scopes itself: JupyterHub's ``sync_roles`` strips
    the default ``user`` role from anyone whose roles the authenticator manages.
    """
    spec = ROLES[role]
    return {
        "name": hub_role(role),
        "description": spec["description"],
        "scopes": [*BASE_USER_SCOPES, *spec["scopes"]],
    }


def hub_roles(members: dict[str, list[str]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Role definitions for the hub: ``(load_roles, managed_roles)``.

    ``members`` maps a Shuyu role name to its user names. The narrowed built-in
    ``user`` role (for hub users with no Shuyu role) goes to ``load_roles``; Shuyu's
    own roles, with their members, are managed by the authenticator.
    """
    load_roles: list[dict[str, Any]] = [
        {
            "name": "user",
            "description": "Hub users without a Shuyu role",
            "scopes": BASE_USER_SCOPES,
        },
    ]
    managed = [{**role_definition(name), "users": sorted(members.get(name, []))} for name in ROLES]
    return load_roles, managed


def landing_url(role: str | None, username: str, base_url: str = "/") -> str:
    """Where a person of ``role`` lands after logging in."""
    landing = ROLES.get(role or "", {}).get("landing", "/services/shuyu/")
    if landing == "server":
        return f"{base_url.rstrip('/')}/user/{username}/"
    return f"{base_url.rstrip('/')}{landing}"
