"""A tenant's disk: a real ext4 image, loop-mounted, filled until the kernel says ENOSPC."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from shuyu_platform.core.settings import parse_size
from shuyu_platform.isolation.disk_quota import TenantDisk, mount_points

pytestmark = pytest.mark.skipif(
    os.getuid() != 0 or shutil.which("mkfs.ext4") is None,
    reason="mounting a filesystem image needs root and e2fsprogs",
)

MIB = 1024**2


def fill(folder: Path) -> int:
    """Write 1 MiB blocks into ``folder`` until the filesystem is full; bytes written."""
    written = 0
    block = os.urandom(MIB)
    with pytest.raises(OSError) as full, open(folder / "filler", "wb", buffering=0) as out:
        for _ in range(1024):
            written += out.write(block)
            os.fsync(out.fileno())
    assert full.value.errno == errno.ENOSPC
    return written


def test_a_full_disk_refuses_writes_and_nothing_outside_grows(tmp_path: Path) -> None:
    disk = TenantDisk.of_tenant(tmp_path / "work", "kangning", 32 * MIB)
    disk.acquire()
    try:
        assert disk.mounted()
        home = tmp_path / "work" / "kangning" / "alice"
        home.mkdir()
        written = fill(home)
        assert 20 * MIB < written <= 32 * MIB
        # The platform's filesystem lost at most the image's size (the blocks the sparse
        # image holds, not the host's free space, which other processes change meanwhile)
        # and still takes writes.
        assert os.stat(disk.image).st_blocks * 512 <= 34 * MIB
        (tmp_path / "db.sqlite").write_bytes(b"x" * MIB)
        assert oct(os.stat(disk.image).st_mode & 0o777) == "0o600"
        (home / "filler").unlink()
        (home / "notebook.ipynb").write_text("{}")
    finally:
        disk.release()
    assert not disk.mounted()
    assert not (tmp_path / "work" / "kangning" / "alice").exists()  # it lives in the image
    disk.acquire()  # mounted again, the files are back
    try:
        assert (tmp_path / "work" / "kangning" / "alice" / "notebook.ipynb").read_text() == "{}"
    finally:
        disk.release()


def test_two_servers_share_the_mount_until_the_last_stops(tmp_path: Path) -> None:
    first = TenantDisk.of_tenant(tmp_path / "work", "kangning", 16 * MIB)
    second = TenantDisk.of_tenant(tmp_path / "work", "kangning", 16 * MIB)
    first.acquire()
    second.acquire()
    first.release()
    assert second.mounted()
    second.release()
    assert (tmp_path / "work" / "kangning").resolve() not in mount_points()


def test_an_existing_folder_moves_into_a_new_image_and_a_larger_quota_grows_it(
    tmp_path: Path,
) -> None:
    old = tmp_path / "work" / "kangning" / "alice"
    old.mkdir(parents=True)
    (old / "analysis.py").write_text("print(1)")
    os.chown(old, 40123, 40123)
    disk = TenantDisk.of_tenant(tmp_path / "work", "kangning", 16 * MIB)
    disk.acquire()
    try:
        assert (old / "analysis.py").read_text() == "print(1)"
        assert old.stat().st_uid == 40123
    finally:
        disk.release()
    assert not old.exists()
    bigger = TenantDisk.of_tenant(tmp_path / "work", "kangning", 48 * MIB)
    bigger.acquire()
    try:
        assert shutil.disk_usage(old.parent).total > 40 * MIB
        assert (old / "analysis.py").read_text() == "print(1)"
    finally:
        bigger.release()


@pytest.mark.parametrize(
    ("text", "size"), [("5G", 5 * 1024**3), ("512M", 512 * MIB), ("64MiB", 64 * MIB)]
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "1M", ""])
def test_bad_sizes_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(ValueError, match=r"size|below"):
        parse_size(text)
