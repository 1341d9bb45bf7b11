"""Structured logging (structlog): JSON lines for machines, readable lines on a terminal.
Secrets never reach the log: tokens, keys and phone numbers are masked by key name."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

SECRET_KEYS = frozenset({"token", "admin_token", "authorization", "holder_phone", "phone", "card_hash_key", "password"})


def _redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in SECRET_KEYS & event.keys():
        event[key] = "***"
    return event


def configure(level: str = "info", fmt: str = "auto") -> None:
    """``fmt``: ``json``, ``console`` or ``auto`` (console on a terminal, JSON otherwise)."""
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer = structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=False)
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    logging.basicConfig(level=numeric, stream=sys.stderr, format="%(message)s")
    # Third-party chatter (Alembic lists its plugins at INFO) only when debugging.
    for noisy in ("alembic", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
