"""The lot schema: the migration and the lot_node models stay in step, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from crosspark.db import Database, LotBase, upgrade


def test_lot_migration_matches_the_models(db_url: str) -> None:
    import lot_node.store  # noqa: F401  (registers the tables on LotBase)

    db = Database(db_url)
    try:
        upgrade(db, "lot")
        with db.reader.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diff = [d for d in compare_metadata(context, LotBase.metadata) if "alembic_version" not in repr(d)]
        assert diff == []
    finally:
        db.dispose()
