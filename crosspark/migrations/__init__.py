"""Alembic histories of the platform and lot schemas (one folder each)."""

from __future__ import annotations

import importlib

from sqlalchemy import MetaData

# Modules whose tables make up each schema; imported so autogenerate sees every table.
SCHEMA_MODULES = {
    "platform": ("card_service.store", "settlement.store"),
    "lot": ("lot_node.store",),
}


def target_metadata(schema: str) -> MetaData:
    from crosspark.db import LotBase, PlatformBase

    for name in SCHEMA_MODULES[schema]:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return (PlatformBase if schema == "platform" else LotBase).metadata
