"""Shuyu's side of a tenant's single-user server, running inside the sandbox.

Nothing here imports the hub side: this package is what the sandbox carries.
``relay`` moves bytes between the sandbox's private network namespace and the few
Unix sockets the spawner hands it; ``sandbox_init`` starts those relays and then the
single-user server; ``egress`` is the jupyter-server extension that refuses every
download route (the launcher, ``singleuser``, makes sure it is on), ``export`` the
Request export page it serves, ``jobs`` the Submit job page and ``lab_api`` the JSON
routes of the JupyterLab extension (``labextension/``, whose Chinese labels are in
``locale/``); ``platform`` is how the server calls the platform.
"""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """jupyter-server's entry point: the egress guard (imported only when a server loads it)."""
    from .egress import EgressGuard

    return [{"module": "shuyu_server.egress", "app": EgressGuard}]
