"""Migrations run from empty on SQLite and PostgreSQL, and back down again."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from crosspark.db import Database, current_revision, head_revision, upgrade


@pytest.mark.parametrize("schema", ["platform", "lot"])
def test_migrations_run_from_empty_to_head(db_url: str, schema: str) -> None:
    db = Database(db_url)
    try:
        assert current_revision(db, schema) is None
        upgrade(db, schema)
        assert current_revision(db, schema) == head_revision(schema)
        tables = set(sa.inspect(db.reader).get_table_names())
        assert f"{schema}_alembic_version" in tables
        assert ("lots" if schema == "platform" else "lot_meta") in tables
    finally:
        db.dispose()


@pytest.mark.parametrize("schema", ["platform", "lot"])
def test_migrations_go_down_to_empty_and_up_again(db_url: str, schema: str) -> None:
    from alembic import command

    from crosspark.db import alembic_config

    db = Database(db_url)
    try:
        upgrade(db, schema)
        config = alembic_config(schema, db.url)
        with db.writer.connect() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "base")
            connection.commit()
        assert current_revision(db, schema) is None
        remaining = set(sa.inspect(db.reader).get_table_names()) - {f"{schema}_alembic_version"}
        assert remaining == set()
        upgrade(db, schema)
        assert current_revision(db, schema) == head_revision(schema)
    finally:
        db.dispose()


def test_upgrading_twice_is_a_no_op(db_url: str) -> None:
    db = Database(db_url)
    try:
        upgrade(db, "platform")
        upgrade(db, "platform")
        assert current_revision(db, "platform") == head_revision("platform")
    finally:
        db.dispose()


def test_sqlite_database_runs_in_wal_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = Database(f"sqlite:///{tmp_path / 'nested' / 'wal.db'}")
    try:
        with db.writer.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        db.dispose()


def test_unsupported_database_url_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported database"):
        Database("mysql://root@127.0.0.1/test")
