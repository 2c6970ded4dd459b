"""Turn the operator's ``c.Shuyu`` settings into a complete JupyterHub configuration.

``jupyterhub_config.py`` sets knobs and then calls :func:`configure`. Start-up order is
chosen so that a bad installation stops before anything is written: policies are
validated first (a malformed one exits with the file, line and field), then the state
folders and the platform database are prepared, then the hub is configured.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Any

from jupyterhub.services.service import Service
from traitlets.config import Config

from .core import audit, db, hub_pages, lifetime, roles
from .core.accounts import ShuyuAuthenticator
from .core.settings import Shuyu
from .data.policy import PolicyError, load_policies, policy_digest
from .isolation.spawner import SPAWNERS, SpawnPolicy, role_of

TEMPLATES = Path(__file__).parent / "templates" / "hub"
#: Seconds the hub waits for a managed service to answer at start-up.
SERVICE_START_TIMEOUT = 120


def _setdefault(section: Config, key: str, value: Any) -> None:
    """Set a hub option unless the operator already set it in their config file."""
    if key not in section:
        section[key] = value


#: Security headers of every hub page and API answer.
HUB_HEADERS: dict[str, str] = {
    "Content-Security-Policy": "frame-ancestors 'none'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def default_url(handler: Any) -> str:
    """Where ``/`` sends a signed-in person: their role's landing page."""
    user = handler.current_user
    base = handler.base_url  # the hub's public prefix, "/" by default
    if user is None:
        return f"{base}hub/login"
    role = role_of(user)
    if role == "merchant":
        return f"{base}hub/spawn/{user.name}"
    return roles.landing_url(role, user.name, base)


def operator_token(settings: Shuyu) -> str:
    """The hub API token of the ``shuyu`` command, created on first start (mode 0600)."""
    return _token_file(settings.zone("hub") / "operator-api-token")


def _token_file(path: Path) -> str:
    """A hub API token kept in ``path`` (0600), made on first use."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip()


def supply_tokens(settings: Shuyu, policies: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Each source department's supply account: ``{service name: (department, token)}``.

    The tokens live in ``hub/supply-tokens/<service name>`` (0600); the operator hands
    each to its department's data-exchange connection.
    """
    departments = sorted({p.catalogue.department for p in policies.values()})
    folder = settings.zone("hub") / "supply-tokens"
    return {
        roles.supply_account(d): (d, _token_file(folder / roles.supply_account(d)))
        for d in departments
    }


#: How long the hub waits for a managed service to answer at start-up. JupyterHub's 30 s
#: default is too short for the platform service (it loads the DP engines) on a busy host,
#: and a hub that gives up exits. The option exists from JupyterHub 6.
SERVICE_START_TIMEOUT: dict[str, int] = (
    {"timeout": 180} if "timeout" in Service.class_trait_names() else {}
)


def managed_command(settings: Shuyu, module: str, *args: str) -> list[str]:
    """The command of a managed service: ``module`` behind the lifetime launcher."""
    pidfile = settings.zone("hub") / f"{module.replace('.', '-')}.pid"
    return lifetime.launcher_command(pidfile, module, *args)


def configure(c: Config) -> Shuyu:
    """Validate the installation and fill in every JupyterHub option Shuyu needs."""
    settings = Shuyu(config=c)
    policies_dir = Path(settings.policies_dir)
    try:
        policies = load_policies(policies_dir)
    except PolicyError as err:
        sys.stderr.write(
            f"shuyu: refusing to start: invalid dataset policy in {policies_dir}\n{err}\n"
        )
        raise SystemExit(2) from None

    settings.ensure_zones()
    db.upgrade(settings.db_url)
    audit.append(
        settings.db_url,
        actor="hub",
        actor_kind="system",
        action="policy.load",
        target=str(policies_dir),
        detail={"datasets": sorted(policies), "files": policy_digest(policies_dir)},
    )

    hub_state = settings.zone("hub")
    hub = c.JupyterHub
    hub.bind_url = f"http://{settings.ip}:{settings.port}"
    hub.hub_bind_url = f"http://127.0.0.1:{settings.hub_port}"
    _setdefault(hub, "db_url", f"sqlite:///{hub_state / 'jupyterhub.sqlite'}")
    _setdefault(hub, "cookie_secret_file", str(hub_state / "jupyterhub_cookie_secret"))
    _setdefault(hub, "default_url", default_url)
    _setdefault(hub, "template_paths", [str(TEMPLATES)])
    hub.template_vars = {**hub_pages.template_vars(), **dict(hub.get("template_vars", {}))}
    # JupyterHub's own page templates carry inline script (page data, RequireJS set-up),
    # so the hub's policy cannot forbid inline script; it forbids framing, plugins, base
    # rewriting and forms posting elsewhere. The platform service's pages are strict.
    tornado_settings = dict(hub.get("tornado_settings", {}))
    tornado_settings["headers"] = {**HUB_HEADERS, **dict(tornado_settings.get("headers", {}))}
    hub.tornado_settings = tornado_settings

    proxy = c.ConfigurableHTTPProxy
    proxy.api_url = f"http://127.0.0.1:{settings.proxy_api_port}"
    _setdefault(proxy, "command", [settings.proxy_command])
    _setdefault(proxy, "pid_file", str(hub_state / "proxy.pid"))

    _setdefault(hub, "authenticator_class", ShuyuAuthenticator)
    c.ShuyuAuthenticator.accounts_file = str(settings.accounts_file)
    c.ShuyuAuthenticator.db_url = settings.db_url
    c.ShuyuAuthenticator.lockout_failures = settings.login_lockout_failures
    c.ShuyuAuthenticator.lockout_minutes = settings.login_lockout_minutes
    c.ShuyuAuthenticator.hash_cost = settings.password_hash_cost

    hub.custom_scopes = {name: {"description": text} for name, text in roles.SCOPES.items()}
    load_roles, _managed = roles.hub_roles({})
    hub.load_roles = [
        *load_roles,
        {
            "name": roles.OPERATOR_SERVICE,
            "description": "The shuyu command: stop a suspended tenant's servers",
            "scopes": roles.OPERATOR_SCOPES,
            "services": [roles.OPERATOR_SERVICE],
        },
    ]
    suppliers = supply_tokens(settings, policies)
    if suppliers:
        hub.load_roles.append(
            {
                "name": roles.SUPPLIER_ROLE,
                "description": "Source departments' data-exchange connections: supply raw data",
                "scopes": roles.SUPPLIER_SCOPES,
                "services": sorted(suppliers),
            }
        )

    # Managed services die with this hub, and a restarted hub's services stop any orphan
    # of the previous one first (see core.lifetime).
    lifetime_env = {lifetime.HUB_PID_ENV: str(os.getpid())}
    hub.services = [
        *hub.get("services", []),
        {"name": roles.OPERATOR_SERVICE, "api_token": operator_token(settings)},
        *(
            {"name": name, "api_token": token, "info": {"department": department}}
            for name, (department, token) in sorted(suppliers.items())
        ),
        {
            "name": roles.SERVICE_NAME,
            "display": True,
            "info": {"description": "Catalogue, audit, DP queries and egress review"},
            "url": settings.service_url,
            "command": managed_command(settings, "shuyu_platform.service"),
            "environment": {**settings.service_environment(), **lifetime_env},
            **SERVICE_START_TIMEOUT,
            "oauth_no_confirm": True,
            "oauth_client_allowed_scopes": [*roles.SCOPES, roles.ACCESS_SERVICE],
        },
        {
            "name": roles.DASHBOARDS_SERVICE,
            "display": True,
            "info": {"description": "Published showcase dashboards (Voila)"},
            # No "url": the proxy gets no route to it on the platform's origin. Voila
            # listens on its own origin (see shuyu_platform.dashboards.service).
            "command": managed_command(settings, "shuyu_platform.dashboards.service"),
            "environment": {**settings.service_environment(), **lifetime_env},
            "oauth_client_id": f"service-{roles.DASHBOARDS_SERVICE}",
            "oauth_redirect_uri": f"{settings.dashboards_url}/services/"
            f"{roles.DASHBOARDS_SERVICE}/oauth_callback",
            "oauth_no_confirm": True,
        },
    ]

    if settings.cull_idle_seconds > 0:
        hub.load_roles.append(
            {
                "name": roles.CULLER_SERVICE,
                "description": "Stop idle single-user servers",
                "scopes": roles.CULLER_SCOPES,
                "services": [roles.CULLER_SERVICE],
            }
        )
        hub.services.append(
            {
                "name": roles.CULLER_SERVICE,
                "command": managed_command(
                    settings,
                    "jupyterhub_idle_culler",
                    f"--timeout={settings.cull_idle_seconds}",
                    f"--cull-every={max(5, min(300, settings.cull_idle_seconds // 2))}",
                ),
                "environment": lifetime_env,
            }
        )

    spawner_class = SPAWNERS.get(settings.spawner, settings.spawner)
    hub.spawner_class = spawner_class
    policy = SpawnPolicy(settings)
    spawner = c.Spawner
    spawner.pre_spawn_hook = policy.pre_spawn
    spawner.post_stop_hook = policy.post_stop
    _setdefault(spawner, "server_token_scopes", roles.SERVER_TOKEN_SCOPES)
    _setdefault(spawner, "mem_limit", settings.mem_limit)
    _setdefault(spawner, "cpu_limit", settings.cpu_limit)
    _setdefault(spawner, "default_url", "/lab")
    _setdefault(spawner, "http_timeout", 60)
    _setdefault(spawner, "start_timeout", 120)
    return settings
