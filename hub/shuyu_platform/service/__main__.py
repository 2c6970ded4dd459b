"""Entry point the hub runs: ``python -m shuyu_platform.service``.

The service's port is bound here, before the service's modules are imported (about 4 s
of a start): the hub's first readiness check then connects at once and waits for its
answer. JupyterHub checks a service with an exponential backoff (0.2, 0.4, 0.8, 1.6,
3.2 s...), so a port that opened only after the imports was seen up to 4 s late, on
every start of the platform.
"""

import os
import socket
from urllib.parse import urlparse

from tornado.netutil import bind_sockets


def _bound() -> list[socket.socket]:
    """Listening sockets at the URL the hub gave this service (none without one)."""
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", ""))
    if not url.port:
        return []
    return bind_sockets(url.port, url.hostname or "127.0.0.1")


listening = _bound()

from .app import main  # noqa: E402  (after binding: see the module's docstring)

main(listening)
