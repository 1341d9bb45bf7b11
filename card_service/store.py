"""Platform tables of the card side, and the queries the rest of the platform needs."""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Integer, LargeBinary, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from crosspark.db import PlatformBase
from crosspark.types import UtcDateTime


class LotRow(PlatformBase):
    """A registered lot (车场) with its hashed credential."""

    __tablename__ = "lots"

    lot_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    vendor: Mapped[str] = mapped_column(String(64), default="")
    time_zone: Mapped[str] = mapped_column(String(64))
    mode: Mapped[str] = mapped_column(String(16))
    period: Mapped[str] = mapped_column(String(16))
    close_delay_seconds: Mapped[int] = mapped_column(Integer, default=3600)
    membership_deadline_ms: Mapped[int] = mapped_column(Integer, default=300)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    card_hash_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    registered_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_seen_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    card_version_held: Mapped[int] = mapped_column(BigInteger, default=0)
    outbox_depth: Mapped[int] = mapped_column(BigInteger, default=0)
    outbox_oldest_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


def token_hash(token: str) -> str:
    """What the platform stores of a bearer token. Tokens are 256-bit random values, so a plain
    SHA-256 (not a slow password hash) is the right tool."""
    return hashlib.sha256(token.encode()).hexdigest()


def lot_id_for_token(session: Session, token: str) -> str | None:
    """The enabled lot whose token this is, or None."""
    return session.scalar(select(LotRow.lot_id).where(LotRow.token_hash == token_hash(token), LotRow.enabled))
