"""The database layer: engines, sessions and migrations, for SQLite (embedded default, WAL) and
PostgreSQL (production, through ``psycopg``).

Two schemas exist: the platform's (cards, lots, passages, tariffs, statements) and a lot node's
(its decisions, card cache, outbox, statements received). Each has its own declarative base and its
own Alembic history under ``crosspark/migrations/<schema>``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

Schema = Literal["platform", "lot"]
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class PlatformBase(DeclarativeBase):
    """Tables of the platform database (card_service and settlement stores)."""


class LotBase(DeclarativeBase):
    """Tables of a lot node's database (lot_node store)."""


def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{Path(path)}"


def is_sqlite(url: str | URL) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_engine(url: URL, *, immediate: bool, cache_mib: int) -> Engine:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        # The driver's own transaction handling is off; we issue BEGIN ourselves (below).
        connect_args={"isolation_level": None, "check_same_thread": False, "timeout": 30},
        pool_size=8,
        max_overflow=16,
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed transaction survives power loss, not only a process crash.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        # The platform's 64 MiB page cache: ingest touches many pages (random passage ids in a
        # unique index). A lot node asks for less: it keeps a small working set and little memory.
        cursor.execute(f"PRAGMA cache_size=-{cache_mib * 1024}")
        cursor.close()

    # Writers take the write lock when they begin, so two writers never both read and then
    # deadlock on the upgrade; readers begin deferred and run beside the writer (WAL).
    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:  # type: ignore[no-untyped-def]
        connection.exec_driver_sql(begin)

    return engine


class Database:
    """Engines and session factories for one database URL.

    ``session()`` is for units of work that write; ``read_session()`` for queries. On PostgreSQL
    both use one engine; on SQLite writers begin ``IMMEDIATE`` and readers ``DEFERRED``.
    """

    def __init__(self, url: str | URL, *, echo: bool = False, sqlite_cache_mib: int = 64) -> None:
        self.url = make_url(url)
        if self.url.get_backend_name() == "sqlite":
            self.writer = _sqlite_engine(self.url, immediate=True, cache_mib=sqlite_cache_mib)
            self.reader = _sqlite_engine(self.url, immediate=False, cache_mib=sqlite_cache_mib)
        elif self.url.get_backend_name() == "postgresql":
            if self.url.drivername == "postgresql":
                self.url = self.url.set(drivername="postgresql+psycopg")
            self.writer = create_engine(self.url, echo=echo, pool_size=10, max_overflow=20, pool_pre_ping=True)
            self.reader = self.writer
        else:
            raise ValueError(f"unsupported database {self.url.get_backend_name()!r}: use sqlite:/// or postgresql://")
        self._write_sessions = sessionmaker(self.writer, expire_on_commit=False)
        self._read_sessions = sessionmaker(self.reader, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.writer.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commits on success, rolls back on any exception."""
        with self._write_sessions() as session, session.begin():
            yield session

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        with self._read_sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.writer.dispose()
        if self.reader is not self.writer:
            self.reader.dispose()


def alembic_config(schema: Schema, url: str | URL):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS / schema))
    config.set_main_option("sqlalchemy.url", make_url(url).render_as_string(hide_password=False).replace("%", "%%"))
    config.attributes["schema"] = schema
    return config


def upgrade(db: Database, schema: Schema, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (done on every service start and by
    ``crosspark db upgrade``)."""
    from alembic import command

    config = alembic_config(schema, db.url)
    with db.writer.connect() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        connection.commit()


def current_revision(db: Database, schema: Schema) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with db.reader.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": version_table(schema)})
        return context.get_current_revision()


def head_revision(schema: Schema) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(schema, "sqlite://")).get_current_head()


def version_table(schema: Schema) -> str:
    # One name per schema, so a platform and a lot can share one PostgreSQL database.
    return f"{schema}_alembic_version"
