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
"""

from __future__ import annotations

import os
import sys

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

    terminals = os.environ.get("SHUYU_ALLOW_TERMINALS") == "1"
    original = ServerApp.init_server_extensions

    def init_server_extensions(self: ServerApp) -> None:
        forced = {**FORCED_EXTENSIONS, "jupyter_server_terminals": terminals}
        self.jpserver_extensions = {**self.jpserver_extensions, **forced}
        self.terminals_enabled = terminals
        self.config.EgressGuard.allow_terminals = terminals
        self.kernel_manager_class = HomeKernelManager
        original(self)

    ServerApp.init_server_extensions = init_server_extensions  # type: ignore[method-assign]


def main() -> int | None:
    """Run the single-user server with the slow optional import disabled."""
    make_undumpable()
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[assignment]
    enforce_extensions()
    from jupyterhub.singleuser import main as singleuser_main

    return singleuser_main()


if __name__ == "__main__":
    sys.exit(main())
