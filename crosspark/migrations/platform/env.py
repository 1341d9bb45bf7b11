"""Alembic environment of the platform schema; run by crosspark.db.upgrade or `crosspark db upgrade`."""

from crosspark.migrations._env import run

run("platform")
