"""Each sandbox's stdout and stderr, kept in a per-server log outside the sandbox.

The sandbox's first process gets the write end of a pipe as its stdout and stderr; the
hub reads the other end and appends what comes to ``logs/<server>.log``, a file of
root's (0600) in a zone no sandbox mounts. So the tenant can add lines to its own
server's log (that is what printing is) but can neither read it, nor truncate it, nor
reach the hub's own log or another server's: a pipe cannot be rewound or truncated,
and reopening it through ``/proc/<pid>/fd`` gives another end of the same pipe, never
the file behind it. (A kernel that opens that other end can take its own sandbox's
output out of the pipe before the hub reads it: it loses lines of its own log, and
learns nothing its sandbox did not print.)

Each log is capped (``max_bytes`` a start): past that the rest of the output is read
and dropped, with one line saying so, so a kernel printing in a loop can neither fill
the platform's disk nor stall its own server on a full pipe. The previous start's log
is kept as ``<server>.log.1``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path


class ServerLog(asyncio.Protocol):
    """Reads one sandbox's output pipe into its log file, up to ``max_bytes``."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.written = 0
        self.dropped = 0
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, path.with_name(path.name + ".1"))
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        os.write(self.fd, f"--- sandbox started {stamp} ---\n".encode())

    @classmethod
    async def attach(cls, read_end: int, path: Path, max_bytes: int) -> ServerLog:
        """Start reading ``read_end`` (which this takes over) into ``path``."""
        loop = asyncio.get_running_loop()
        pipe = os.fdopen(read_end, "rb", buffering=0)
        _, protocol = await loop.connect_read_pipe(lambda: cls(path, max_bytes), pipe)
        return protocol

    def data_received(self, data: bytes) -> None:
        """Append ``data`` while under the cap; count and drop it after."""
        room = self.max_bytes - self.written
        if room <= 0:
            self.dropped += len(data)
            return
        chunk = data[:room]
        os.write(self.fd, chunk)
        self.written += len(chunk)
        if len(data) > room:
            self.dropped += len(data) - room
            os.write(self.fd, f"\n--- log cap of {self.max_bytes} bytes reached ---\n".encode())

    def eof_received(self) -> bool:
        """The sandbox closed its end (it exited)."""
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """Note the end of output (and what was dropped), then close the file."""
        with contextlib.suppress(OSError):
            if self.dropped:
                os.write(self.fd, f"--- {self.dropped} more bytes dropped ---\n".encode())
            os.write(self.fd, b"--- sandbox output closed ---\n")
        os.close(self.fd)
        if not self.closed.done():
            self.closed.set_result(None)
