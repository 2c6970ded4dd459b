"""The hub's handle on the server template (:mod:`shuyu_server.template`).

One template process per hub, started at the first sandbox start that uses it. The hub
and the template share one ``SOCK_SEQPACKET`` socket pair and nothing else: the template
listens nowhere. :meth:`ServerTemplate.fork` hands it a sandbox (a pidfd of its first
process), the log pipe's and the life pipe's write ends, the sandbox cgroup's
``cgroup.procs`` files and a pipe holding the server's environment, and gets back the
host pid of the server it forked there and a pidfd of it; the template later reports
that server's exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import select
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

from ..core.lifetime import stat_fields

#: Seconds the template may take to import a server before it is given up on (the
#: start then goes on without it, well within JupyterHub's ``start_timeout``).
START_TIMEOUT = 30.0
#: Seconds one request (sending it and the fork's answer) may take.
FORK_TIMEOUT = 30.0


class TemplateError(RuntimeError):
    """The template is not running, or could not fork a server."""


class ServerTemplate:
    """One running template process and the requests in flight to it."""

    _shared: ClassVar[ServerTemplate | None] = None
    _starting: ClassVar[asyncio.Lock | None] = None

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.ready: asyncio.Future[int] | None = None
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        #: Exit status of each server forked and not yet forgotten (:meth:`forget`), by
        #: host pid, as the template reports it; None until it has ended.
        self.exits: dict[int, int | None] = {}
        self.ids = itertools.count(1)
        self.lock = asyncio.Lock()

    @classmethod
    async def shared(cls, env: dict[str, str], log_path: Path) -> ServerTemplate:
        """The hub's template, started (about a second of imports) if not running."""
        if cls._starting is None:
            cls._starting = asyncio.Lock()
        async with cls._starting:
            template = cls._shared
            if template is None or not template.alive():
                template = cls(env, log_path)
                await template.start()
                cls._shared = template
            return template

    def alive(self) -> bool:
        """Whether the template process runs and its socket is open."""
        return self.sock is not None and self.proc is not None and self.proc.poll() is None

    async def start(self) -> None:
        """Run the template and wait until it has imported the server."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(self.log_path, "ab") as output:
                self.proc = subprocess.Popen(
                    [sys.executable, "-I", "-m", "shuyu_server.template", str(theirs.fileno())],
                    env=self.env,
                    cwd="/",
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=output,
                    pass_fds=(theirs.fileno(),),
                    start_new_session=True,
                )
        finally:
            theirs.close()
        ours.setblocking(False)
        self.sock = ours
        loop = asyncio.get_running_loop()
        self.ready = loop.create_future()
        loop.add_reader(ours.fileno(), self._on_readable)
        try:
            await asyncio.wait_for(asyncio.shield(self.ready), START_TIMEOUT)
        except (TimeoutError, TemplateError) as exc:
            self.close()
            raise TemplateError(f"the server template did not start: see {self.log_path}") from exc
        except BaseException:  # cancelled: no template process may be left behind
            self.close()
            raise

    def _on_readable(self) -> None:
        assert self.sock is not None
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.sock, 1 << 16, 1)
            except BlockingIOError:
                return
            except OSError:
                data, fds = b"", []
            if not data:
                close_quietly(*fds)
                self.close()
                return
            message = json.loads(data)
            message["fds"] = fds
            if "ready" in message and self.ready is not None and not self.ready.done():
                self.ready.set_result(int(message["ready"]))
            elif "exited" in message:
                if int(message["exited"]) in self.exits:  # else nobody watches it any more
                    self.exits[int(message["exited"])] = int(message["status"])
            elif "id" in message:
                future = self.pending.pop(message["id"], None)
                if future is not None and not future.done():
                    if "pid" in message:  # watched before its exit can be reported
                        self.exits[int(message["pid"])] = None
                    future.set_result(message)
                else:
                    close_quietly(*fds)

    async def fork(
        self,
        *,
        sandbox_pidfd: int,
        log_fd: int,
        env_fd: int,
        life_fd: int,
        uid: int,
        cgroup_procs: list[int],
        seccomp_program: bytes,
    ) -> tuple[int, int]:
        """Fork a server into the sandbox of ``sandbox_pidfd``; its host pid and a pidfd
        of it (the caller's to close).

        ``life_fd`` is the write end of the sandbox's life pipe, which the server alone
        keeps; ``cgroup_procs`` are the sandbox cgroup's ``cgroup.procs`` files, open for
        writing. These descriptors stay the caller's (the template gets copies) and the
        caller closes them.
        """
        if not self.alive():
            raise TemplateError("the server template is not running")
        assert self.sock is not None
        request_id = next(self.ids)
        request = {"id": request_id, "uid": uid, "seccomp": seccomp_program.hex()}
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[request_id] = future
        # The sending thread works on duplicates of its own: were this start cancelled
        # meanwhile, the caller's descriptors may close and their numbers be reused.
        fds = [os.dup(fd) for fd in (sandbox_pidfd, log_fd, env_fd, life_fd, *cgroup_procs)]
        try:
            async with asyncio.timeout(FORK_TIMEOUT):
                async with self.lock:
                    await asyncio.to_thread(self._send, json.dumps(request).encode(), fds)
                answer = await future
        except TimeoutError as exc:
            raise TemplateError("the server template did not answer") from exc
        finally:
            self.pending.pop(request_id, None)
        if "pid" not in answer or len(answer["fds"]) != 1:
            close_quietly(*answer["fds"])
            if "pid" in answer:
                self.forget(int(answer["pid"]))
            raise TemplateError(f"the server template could not fork: {answer.get('error')}")
        return int(answer["pid"]), answer["fds"][0]

    def forget(self, pid: int) -> None:
        """Stop keeping the exit status of the server ``pid``."""
        self.exits.pop(pid, None)

    def _send(self, data: bytes, fds: list[int]) -> None:
        """Send one request with ``fds`` (closed here, sent or not)."""
        try:
            sock = self.sock
            if sock is None:
                raise TemplateError("the server template ended")
            waiting = select.poll()
            waiting.register(sock.fileno(), select.POLLOUT)
            for _ in range(int(FORK_TIMEOUT)):
                try:
                    socket.send_fds(sock, [data], fds)
                    return
                except BlockingIOError:
                    waiting.poll(1000)
            raise TemplateError("the server template takes no request")
        finally:
            close_quietly(*fds)

    def close(self) -> None:
        """Stop listening, fail every request in flight, end the process."""
        if self.sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
        error = TemplateError("the server template ended")
        for future in [self.ready, *self.pending.values()]:
            if future is not None and not future.done():
                future.set_exception(error)
                future.exception()  # retrieved: nobody may be waiting
        self.pending.clear()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def pid_exited(pidfd: int) -> bool:
    """Whether the process of ``pidfd`` has ended (a pidfd is readable once it has).

    ``poll``, not ``select``: a hub holds thousands of descriptors, and ``select``
    refuses any numbered 1024 or more.
    """
    waiting = select.poll()
    waiting.register(pidfd, select.POLLIN)
    return bool(waiting.poll(0))


def parent_of(pid: int) -> int:
    """The parent pid of ``pid`` (from ``/proc``); 0 if there is no such process."""
    fields = stat_fields(pid)
    return int(fields[1]) if len(fields) > 1 else 0


def close_quietly(*fds: int | None) -> None:
    """Close every descriptor given that is not None, ignoring those already closed."""
    for fd in fds:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
