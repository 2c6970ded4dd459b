"""The dashboards service: Voila showing published dashboards with sandboxed kernels.

The hub runs Voila as the service ``dashboards``
(``python -m shuyu_platform.dashboards.service``) on the published zone (filled by
:mod:`.publish`), on an origin of its own (``c.Shuyu.dashboards_url``, its own port,
served directly and not through the platform's proxy), at ``/services/dashboards/``:

- every page carries a Content-Security-Policy (:data:`DASHBOARD_CSP`) that lets a
  dashboard's script talk to its own origin only: it cannot fetch from, post forms to or
  frame the platform, and the platform refuses cross-origin writes anyway;
- sign-in is the hub's OAuth (:class:`HubIdentityProvider`); every signed-in person
  (visitor role and up) holds ``access:services!service=dashboards``;
- sources are stripped from what Voila renders, and only images are served as files;
- each dashboard's kernel runs in a bubblewrap sandbox with no network, as ``nobody``,
  seeing only its own published folder (:mod:`.kernel`), and talks to Voila over Unix
  sockets (:class:`DashboardKernelManager`). Not the masked views, not the work
  folders, not the DP API: there is no path and no network to them.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any, Final

from jupyter_client.ioloop import AsyncIOLoopKernelManager
from jupyterhub.singleuser.extension import JupyterHubIdentityProvider
from traitlets import default
from traitlets.config import Config

from ..core.settings import Shuyu
from .notebook import KERNEL_NAME
from .publish import PREFIX


class DashboardKernelManager(AsyncIOLoopKernelManager):
    """Kernels that talk over Unix sockets with a path of their own.

    The sandboxed kernel has no network, so the TCP loopback is not shared with Voila;
    ZeroMQ's ``ipc`` transport over a socket folder bound into the sandbox is. Each
    kernel gets a unique path prefix, so two kernels started at once never collide.
    """

    @default("transport")
    def _default_transport(self) -> str:
        return "ipc"

    @default("ip")
    def _default_ip(self) -> str:
        # A folder per kernel: the sandbox binds only this one, so a dashboard's kernel
        # never sees another kernel's sockets or connection key.
        own = Path(os.environ["SHUYU_DASHBOARD_IPC"]) / uuid.uuid4().hex[:16]
        own.mkdir(mode=0o700)
        os.chmod(own, 0o1777)  # the kernel (uid nobody) creates its sockets here
        return str(own / "k")

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        """Also remove the kernel's socket folder (with its copy of the connection key)."""
        await super()._async_cleanup_resources(restart=restart)
        if not restart:
            shutil.rmtree(Path(self.ip).parent, ignore_errors=True)

    cleanup_resources = _async_cleanup_resources


class HubIdentityProvider(JupyterHubIdentityProvider):
    """JupyterHub's own OAuth identity provider, with its routes under the service prefix.

    Voila (unlike jupyter-server) does not put the base URL in front of an identity
    provider's routes, so the OAuth callback is registered at its full path here.
    """

    def get_handlers(self) -> list[tuple[Any, ...]]:
        return [(PREFIX.rstrip("/") + path, *rest) for path, *rest in super().get_handlers()]


def kernel_spec(settings: Shuyu) -> Path:
    """Write the dashboard kernelspec; return the Jupyter data folder that holds it."""
    share = settings.zone("run") / "dashboards" / "share"
    spec = share / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [
                    sys.executable, "-m", "shuyu_platform.dashboards.kernel",
                    "-f", "{connection_file}",
                ],
                "display_name": "Shuyu dashboard (sandboxed)",
                "language": "python",
                "metadata": {"debugger": False},
            },
            indent=1,
        )
    )  # fmt: skip
    return share


#: The Content-Security-Policy of every dashboard page. A dashboard runs its own script
#: (widgets, plots, whatever its HTML outputs carry) but may talk only to its own origin:
#: no request, form, frame or navigation target on the platform's origin; no embedding.
DASHBOARD_CSP: Final[str] = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline' 'unsafe-eval'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-src 'none'",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)


def voila_config(settings: Shuyu, prefix: str) -> Config:
    """The Voila configuration of the dashboards service (see the module docstring).

    Voila listens on the public address at its own port: the dashboards' origin
    (``c.Shuyu.dashboards_url``) is not the platform's, so a dashboard's script cannot
    read or act on platform pages with its viewer's session. Sign-in is the hub's OAuth:
    the hub's login page on the platform's origin, then back to this origin's callback.
    """
    c = Config()
    c.Voila.ip = settings.ip
    c.Voila.port = settings.dashboards_port
    c.Voila.tornado_settings = {
        "headers": {
            "Content-Security-Policy": DASHBOARD_CSP,
            "X-Frame-Options": "DENY",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        }
    }
    c.HubOAuth.hub_host = settings.public_hub_url
    c.HubOAuth.oauth_redirect_uri = f"{settings.dashboards_url}{prefix}oauth_callback"
    c.Voila.open_browser = False
    c.Voila.base_url = prefix
    c.Voila.identity_provider_class = HubIdentityProvider
    c.VoilaConfiguration.strip_sources = True
    c.VoilaConfiguration.show_tracebacks = False
    c.VoilaConfiguration.file_allowlist = [r".*\.(png|jpg|jpeg|gif|svg)"]
    c.MultiKernelManager.kernel_manager_class = f"{__name__}.DashboardKernelManager"
    c.KernelSpecManager.allowed_kernelspecs = {KERNEL_NAME}
    c.KernelSpecManager.ensure_native_kernel = False
    return c


def main() -> None:
    """Run the dashboards service until the hub stops it."""
    from voila.app import Voila

    settings = Shuyu.from_environment()
    settings.ensure_zones()
    os.environ["JUPYTER_PATH"] = str(kernel_spec(settings))
    # Unix socket paths may hold at most 107 bytes, too few for a folder under a deep
    # state root: the kernels' socket folders live in a short private temporary folder.
    ipc = Path(tempfile.mkdtemp(prefix="shuyu-dashboards-"))
    os.chmod(ipc, 0o711)  # kernels reach their own subfolder by its random name only
    atexit.register(shutil.rmtree, ipc, True)
    os.environ["SHUYU_DASHBOARD_IPC"] = str(ipc)
    os.environ["JUPYTERHUB_SERVICE_PREFIX"] = PREFIX  # no proxy route: set here
    Voila.launch_instance(
        argv=[str(settings.zone("published"))], config=voila_config(settings, PREFIX)
    )


if __name__ == "__main__":
    main()
