"""What both schemas' Alembic environments do: online against the connection ``crosspark.db.upgrade``
hands over (or a URL), or offline to SQL."""

from alembic import context
from sqlalchemy import engine_from_config, pool

from crosspark.db import Schema, version_table
from crosspark.migrations import target_metadata


def run(schema: Schema) -> None:
    """Run the migrations of ``schema`` in the current Alembic context."""
    config = context.config
    metadata = target_metadata(schema)

    def run_migrations(connection) -> None:  # type: ignore[no-untyped-def]
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table=version_table(schema),
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    if context.is_offline_mode():
        context.configure(
            url=config.get_main_option("sqlalchemy.url"),
            target_metadata=metadata,
            version_table=version_table(schema),
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
