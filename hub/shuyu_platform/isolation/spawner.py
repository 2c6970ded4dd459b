"""Who gets a single-user server, where it works, and the spawners Shuyu ships.

The spawn policy (only merchants of an active tenant get a sandbox; its work folder is
``work/<tenant>/<user>``; every start and stop is audited) lives in :class:`SpawnPolicy`
and is installed as JupyterHub's ``pre_spawn_hook`` / ``post_stop_hook``, so it holds
whichever spawner the operator picks.

:class:`LocalSpawner` runs servers as plain local processes with no isolation at all.
It exists for development until the namespace sandbox spawner takes over the same
``c.Shuyu.spawner`` knob; never expose it to real tenants.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from jupyterhub.spawner import SimpleLocalProcessSpawner
from tornado import web
from traitlets import default

from ..access import suspension
from ..core import audit, roles
from ..core.db import session_scope
from ..core.settings import Shuyu


def role_of(user: Any) -> str | None:
    """The Shuyu role of a hub user (an ``orm.User`` or the hub's ``User`` wrapper)."""
    return roles.shuyu_role([role.name for role in getattr(user, "roles", [])])


def tenant_of(user: Any) -> str | None:
    """The tenant slug of a hub user, from its ``tenant-<slug>`` group."""
    return roles.tenant_of_groups([group.name for group in getattr(user, "groups", [])])


def work_dir(settings: Shuyu, tenant: str, username: str) -> Path:
    """A user's read-write work folder on the host: ``work/<tenant>/<user>``."""
    return settings.zone("work") / tenant / username


class SpawnPolicy:
    """JupyterHub spawn hooks enforcing who may have a sandbox, and auditing it."""

    def __init__(self, settings: Shuyu) -> None:
        self.settings = settings

    def pre_spawn(self, spawner: Any) -> None:
        """Refuse non-merchants; point the server at its work folder; audit the start."""
        user = spawner.user
        role = role_of(user)
        tenant = tenant_of(user)
        db_url = self.settings.db_url
        if role != "merchant" or tenant is None:
            reason = (
                f"only data-merchant accounts have a sandbox; this account's role is {role}"
                if role != "merchant"
                else "this merchant account belongs to no tenant"
            )
            audit.append(
                db_url,
                actor=user.name,
                action="server.start",
                target=spawner.name or "default",
                outcome="denied",
                detail={"reason": reason},
            )
            raise web.HTTPError(403, f"No sandbox: {reason}.")
        with session_scope(db_url) as session:
            suspended = suspension.is_suspended(session, tenant)
            if suspended is not None:
                audit.record(
                    session,
                    actor=user.name,
                    action="server.start",
                    target=spawner.name or "default",
                    tenant=tenant,
                    outcome="denied",
                    detail={"reason": "tenant suspended", "suspension": suspended.reason},
                )
        if suspended is not None:
            raise web.HTTPError(
                403,
                f"No sandbox: tenant {tenant} is suspended since {suspended.changed_at} "
                f"({suspended.reason}). It stays closed until an administrator resumes it.",
            )
        work = work_dir(self.settings, tenant, user.name)
        work.mkdir(parents=True, exist_ok=True, mode=0o700)
        spawner.notebook_dir = str(work)
        if isinstance(spawner, LocalSpawner):
            spawner.home_dir = str(work)
        spawner.environment.update(
            {
                "SHUYU_TENANT": tenant,
                "SHUYU_API_URL": f"{self.settings.service_url}/services/{roles.SERVICE_NAME}/",
                "SHUYU_ALLOW_TERMINALS": "1" if self.settings.allow_terminals else "0",
            }
        )
        audit.append(
            db_url,
            actor=user.name,
            action="server.start",
            target=spawner.name or "default",
            tenant=tenant,
            detail={"spawner": type(spawner).__name__, "work_dir": str(work)},
        )

    def post_stop(self, spawner: Any) -> None:
        """Audit that a server stopped."""
        audit.append(
            self.settings.db_url,
            actor=spawner.user.name,
            action="server.stop",
            target=spawner.name or "default",
            tenant=tenant_of(spawner.user),
            detail={"spawner": type(spawner).__name__},
        )


def singleuser_command() -> list[str]:
    """The single-user server command of the local and sandbox spawners (this venv's).

    Python's isolated mode (``-I``) ignores ``PYTHON*`` variables and the user site and
    keeps the working directory off ``sys.path``, so no file in a home can shadow a
    module of the server.
    """
    return [sys.executable, "-I", "-m", "shuyu_server.singleuser"]


class LocalSpawner(SimpleLocalProcessSpawner):
    """Development spawner: a plain local process in the user's work folder.

    No isolation whatsoever (same uid as the hub, full network, every file the hub can
    read). Only for development; the namespace sandbox spawner replaces it.
    """

    @default("cmd")
    def _default_cmd(self) -> list[str]:
        return singleuser_command()

    def get_args(self) -> list[str]:
        """Single-user server arguments; jupyter-server refuses root unless told."""
        args = super().get_args()
        if os.getuid() == 0:
            args.append("--allow-root")
        return args


#: Spawner short names accepted by ``c.Shuyu.spawner``.
SPAWNERS: dict[str, str] = {
    "sandbox": "shuyu_platform.isolation.sandbox.SandboxSpawner",
    "docker": "shuyu_platform.isolation.docker.ShuyuDockerSpawner",
    "local": "shuyu_platform.isolation.spawner.LocalSpawner",
}
