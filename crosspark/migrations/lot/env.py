"""Alembic environment of the lot schema; run by crosspark.db.upgrade or `crosspark db upgrade`."""

from crosspark.migrations._env import run

run("lot")
