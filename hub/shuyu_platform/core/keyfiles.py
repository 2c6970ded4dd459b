"""Secrets kept in files under the state root, made once and then reused across restarts.

A secret that signs something users hold (the platform service's cookies) must outlive
the process: a new random secret at every start would sign everyone out. Each lives in
its own file, private to the platform's user (mode 0600), in the hub zone that no
sandbox mounts.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def secret_file(path: Path, nbytes: int = 32) -> bytes:
    """The secret in ``path``, made there (``nbytes`` random bytes, mode 0600) if absent.

    Two processes starting at once agree on one secret: the file appears whole, by a
    hard link that never replaces one another process made first.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(nbytes))
            handle.flush()
            os.fsync(handle.fileno())
        try:
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink()
    value = path.read_bytes()
    if len(value) < nbytes:
        raise ValueError(f"{path} holds {len(value)} bytes, fewer than the {nbytes} of a secret")
    return value
