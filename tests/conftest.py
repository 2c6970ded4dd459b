"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Platform, local_settings, running_platform
from shuyu_platform.core.settings import Shuyu


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """One real platform (hub, proxy, platform service, sandboxed servers) for the session.

    Servers get 1 GiB each and tenants 256 MiB of disk, so the memory-limit and the
    disk-quota tests stay cheap; 60 reported events a minute leave room for the download
    tests' refusals.
    """
    with running_platform(
        tmp_path_factory.mktemp("platform"),
        SHUYU_MEM_LIMIT="1G",
        SHUYU_DISK_QUOTA="256M",
        SHUYU_TENANT_REPORTS_PER_MINUTE="60",
    ) as running:
        yield running


@pytest.fixture
def settings(tmp_path: Path) -> Shuyu:
    """A fresh state root (zones, migrated database) for tests that start no hub."""
    return local_settings(tmp_path / "home")
