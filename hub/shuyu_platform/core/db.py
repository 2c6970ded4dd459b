"""Connections to the platform database and its migrations.

SQLite (WAL mode, with a busy timeout so the hub and the platform service can both
write) is the embedded default; any SQLAlchemy URL works, PostgreSQL in production.
The schema is owned by Alembic: :func:`upgrade` brings a database to the newest
revision and is run by the hub at start-up and by ``shuyu db upgrade``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parents[1] / "migrations"

#: Format of the timestamp columns (grants, budgets, releases, requests): UTC, whole
#: seconds, with 'Z', so text order is time order.
STAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def stamp(moment: datetime | None = None) -> str:
    """``moment`` (default: now) as stored in a timestamp column."""
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime(STAMP_FORMAT)


def parse_stamp(text: str) -> datetime:
    """A timestamp column's value as an aware UTC datetime."""
    return datetime.strptime(text, STAMP_FORMAT).replace(tzinfo=UTC)


#: How long a writer waits for another process's write transaction (SQLite).
SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


#: Connections a server database's pool keeps open for reuse, per process (SQLAlchemy's
#: default is 5). Beyond them up to :data:`POOL_OVERFLOW` more are opened when threads
#: need them, and closed again when returned: each such connection costs PostgreSQL a new
#: backend process, so a process whose threads use the database at once (the platform
#: service) raises this with :func:`size_pool` to its thread count before its first query.
POOL_SIZE = 5
#: Connections opened beyond :data:`POOL_SIZE` under a burst (closed when returned).
POOL_OVERFLOW = 10


def size_pool(connections: int) -> None:
    """Keep ``connections`` open in each server database's pool of this process.

    Applies to engines made afterwards (they are cached per URL): call it first thing.
    """
    global POOL_SIZE
    POOL_SIZE = max(1, connections)


@cache
def engine_for(url: str) -> Engine:
    """The (process-wide, cached) engine for a database URL."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW)


@cache
def _sessionmaker(url: str) -> sessionmaker[Session]:
    return sessionmaker(engine_for(url), expire_on_commit=False)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on any error."""
    session = _sessionmaker(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(url: str) -> Config:
    """Alembic configuration for the platform schema at ``url``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str) -> None:
    """Bring the database at ``url`` to the newest schema revision."""
    engine = engine_for(url)
    config = alembic_config(url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
