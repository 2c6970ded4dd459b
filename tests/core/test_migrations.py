"""The Alembic migrations build exactly the schema the models declare, on every database."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from postgres import TemporaryCluster
from shuyu_platform.core import db
from shuyu_platform.core.models import Base


def test_migrations_match_models(db_url: str) -> None:
    with db.engine_for(db_url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_upgrade_is_idempotent(db_url: str) -> None:
    db.upgrade(db_url)
    with db.engine_for(db_url).connect() as conn:
        tables = set(inspect(conn).get_table_names())
    assert set(Base.metadata.tables) <= tables


@pytest.mark.postgres
def test_postgresql_urls_use_psycopg_3(postgres_cluster: TemporaryCluster) -> None:
    url = postgres_cluster.create_database()
    db.upgrade(url)
    engine = db.engine_for(url)
    assert engine.dialect.driver == "psycopg"
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW server_encoding").scalar() == "UTF8"
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    engine.dispose()


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.sqlite'}"
    db.upgrade(url)
    with db.engine_for(url).connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
