"""First program inside a sandbox: start the relays, then run the server under them.

    python -m shuyu_server.sandbox_init \\
        --forward tcp:127.0.0.1:8081=unix:/run/shuyu/hub.sock \\
        --forward unix:/run/shuyu/server.sock=tcp:127.0.0.1:8888 \\
        -- jupyterhub-singleuser

Each ``--forward LISTEN=TARGET`` listens on LISTEN and relays to TARGET (``fd:N`` for a
listening socket the spawner made and handed over). The command after ``--`` runs as a
child; its exit ends the sandbox, and SIGTERM/SIGINT are passed on to it so the server
shuts down cleanly.

With nothing after ``--``, it only relays: the server is then a fork of the server
template (:mod:`shuyu_server.template`), which enters the sandbox once ``--ready-fd N``
(a pipe the spawner handed over) has been written to and closed, i.e. once every relay
listens. ``--life-fd N`` is the read end of a pipe whose only writer is that server:
when the server ends, the pipe closes and this process exits, and with it the sandbox
and everything in it (as when a server started here ends). SIGTERM/SIGINT end it too.

This process and the server mark themselves not dumpable, so a kernel of the same uid
can neither open their ``/proc/<pid>/mem``, ``fd/`` or ``environ`` nor attach to them
(the sandbox's seccomp filter refuses ``ptrace`` too).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import signal
import sys

from .relay import Endpoint, serve

PR_SET_DUMPABLE = 4


def make_undumpable() -> None:
    """``prctl(PR_SET_DUMPABLE, 0)``: ``/proc/<pid>`` becomes root's, ptrace is refused."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def _parse(
    argv: list[str],
) -> tuple[list[tuple[Endpoint, Endpoint]], list[str], tuple[int | None, int | None]]:
    if "--" not in argv:
        raise SystemExit("sandbox_init: give the server command after '--'")
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="sandbox_init")
    parser.add_argument("--forward", action="append", default=[], metavar="LISTEN=TARGET")
    parser.add_argument("--ready-fd", type=int, default=None, metavar="N")
    parser.add_argument("--life-fd", type=int, default=None, metavar="N")
    args = parser.parse_args(argv[:split])
    forwards = []
    for spec in args.forward:
        listen, sep, target = spec.partition("=")
        if not sep:
            raise SystemExit(f"sandbox_init: --forward needs LISTEN=TARGET, got {spec!r}")
        forwards.append((Endpoint.parse(listen), Endpoint.parse(target)))
    command = argv[split + 1 :]
    if not command and (args.ready_fd is None or args.life_fd is None):
        raise SystemExit("sandbox_init: give a server command after '--', or both fds")
    return forwards, command, (args.ready_fd, args.life_fd)


async def _run(
    forwards: list[tuple[Endpoint, Endpoint]],
    command: list[str],
    fds: tuple[int | None, int | None],
) -> int:
    servers = [await serve(listen, target) for listen, target in forwards]
    ready_fd, life_fd = fds
    if ready_fd is not None:
        os.write(ready_fd, b"1")
        os.close(ready_fd)
    loop = asyncio.get_running_loop()
    if not command:  # relays only, while the server lives
        stopped = loop.create_future()

        def stop() -> None:
            if not stopped.done():
                stopped.set_result(0)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop)
        if life_fd is not None:  # readable only once its writer, the server, is gone
            loop.add_reader(life_fd, stop)
        code = await stopped
        for server in servers:
            server.close()
        return code
    child = await asyncio.create_subprocess_exec(*command)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, child.send_signal, sig)
    code = await child.wait()
    for server in servers:
        server.close()
    return code


def main(argv: list[str] | None = None) -> None:
    """Run the relays and the server; exit with the server's exit code."""
    forwards, command, fds = _parse(sys.argv[1:] if argv is None else argv)
    make_undumpable()
    sys.exit(asyncio.run(_run(forwards, command, fds)))


if __name__ == "__main__":
    main()
