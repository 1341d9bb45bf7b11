"""Alembic environment of the platform schema; run by crosspark.db.upgrade or `crosspark db upgrade`."""

from alembic import context
from sqlalchemy import engine_from_config, pool

from crosspark.db import Schema, version_table
from crosspark.migrations import target_metadata

SCHEMA: Schema = "platform"
config = context.config
metadata = target_metadata(SCHEMA)


def run_migrations(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=version_table(SCHEMA),
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        version_table=version_table(SCHEMA),
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
elif (connection := config.attributes.get("connection")) is not None:
    run_migrations(connection)
else:
    engine = engine_from_config(
        config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool
    )
    with engine.connect() as connection:
        run_migrations(connection)
