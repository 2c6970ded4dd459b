"""The byte relays inside a sandbox reach a Unix socket whose queue is full.

These relays carry a cooperative tenant's own traffic (its server to the hub, its
kernel to the platform); the tenant can replace them, so nothing here is a control.
What they must not do is lose connections: asyncio takes a Unix connect refused with
EAGAIN (the listener's queue full) for one made, and hands back a dead connection.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from harness import run_async
from shuyu_server.relay import Endpoint


def test_a_connect_to_a_full_queue_waits_for_room_instead_of_dying(tmp_path: Path) -> None:
    """The listener's queue is full when the relay connects; once it accepts, the
    relay's connection is a live one that carries bytes both ways."""
    path = tmp_path / "hub.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(0)
    filling = []
    while True:  # fill the queue as a busy hub would leave it
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(str(path))
        except BlockingIOError:
            sock.close()
            break
        filling.append(sock)

    async def main() -> None:
        connecting = asyncio.ensure_future(Endpoint.parse(f"unix:{path}").connect())
        await asyncio.sleep(0.3)
        assert not connecting.done(), "a connect into a full queue returned"
        loop = asyncio.get_running_loop()
        accepted = [(await loop.sock_accept(listener))[0] for _ in filling]
        reader, writer = await asyncio.wait_for(connecting, 5)
        ours, _ = await loop.sock_accept(listener)
        writer.write(b"ping")
        await writer.drain()
        assert await loop.sock_recv(ours, 4) == b"ping"
        await loop.sock_sendall(ours, b"pong")
        assert await reader.readexactly(4) == b"pong"
        writer.close()
        for sock in [ours, *accepted, *filling]:
            sock.close()

    listener.setblocking(False)
    try:
        run_async(main())
    finally:
        listener.close()
