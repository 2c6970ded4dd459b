"""Files and folders that appear whole or not at all: views, synthetic twins, demo
data, released exports and published dashboards.

:func:`replace_atomically` has a writer fill a hidden temporary file beside the target
(same file system, so the rename is atomic), fsyncs it, renames it over the target and
fsyncs the folder. If anything fails the temporary file is removed and a previous file
at the target is untouched; a temporary file left by a killed process is removed by the
next write of the same target. :func:`create_folder_atomically` does the same for a
new read-only folder, which it never puts over an existing one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import stat
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
    tmp = temporary_path(out_path)
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


def temporary_path(out_path: Path, suffix: str = "") -> Path:
    """A hidden name beside ``out_path`` for one write of it, by this process:
    ``.<name>.tmp-<pid>-<random><suffix>``, the form :func:`remove_stale_temporaries`
    knows (``suffix`` such as ``.keyed`` names a scratch folder of the same write)."""
    return out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}{suffix}")


def remove_stale_temporaries(out_path: Path) -> None:
    """Remove temporary files of earlier writes of ``out_path`` whose process is gone.

    A write killed outright (power loss, SIGKILL) cannot clean up after itself; its
    temporary file is named ``.<name>.tmp-<pid>-<random>``, and a scratch folder of the
    same write (a view build's keyed columns) ``.<name>.tmp-<pid>-<random>.<what>``.
    """
    for path in out_path.parent.glob(f".{out_path.name}.tmp-*"):
        pid_text = path.name.removeprefix(f".{out_path.name}.tmp-").split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        except OSError:
            continue


def create_folder_atomically(target: Path, fill: Callable[[Path], T]) -> T:
    """Have ``fill`` write files into a hidden folder beside ``target``, then make them
    read-only (0444, the folder 0555), fsync them and rename the folder into place.

    The rename fails if ``target`` exists: such a folder is never replaced. If anything
    fails the temporary folder is removed. Returns ``fill``'s result.
    """
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    tmp.mkdir(mode=0o700)
    try:
        result = fill(tmp)
        for path in tmp.iterdir():
            os.chmod(path, 0o444)
            sync_and_hash(path)
        os.chmod(tmp, 0o555)
        os.rename(tmp, target)
    except BaseException:
        remove_tree(tmp)
        raise
    fsync_directory(target.parent)
    return result


def remove_tree(path: Path) -> None:
    """Remove a folder made read-only (as :func:`create_folder_atomically` leaves it)."""
    if not path.exists():
        return
    for root, dirs, _ in os.walk(path):
        os.chmod(root, stat.S_IRWXU)
        for name in dirs:
            os.chmod(os.path.join(root, name), stat.S_IRWXU)
    shutil.rmtree(path)
