"""A real disk quota per tenant: its work folder is a filesystem image of a fixed size.

``work/<tenant>/`` on the host is the mount point of ``work/.disks/<tenant>.ext4``, a
sparse file formatted as ext4 and loop-mounted (``nodev,nosuid``) by the spawner while
any server of the tenant runs. Every home of the tenant (``work/<tenant>/<user>``) lives
inside it, so a kernel that fills its home gets ``ENOSPC`` when the tenant's image is
full, and the filesystem that holds the platform's database, audit chain and outbox
never sees more than the image's size. A sparse image costs only what is written.

This is the shape a Kubernetes deployment gets from a PersistentVolumeClaim per tenant
with ``resources.requests.storage`` (see ``images/README.md``): one block device of a
fixed size per tenant, mounted into each of its pods.

The images are root's (0600) and outside every sandbox; the tenant sees only its own
folder inside the mounted filesystem. A larger ``c.Shuyu.disk_quota`` grows an image
the next time it is mounted; a smaller one never shrinks an existing image (that could
lose files): the operator shrinks it by hand if needed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import ClassVar


class DiskQuotaError(RuntimeError):
    """The tenant's disk cannot be set up; the message says what to fix."""


def mount_points() -> set[Path]:
    """Every mount point of this mount namespace (from ``/proc/self/mountinfo``)."""
    points = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        field = line.split()[4]
        # mountinfo escapes space, tab, newline and backslash as octal.
        for code in ("\\040", "\\011", "\\012", "\\134"):
            field = field.replace(code, chr(int(code[1:], 8)))
        points.add(Path(field))
    return points


def _run(*cmd: str) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip().splitlines()
        raise DiskQuotaError(f"{cmd[0]} failed: {message[-1] if message else result.returncode}")


class TenantDisk:
    """One tenant's filesystem image and its mount point, shared by its servers.

    :meth:`acquire` mounts it for a starting server (creating or growing the image
    first), :meth:`release` unmounts it when the tenant's last server in this hub has
    stopped. A hub restarted while the image is still mounted reuses the mount.
    """

    _users: ClassVar[dict[Path, int]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, image: Path, mountpoint: Path, size: int) -> None:
        self.image = image
        self.mountpoint = mountpoint
        self.size = size

    @classmethod
    def of_tenant(cls, work_zone: Path, tenant: str, size: int) -> TenantDisk:
        """The disk of ``tenant`` under the work zone."""
        return cls(work_zone / ".disks" / f"{tenant}.ext4", work_zone / tenant, size)

    def mounted(self) -> bool:
        """Whether the image is mounted at its mount point now."""
        return self.mountpoint.resolve() in mount_points()

    def acquire(self) -> None:
        """Make sure the image exists, has at least the quota's size, and is mounted."""
        with self._lock:
            if not self.mounted():
                self._wait_until_detached()
                self._prepare_image()
                self.mountpoint.mkdir(parents=True, exist_ok=True)
                _run(
                    "mount", "-t", "ext4", "-o", "loop,nodev,nosuid",
                    str(self.image), str(self.mountpoint),
                )  # fmt: skip
            os.chmod(self.mountpoint, 0o711)
            self._users[self.mountpoint] = self._users.get(self.mountpoint, 0) + 1

    def release(self) -> None:
        """Unmount the image once no server of this hub uses it any more."""
        with self._lock:
            users = self._users.get(self.mountpoint, 0) - 1
            if users > 0:
                self._users[self.mountpoint] = users
                return
            self._users.pop(self.mountpoint, None)
            if self.mounted():
                try:
                    _run("umount", str(self.mountpoint))
                except DiskQuotaError:
                    # A process still holding a file: detach now, free when it closes.
                    _run("umount", "--lazy", str(self.mountpoint))

    def _wait_until_detached(self, timeout: float = 10) -> None:
        """Wait for a loop device still holding the image to go (e.g. the lazily
        unmounted disk of a server that is still stopping): mounting the same image
        twice at once would corrupt it."""
        deadline = time.monotonic() + timeout
        while self.image.exists():
            attached = subprocess.run(
                ["losetup", "--associated", str(self.image)],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            if not attached:
                return
            if time.monotonic() > deadline:
                raise DiskQuotaError(
                    f"{self.image.name} is still in use by a stopping server ({attached}); "
                    "try again in a few seconds"
                )
            time.sleep(0.2)

    def _prepare_image(self) -> None:
        self.image.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.image.exists():
            self._create()
        elif self.image.stat().st_size < self.size:
            self._grow()

    def _create(self) -> None:
        """A new sparse image; a work folder already there (older installs) moves in."""
        partial = self.image.with_suffix(".partial")
        with open(partial, "wb") as image:
            os.fchmod(image.fileno(), 0o600)
            image.truncate(self.size)
        _run(
            "mkfs.ext4", "-q", "-F", "-m", "0", "-E", "root_owner=0:0",
            "-L", f"shuyu-{self.mountpoint.name}"[:16], str(partial),
        )  # fmt: skip
        if self.mountpoint.is_dir() and any(self.mountpoint.iterdir()):
            self._move_in(partial)
        os.replace(partial, self.image)

    def _move_in(self, image: Path) -> None:
        """Copy what the folder holds into the new image, then empty the folder."""
        with tempfile.TemporaryDirectory(dir=self.image.parent) as staging:
            _run("mount", "-t", "ext4", "-o", "loop", str(image), staging)
            try:
                _run("cp", "-a", f"{self.mountpoint}/.", staging)
            finally:
                _run("umount", staging)
        for child in self.mountpoint.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()

    def _grow(self) -> None:
        """Grow an unmounted image to the quota (the filesystem too)."""
        with open(self.image, "r+b") as image:
            image.truncate(self.size)
        with contextlib.suppress(DiskQuotaError):
            # e2fsck exits 1 when it fixed something; resize2fs says if it is not clean.
            _run("e2fsck", "-f", "-p", str(self.image))
        _run("resize2fs", str(self.image))
