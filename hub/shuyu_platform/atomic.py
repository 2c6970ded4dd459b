"""Files that appear whole or not at all: views, synthetic twins and demo data.

:func:`replace_atomically` has a writer fill a hidden temporary file beside the target
(same file system, so the rename is atomic), fsyncs it, renames it over the target and
fsyncs the folder. If anything fails the temporary file is removed and a previous file
at the target is untouched; a temporary file left by a killed process is removed by the
next write of the same target.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

_CHUNK = 8 * 1024 * 1024


def replace_atomically(
    out_path: Path, write: Callable[[Path], T], *, mode: int | None = None
) -> tuple[T, str]:
    """Have ``write`` fill a temporary file, then put it at ``out_path`` in one step.

    ``mode`` (e.g. ``0o644``) is set on the file before it appears. Returns ``write``'s
    result and the SHA-256 (hex) of the new file.
    """
    out_path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_path)
    tmp = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        result = write(tmp)
        if mode is not None:
            os.chmod(tmp, mode)
        digest = sync_and_hash(tmp)
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(out_path.parent)
    return result, digest


def sync_and_hash(path: Path) -> str:
    """fsync a written file and return its SHA-256 (hex)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        os.fsync(handle.fileno())
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_directory(directory: Path) -> None:
    """Make a rename durable; best effort, as some platforms cannot open directories."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def remove_stale_temporaries(out_path: Path) -> None:
    """Remove temporary files of earlier writes of ``out_path`` whose process is gone.

    A write killed outright (power loss, SIGKILL) cannot clean up after itself; its
    temporary file is named ``.<name>.tmp-<pid>-<random>``.
    """
    for path in out_path.parent.glob(f".{out_path.name}.tmp-*"):
        pid_text = path.name.removeprefix(f".{out_path.name}.tmp-").split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except OSError:
            continue
