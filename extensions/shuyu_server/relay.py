"""Byte relays between TCP and Unix-socket endpoints (stdlib asyncio only).

A sandbox has its own network namespace with nothing but loopback. The spawner
bind-mounts one folder of Unix sockets into it; relays on both sides of that folder
are the only ways in and out:

- proxy -> server: host TCP port -> ``server.sock`` -> the server's loopback port;
- server/kernel -> hub API: sandbox loopback port -> ``hub.sock`` -> hub;
- kernel -> platform API: sandbox loopback port -> ``api.sock`` -> platform service.

An endpoint is written ``tcp:HOST:PORT``, ``unix:/path``, or, to listen on a socket
another process made and handed over open, ``fd:N``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
from dataclasses import dataclass

BUFFER = 256 * 1024
#: Connections queued on a listener before it accepts them.
BACKLOG = 1024
#: Seconds a connect to a Unix socket whose queue is full keeps trying.
PATIENCE = 10.0
log = logging.getLogger("shuyu.relay")


@dataclass(frozen=True)
class Endpoint:
    """Where to listen or connect: a TCP address or a Unix socket path."""

    kind: str  # "tcp", "unix" or "fd"
    host: str = ""
    port: int = 0
    path: str = ""
    fd: int = -1

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """Read ``tcp:HOST:PORT``, ``unix:/path`` or ``fd:N``."""
        kind, _, rest = text.partition(":")
        if kind == "unix" and rest.startswith("/"):
            return cls("unix", path=rest)
        if kind == "fd" and rest.isdigit():
            return cls("fd", fd=int(rest))
        if kind == "tcp":
            host, _, port = rest.rpartition(":")
            if host and port.isdigit():
                return cls("tcp", host=host, port=int(port))
        raise ValueError(f"not an endpoint: {text!r} (use tcp:HOST:PORT, unix:/path or fd:N)")

    def __str__(self) -> str:
        if self.kind == "fd":
            return f"fd:{self.fd}"
        return f"unix:{self.path}" if self.kind == "unix" else f"tcp:{self.host}:{self.port}"

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open a connection to this endpoint (a ``fd:`` endpoint only listens)."""
        if self.kind == "fd":
            raise OSError(f"cannot connect to {self}: an inherited socket only listens")
        if self.kind == "unix":
            return await _connect_unix(self.path)
        return await asyncio.open_connection(self.host, self.port, limit=BUFFER)


async def _connect_unix(path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to a Unix socket, waiting (up to :data:`PATIENCE`) while its queue is full.

    A Unix socket does not queue a connection past its listener's backlog: the connect
    fails at once with EAGAIN. asyncio takes that for a connect in progress, finds no
    error on the socket and hands back a connection that was never made; the first write
    on it fails. So the connect is done here, and retried while the queue is full.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE
    delay = 0.005
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(path)
        except BlockingIOError:
            sock.close()
            if loop.time() >= deadline:
                raise OSError(errno.EAGAIN, f"{path}: its queue stayed full") from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)
            continue
        except BaseException:
            sock.close()
            raise
        return await asyncio.open_unix_connection(sock=sock, limit=BUFFER)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(BUFFER):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()


async def serve(
    listen: Endpoint, target: Endpoint, *, socket_mode: int = 0o600, owner: int | None = None
) -> asyncio.Server:
    """Accept connections on ``listen`` and relay each to ``target`` until closed.

    A Unix listening socket gets ``socket_mode`` and, if given, the ``owner`` uid. An
    ``fd:N`` listener is taken over (and no longer inherited by child processes).
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await target.connect()
        except OSError as exc:
            log.debug("relay %s -> %s: cannot connect: %s", listen, target, exc)
            await _close(writer)
            return
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        await asyncio.gather(_close(writer), _close(upstream_writer))

    if listen.kind == "fd":
        sock = socket.socket(fileno=listen.fd)
        sock.set_inheritable(False)
        return await asyncio.start_unix_server(handle, sock=sock, limit=BUFFER, backlog=BACKLOG)
    if listen.kind == "unix":
        with contextlib.suppress(FileNotFoundError):
            os.unlink(listen.path)
        server = await asyncio.start_unix_server(handle, listen.path, limit=BUFFER, backlog=BACKLOG)
        os.chmod(listen.path, socket_mode)
        if owner is not None:
            os.chown(listen.path, owner, -1)
        return server
    return await asyncio.start_server(
        handle, listen.host, listen.port, limit=BUFFER, backlog=BACKLOG
    )
