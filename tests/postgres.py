"""A throw-away PostgreSQL server for tests and benchmarks: Debian's binaries, our own cluster.

:class:`TemporaryCluster` runs ``initdb`` and ``pg_ctl`` from ``/usr/lib/postgresql/*/bin``
(the ``postgresql`` Debian package, installed by ``make test``) in a temporary folder,
listening only on a Unix socket in that folder, so nothing is shared with a system
PostgreSQL and no port can clash. PostgreSQL refuses to run as root: when the suite runs
as root, the cluster runs as the ``postgres`` account the Debian package creates.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg

#: Where Debian installs the server's programs, one folder per major version.
DEBIAN_BINARIES = Path("/usr/lib/postgresql")


def server_binaries() -> Path | None:
    """The ``bin`` folder of the newest PostgreSQL installed, or None."""
    found = sorted(
        DEBIAN_BINARIES.glob("*/bin/pg_ctl"), key=lambda p: int(p.parents[1].name), reverse=True
    )
    return found[0].parent if found else None


class TemporaryCluster:
    """A PostgreSQL cluster in a temporary folder, reachable over a Unix socket only."""

    def __init__(self) -> None:
        binaries = server_binaries()
        if binaries is None:
            raise RuntimeError(
                f"PostgreSQL is not installed (no {DEBIAN_BINARIES}/*/bin/pg_ctl): "
                "run `make system-deps-test`, which installs Debian's postgresql package"
            )
        self.bin = binaries
        self.root = Path(tempfile.mkdtemp(prefix="shuyu-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.socket_dir.mkdir()
        self._user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            self._user = pwd.getpwnam("postgres")
            os.chmod(self.root, 0o755)
            for path in (self.root, self.socket_dir):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)
        self.role = self._user.pw_name if self._user else pwd.getpwuid(os.geteuid()).pw_name

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            check=False,
            user=self._user.pw_uid if self._user else None,
            group=self._user.pw_gid if self._user else None,
            extra_groups=[] if self._user else None,
            cwd=self.root,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")

    def start(self) -> TemporaryCluster:
        """Create the cluster and start its server; wait until it accepts connections."""
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-E", "UTF8", "--no-sync")
        options = (
            f"-c listen_addresses='' -c unix_socket_directories='{self.socket_dir}' "
            "-c max_connections=400 -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options,
            "-w", "start",
        )  # fmt: skip
        return self

    def stop(self) -> None:
        """Stop the server at once and delete the cluster."""
        with contextlib.suppress(RuntimeError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        """SQLAlchemy URL of ``database`` in this cluster (psycopg 3 over the socket)."""
        return f"postgresql+psycopg://{self.role}@/{database}?host={self.socket_dir}"

    def create_database(self, name: str | None = None, template: str | None = None) -> str:
        """Create a database (a fresh name unless given), empty or a copy of ``template``
        (which nobody may be connected to); return its URL."""
        name = name or f"t_{uuid.uuid4().hex[:16]}"
        copy = f' TEMPLATE "{template}"' if template else ""
        with psycopg.connect(
            host=str(self.socket_dir), user=self.role, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"{copy}')
        return self.url(name)

    def __enter__(self) -> TemporaryCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
