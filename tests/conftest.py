"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Platform, local_settings, running_platform
from postgres import TemporaryCluster
from shuyu_platform.core import db
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


#: The database every PostgreSQL test database is copied from: migrated once per session.
POSTGRES_TEMPLATE = "shuyu_migrated"


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[TemporaryCluster]:
    """One PostgreSQL server (Debian's binaries, a temporary cluster) for the session, with
    a migrated template database that each test's database is copied from."""
    with TemporaryCluster() as cluster:
        template = cluster.create_database(POSTGRES_TEMPLATE)
        db.upgrade(template)
        db.engine_for(template).dispose()  # a template must have no connections
        yield cluster


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of a fresh, migrated platform database: SQLite, then PostgreSQL.

    Every test that takes ``db_url`` runs once on each database the platform supports.
    """
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'shuyu.sqlite'}"
    else:
        cluster = request.getfixturevalue("postgres_cluster")
        url = cluster.create_database(template=POSTGRES_TEMPLATE)
    db.upgrade(url)  # nothing to do for a copy of the migrated template
    yield url
    db.engine_for(url).dispose()
