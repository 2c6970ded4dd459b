"""Start ``jupyterhub-singleuser`` without a second and a half of wasted imports.

``jsonschema`` imports ``rfc3987_syntax`` whenever it is installed (``nbformat`` pulls it
in through ``jsonschema[format-nongpl]``), and that module compiles about 35 Lark
parsers at import time: on this project's machines it is 1.4 s of a server's ~4 s start,
for the ``iri`` / ``iri-reference`` formats that no Jupyter schema uses. Marking the
module absent before anything imports ``jsonschema`` makes ``jsonschema`` skip those two
format checks and nothing else (upstream: python-jsonschema/jsonschema#1428,
jupyter-server/jupyter_server#1559). Every spawner runs servers through this module:
``python -m shuyu_server.singleuser [server arguments]``.

It also enforces the server's extension set after every configuration file is read
(the tenant owns ``~/.jupyter``, so a config file there must not be able to change it):
the egress guard (:mod:`shuyu_server.egress`) on; Voila, the language-server proxy and,
unless ``SHUYU_ALLOW_TERMINALS=1``, terminals off. In the sandbox that is a second
layer: the spawner runs it in isolated mode (``python -I``) from a folder the tenant
cannot write, with Jupyter's configuration paths on read-only folders only, so no file
of the tenant's is ever read as configuration or imported. The process marks itself
not dumpable, so its kernels (same uid) cannot read or write its memory.

What each start costs matters: a host runs dozens of servers and starts them in bursts.
Besides ``rfc3987_syntax``, three more things that a server imports or runs at start do
nothing for it, and :func:`skip_hub_only_work` removes them (together about 0.6 s of CPU
and 24 MB of memory of a ~1.5 s start; ``python -m benchmarks spawn`` measures it):

* ``jupyterhub.singleuser`` imports ``jupyterhub.log`` for its request logger, which
  imports the hub's page handlers (for one ``isinstance`` test against its health-check
  handler) and the hub's metrics, and through them the hub's database layer with
  SQLAlchemy's ORM and Alembic. A server is never the hub: the health-check handler
  gets a stand-in class no handler of a server is an instance of, and the hub's
  per-request metrics a no-op (the hub and the platform service keep their own). The
  hub's ``orm`` and ``roles`` modules, which ``jupyterhub.scopes`` uses only with a
  database session, load on their first use (:class:`DeferredModule`), i.e. never.
* ``jupyterlab.labapp`` asks ``node`` for Yarn's configuration when it is imported,
  only to learn the npm registry's address. A sandbox has no network, so the answer
  is never used; the question cost a Node.js process per start.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from typing import Any

from .sandbox_init import make_undumpable

#: Extensions forced on (True) or off (False) whatever the configuration files say.
FORCED_EXTENSIONS = {
    "shuyu_server": True,
    "voila.server_extension": False,
    "jupyter_lsp": False,
}


def enforce_extensions() -> None:
    """Make every ServerApp start with :data:`FORCED_EXTENSIONS`, after its config is read.

    Also: a kernel started without a path (``POST api/kernels``) works in the server's
    root folder (the home), not in the server's own working directory, which is a
    folder the tenant cannot write.
    """
    from jupyter_server.serverapp import ServerApp
    from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager

    class HomeKernelManager(AsyncMappingKernelManager):
        """Kernels without a path start in the root folder rather than the server's cwd."""

        async def start_kernel(self, *, path: str | None = None, **kwargs: object) -> str:
            return await super().start_kernel(path="" if path is None else path, **kwargs)

    original = ServerApp.init_server_extensions
    if getattr(original, "enforced", False):  # once per process (the server template's)
        return

    def init_server_extensions(self: ServerApp) -> None:
        # Read now, not when enforced: a server forked from the template has its own.
        terminals = os.environ.get("SHUYU_ALLOW_TERMINALS") == "1"
        forced = {**FORCED_EXTENSIONS, "jupyter_server_terminals": terminals}
        self.jpserver_extensions = {**self.jpserver_extensions, **forced}
        self.terminals_enabled = terminals
        self.config.EgressGuard.allow_terminals = terminals
        self.kernel_manager_class = HomeKernelManager
        original(self)

    init_server_extensions.enforced = True  # type: ignore[attr-defined]
    ServerApp.init_server_extensions = init_server_extensions  # type: ignore[method-assign]


class DeferredModule(types.ModuleType):
    """A module imported for real only when one of its attributes is first used.

    Installed in ``sys.modules`` (and on its parent package) under the real module's
    name, it satisfies ``import x`` and ``from pkg import x`` without running ``x``;
    the first attribute read imports the real module, which replaces this one in
    ``sys.modules``, and answers from it (as does every later read).
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        parent, _, child = name.rpartition(".")
        sys.modules[name] = self
        if parent:
            setattr(importlib.import_module(parent), child, self)

    def __getattr__(self, attr: str) -> Any:
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        return getattr(importlib.import_module(name), attr)


class _NotTheHub:
    """Stand-in for the hub's health-check handler: no handler of a server is one."""


#: Hub modules a single-user server imports but never uses, loaded only on first use.
DEFERRED_HUB_MODULES = ("jupyterhub.orm", "jupyterhub.roles")


def skip_hub_only_work() -> None:
    """Keep the hub's own machinery and the npm registry lookup out of a server's start.

    See the module's docstring for what each step avoids and why nothing is lost.
    Must run before ``jupyterhub.singleuser`` and ``jupyterlab`` are imported.
    """
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[assignment]
    for name in DEFERRED_HUB_MODULES:
        if name not in sys.modules:
            DeferredModule(name)
    pages = types.ModuleType("jupyterhub.handlers.pages", "Stand-in: servers have none.")
    pages.HealthCheckHandler = _NotTheHub  # type: ignore[attr-defined]
    sys.modules.setdefault("jupyterhub.handlers.pages", pages)
    metrics = types.ModuleType("jupyterhub.metrics", "Stand-in: the hub's own metrics.")
    metrics.prometheus_log_method = lambda handler: None  # type: ignore[attr-defined]
    sys.modules.setdefault("jupyterhub.metrics", metrics)

    from jupyterlab import commands

    def no_yarn_config(logger: object) -> dict[str, dict[str, str]]:
        """What ``_yarn_config`` answers when Node.js is missing: nothing configured."""
        return {"yarn config": {}, "npm config": {}}

    commands._yarn_config = no_yarn_config


def main() -> int | None:
    """Run the single-user server without the hub-only and network-only start-up work."""
    make_undumpable()
    skip_hub_only_work()
    enforce_extensions()
    from jupyterhub.singleuser import main as singleuser_main

    return singleuser_main()


if __name__ == "__main__":
    sys.exit(main())
