"""Platform tables of settlement and the queries its services share.

The two hot tables (``passages``, ``stays``) keep instants as integer microseconds since the epoch
(``*_us``): ingest writes tens of thousands of rows a second and statements price a million stays
at once, so these rows move as numbers, never as datetime objects. Every other table uses
``UtcDateTime``. Keep ``crosspark/migrations/platform/versions/0003_settlement.py`` in step.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    UniqueConstraint,
    select,
    text,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from crosspark.db import PlatformBase
from crosspark.types import UtcDateTime


def to_us(instant: datetime) -> int:
    """A timezone-aware instant as integer microseconds since the epoch."""
    delta = instant.astimezone(UTC) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class PassageRow(PlatformBase):
    """An entry or exit record (进出场记录) as the lot reported it."""

    __tablename__ = "passages"

    passage_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    lot_id: Mapped[str] = mapped_column(String(64))
    gate_id: Mapped[str] = mapped_column(String(64))
    direction: Mapped[int] = mapped_column(SmallInteger)  # 1 entry, 2 exit (crosspark.v1.Direction)
    plate: Mapped[str] = mapped_column(String(16))
    color: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(8))
    card_id: Mapped[str] = mapped_column(String(64))
    stay_id: Mapped[str] = mapped_column(String(36))
    entry_passage_id: Mapped[str] = mapped_column(String(36))
    flags: Mapped[int] = mapped_column(Integer)  # bit (1 << PassageFlag) per flag
    membership_answer_id: Mapped[str] = mapped_column(String(64))
    occurred_us: Mapped[int] = mapped_column(BigInteger)
    card_valid_until_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    received_us: Mapped[int] = mapped_column(BigInteger)


class StayRow(PlatformBase):
    """A closed monthly-card stay: an entry joined with its exit, settled for [entry, settle_to)."""

    __tablename__ = "stays"
    __table_args__ = (
        Index(
            "ix_stays_unstated",
            "lot_id",
            "exit_us",
            sqlite_where=text("statement_seq IS NULL"),
            postgresql_where=text("statement_seq IS NULL"),
        ),
    )

    stay_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    lot_id: Mapped[str] = mapped_column(String(64))
    card_id: Mapped[str] = mapped_column(String(64))
    plate: Mapped[str] = mapped_column(String(16))
    color: Mapped[str] = mapped_column(String(16))
    entry_us: Mapped[int] = mapped_column(BigInteger)
    exit_us: Mapped[int] = mapped_column(BigInteger)
    settle_to_us: Mapped[int] = mapped_column(BigInteger)
    entry_passage_id: Mapped[str] = mapped_column(String(36))
    exit_passage_id: Mapped[str] = mapped_column(String(36))
    flags: Mapped[int] = mapped_column(Integer)
    received_us: Mapped[int] = mapped_column(BigInteger)
    #: The lot's statement that carries this stay; NULL until one does.
    statement_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class LotIngestRow(PlatformBase):
    """Per-lot ingest figures, kept up to date by each commit (cheap to read for LotStatus)."""

    __tablename__ = "lot_ingest"

    lot_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    passages_received: Mapped[int] = mapped_column(BigInteger)
    last_received_us: Mapped[int] = mapped_column(BigInteger)


class TariffRow(PlatformBase):
    """A tariff version (资费标准) agreed with a lot."""

    __tablename__ = "tariffs"

    lot_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    effective_from: Mapped[datetime] = mapped_column(UtcDateTime())
    kind: Mapped[str] = mapped_column(String(16))
    visit_fee_fen: Mapped[int] = mapped_column(BigInteger)
    unit_minutes: Mapped[int] = mapped_column(Integer)
    #: [["HH:MM", fee_fen], …]
    bands: Mapped[list[list[str | int]]] = mapped_column(JSON)
    free_minutes: Mapped[int] = mapped_column(Integer)
    cap_per_24h_fen: Mapped[int] = mapped_column(BigInteger)
    max_per_stay_fen: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class StatementScheduleRow(PlatformBase):
    """Per-lot issuing state; its row is the lock a replica takes to issue the lot's statements."""

    __tablename__ = "statement_schedule"

    lot_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    #: End of the last periodic statement issued; NULL before the first.
    issued_through: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class StatementRow(PlatformBase):
    """An issued statement (对账文件): immutable apart from its delivery and reconciliation status."""

    __tablename__ = "statements"
    __table_args__ = (
        UniqueConstraint("lot_id", "seq", name="uq_statements_lot_seq"),
        UniqueConstraint("lot_id", "period_key", name="uq_statements_lot_period"),
    )

    statement_id: Mapped[str] = mapped_column(String(96), primary_key=True)
    lot_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    period: Mapped[str] = mapped_column(String(16))
    #: What makes a statement unique for its lot: the period's start, or the stay for PER_EXIT.
    period_key: Mapped[str] = mapped_column(String(96))
    period_from: Mapped[datetime] = mapped_column(UtcDateTime())
    period_to: Mapped[datetime] = mapped_column(UtcDateTime())
    time_zone: Mapped[str] = mapped_column(String(64))
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime())
    line_count: Mapped[int] = mapped_column(BigInteger)
    visit_count: Mapped[int] = mapped_column(BigInteger)
    total_fee_fen: Mapped[int] = mapped_column(BigInteger)
    file_size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))
    key_id: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    fetched_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    fetch_count: Mapped[int] = mapped_column(Integer, default=0)
    reconciled_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    matched_count: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class StatementChunkRow(PlatformBase):
    """The statement file in 1 MiB pieces, so any replica can stream it without loading it whole."""

    __tablename__ = "statement_chunks"

    statement_id: Mapped[str] = mapped_column(String(96), primary_key=True)
    chunk_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class SigningKeyRow(PlatformBase):
    """The platform's Ed25519 statement-signing keys, shared by every replica."""

    __tablename__ = "signing_keys"

    key_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    private_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class DisputeRow(PlatformBase):
    """A statement line the lot disagreed with, and the operator's decision."""

    __tablename__ = "disputes"
    __table_args__ = (
        Index("ix_disputes_lot_state", "lot_id", "state"),
        Index("ix_disputes_statement", "statement_id"),
    )

    dispute_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    lot_id: Mapped[str] = mapped_column(String(64))
    statement_id: Mapped[str] = mapped_column(String(96))
    stay_id: Mapped[str] = mapped_column(String(64))
    result: Mapped[str] = mapped_column(String(24))
    line_no: Mapped[int] = mapped_column(Integer)
    platform_fee_fen: Mapped[int] = mapped_column(BigInteger)
    lot_fee_fen: Mapped[int] = mapped_column(BigInteger)
    note: Mapped[str] = mapped_column(String(256))
    state: Mapped[str] = mapped_column(String(16))
    resolution_note: Mapped[str] = mapped_column(String(512), default="")
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    adjusted_in_statement_id: Mapped[str | None] = mapped_column(String(96), nullable=True)
    #: The disputed line as the statement had it (or the platform's stay), for the adjustment line.
    line: Mapped[dict[str, str | int | bool] | None] = mapped_column(JSON, nullable=True)


def lot_settings(session: Session, lot_id: str) -> tuple[str, str, int] | None:
    """(time zone, settlement period, close delay seconds) of a registered lot."""
    from card_service.store import LotRow

    row = session.execute(
        select(LotRow.time_zone, LotRow.period, LotRow.close_delay_seconds).where(LotRow.lot_id == lot_id)
    ).first()
    return (row[0], row[1], row[2]) if row else None


def passages_received(session: Session, lot_id: str) -> int:
    """How many passages settlement holds from a lot (card_service's LotStatus reads it)."""
    return session.scalar(select(LotIngestRow.passages_received).where(LotIngestRow.lot_id == lot_id)) or 0
