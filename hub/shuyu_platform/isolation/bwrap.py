"""bubblewrap command-line pieces shared by the merchant sandbox and the dashboard kernel."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def system_dirs() -> list[str]:
    """Read-only ``/bin``, ``/lib``... as on the host (symlinks kept as symlinks)."""
    args: list[str] = []
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = Path("/") / top
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            args += ["--ro-bind", str(host), str(host)]
    return args


def mounts(binds: Iterable[tuple[str, Path, Path]], made: set[Path]) -> list[str]:
    """``(--bind|--ro-bind, source, dest)`` mounts, their missing parents made 0755 first.

    bubblewrap would create missing parents of a mount point as 0700 root, which an
    unprivileged uid inside could not pass; ``made`` holds the folders that exist already.
    """
    binds = list(binds)
    args: list[str] = []
    for _, _, dest in binds:
        for parent in reversed(dest.parents):
            if parent not in made:
                args += ["--perms", "0755", "--dir", str(parent)]
                made.add(parent)
    for kind, source, dest in binds:
        args += [kind, str(source), str(dest)]
    return args
