"""The lot node's tables (on ``LotBase``) and the queries its services run.

* ``lot_stays``: one row per stay (its id is the entry passage's id), open until the exit.
* ``lot_passages``: every entry and exit record with the decision given at the gate.
* ``lot_outbox``: passages waiting for the platform's acknowledgement, written in the same
  transaction as the decision; ``REJECTED`` rows stay for an operator.
* ``lot_payments``: temporary fees paid at the exit.
* ``lot_cards``: the card list pushed by the platform (keyed hashes only), resumed at its version.
* ``lot_tariffs``: the tariff versions agreed with the platform (for reconciliation).
* ``lot_statements`` / ``lot_reconciliation_items``: statements received and their checks.
* ``lot_meta`` (migration 0001): progress markers such as the card version held.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Select,
    String,
    Table,
    Text,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from crosspark.db import LotBase
from crosspark.identity import IdentitySource, PlateColor, VehicleIdentity
from crosspark.types import UtcDateTime
from lot_node.gate import Flag

# Stay states.
OPEN = "OPEN"
CLOSED = "CLOSED"
ABANDONED = "ABANDONED"

# Outbox states.
PENDING = "PENDING"
REJECTED = "REJECTED"


class LotMeta(LotBase):
    """Settings and progress markers, one text value per key."""

    __tablename__ = "lot_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class StayRow(LotBase):
    """A vehicle's stay (停车记录) from its entry to its exit."""

    __tablename__ = "lot_stays"
    __table_args__ = (Index("ix_lot_stays_open_vehicle", "state", "plate", "color"),)

    stay_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    plate: Mapped[str] = mapped_column(String(16))
    color: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))  # MONTHLY or TEMPORARY
    card_id: Mapped[str] = mapped_column(String(64), default="")
    # What the lot knew at entry of the card's end (ONLINE mode uses it when the exit is offline).
    card_valid_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    entry_gate: Mapped[str] = mapped_column(String(64))
    entered_at: Mapped[datetime] = mapped_column(UtcDateTime())
    state: Mapped[str] = mapped_column(String(16), default=OPEN)
    exit_passage_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    exited_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True, index=True)
    # Monthly stays whose card ended inside them: the instant the platform's part ends.
    split_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # Temporary part charged to the driver, fen.
    fee_fen: Mapped[int] = mapped_column(BigInteger, default=0)


class PassageRow(LotBase):
    """An entry or exit record (进出场记录) with the decision the gate was given."""

    __tablename__ = "lot_passages"
    __table_args__ = (Index("ux_lot_passages_request", "gate_id", "request_id", unique=True),)

    passage_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    gate_id: Mapped[str] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(8))  # ENTRY or EXIT
    plate: Mapped[str] = mapped_column(String(16))
    color: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(8))
    confidence: Mapped[float] = mapped_column(Float, default=1.0)
    obu_serial: Mapped[str] = mapped_column(String(16), default="")
    obu_issuer: Mapped[str] = mapped_column(String(16), default="")
    vehicle_class: Mapped[int] = mapped_column(Integer, default=0)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime())
    decided_at: Mapped[datetime] = mapped_column(UtcDateTime())
    kind: Mapped[str] = mapped_column(String(16))
    membership: Mapped[str] = mapped_column(String(24))
    card_id: Mapped[str] = mapped_column(String(64), default="")
    stay_id: Mapped[str] = mapped_column(String(36))
    entry_passage_id: Mapped[str] = mapped_column(String(36), default="")
    flags: Mapped[str] = mapped_column(String(160), default="")  # comma-separated PassageFlag names
    membership_answer_id: Mapped[str] = mapped_column(String(64), default="")
    card_valid_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    opened: Mapped[bool] = mapped_column(Boolean, default=True)
    fee_due_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    display: Mapped[str] = mapped_column(String(64), default="")
    # Per-gate idempotency key of the device's request; NULL for records the lot made itself.
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Set when the platform acknowledged it (ACCEPTED or DUPLICATE).
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)

    def identity(self) -> VehicleIdentity:
        """The vehicle identity the gate decided on."""
        return VehicleIdentity(
            plate=self.plate, color=PlateColor(self.color), source=IdentitySource(self.source),
            confidence=self.confidence, obu_serial=self.obu_serial, obu_issuer=self.obu_issuer,
            vehicle_class=self.vehicle_class,
        )

    def flag_set(self) -> frozenset[Flag]:
        return frozenset(Flag(f) for f in self.flags.split(",") if f)


class OutboxRow(LotBase):
    """A passage waiting for the platform; deleted once acknowledged, kept when REJECTED."""

    __tablename__ = "lot_outbox"
    __table_args__ = (Index("ix_lot_outbox_state_seq", "state", "seq"),)

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    passage_id: Mapped[str] = mapped_column(ForeignKey("lot_passages.passage_id"), unique=True)
    enqueued_at: Mapped[datetime] = mapped_column(UtcDateTime())
    state: Mapped[str] = mapped_column(String(16), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str] = mapped_column(String(512), default="")
    rejected_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class PaymentRow(LotBase):
    """A temporary vehicle's fee, paid at the exit (临时车缴费)."""

    __tablename__ = "lot_payments"

    passage_id: Mapped[str] = mapped_column(ForeignKey("lot_passages.passage_id"), primary_key=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    method: Mapped[str] = mapped_column(String(64), default="")
    payment_ref: Mapped[str] = mapped_column(String(64), default="")
    paid_at: Mapped[datetime] = mapped_column(UtcDateTime())


class CardRow(LotBase):
    """One entry of the pushed card list: a keyed hash of the vehicle, never its plate."""

    __tablename__ = "lot_cards"

    card_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    vehicle_hash: Mapped[bytes] = mapped_column(LargeBinary(32), index=True)
    valid_from: Mapped[datetime] = mapped_column(UtcDateTime())
    valid_until: Mapped[datetime] = mapped_column(UtcDateTime())
    state: Mapped[str] = mapped_column(String(16))  # ACTIVE or CANCELLED
    valid_at_lot: Mapped[bool] = mapped_column(Boolean)
    version: Mapped[int] = mapped_column(BigInteger)


class TariffRow(LotBase):
    """A tariff version agreed with the platform (the serialised ``crosspark.v1.Tariff``)."""

    __tablename__ = "lot_tariffs"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    effective_from: Mapped[datetime] = mapped_column(UtcDateTime())
    body: Mapped[bytes] = mapped_column(LargeBinary)
    fetched_at: Mapped[datetime] = mapped_column(UtcDateTime())


class StatementRow(LotBase):
    """A statement (对账文件) the platform issued, and what the lot made of it."""

    __tablename__ = "lot_statements"

    statement_id: Mapped[str] = mapped_column(String(96), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, index=True)
    body: Mapped[bytes] = mapped_column(LargeBinary)  # serialised crosspark.v1.Statement
    # RECEIVED, REFUSED, RECONCILED, DISPUTED
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(512), default="")
    file_path: Mapped[str] = mapped_column(String(512), default="")
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())
    checked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    submitted_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    matched_count: Mapped[int] = mapped_column(BigInteger, default=0)
    disputed_count: Mapped[int] = mapped_column(BigInteger, default=0)
    report_csv: Mapped[str] = mapped_column(String(512), default="")
    report_html: Mapped[str] = mapped_column(String(512), default="")


class ReconciliationItemRow(LotBase):
    """One compared stay of a reconciliation."""

    __tablename__ = "lot_reconciliation_items"

    statement_id: Mapped[str] = mapped_column(ForeignKey("lot_statements.statement_id"), primary_key=True)
    stay_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    result: Mapped[str] = mapped_column(String(24))
    line_no: Mapped[int] = mapped_column(Integer, default=0)
    platform_fee_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    lot_fee_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    note: Mapped[str] = mapped_column(String(256), default="")


# --- meta ---------------------------------------------------------------------------------------


def get_meta(session: Session, key: str) -> str | None:
    return session.scalar(select(LotMeta.value).where(LotMeta.key == key))


def put_meta(session: Session, key: str, value: str, now: datetime) -> None:
    row = session.get(LotMeta, key)
    if row is None:
        session.add(LotMeta(key=key, value=value, updated_at=now))
    else:
        row.value = value
        row.updated_at = now


# --- stays and passages -------------------------------------------------------------------------


def _open_stays_query() -> Select:  # type: ignore[type-arg]
    t = StayRow.__table__.c
    return select(t.stay_id, t.plate, t.color, t.kind, t.card_id, t.card_valid_until, t.entered_at).where(
        t.state == OPEN, t.plate.in_(bindparam("plates", expanding=True)), t.color == bindparam("color")
    )


#: Open stays of any of ``plates`` with ``color`` (exact or confusable exit matching). The gate's
#: statements are built once: SQLAlchemy then compiles each once and memoizes its cache key.
OPEN_STAYS = _open_stays_query()
INSERT_PASSAGES = insert(cast(Table, PassageRow.__table__))
INSERT_STAY = insert(cast(Table, StayRow.__table__))
INSERT_OUTBOX = insert(cast(Table, OutboxRow.__table__))
CLOSE_STAY = (
    update(cast(Table, StayRow.__table__))
    .where(StayRow.__table__.c.stay_id == bindparam("closed_stay_id"))
    .values(
        state=bindparam("state"), exit_passage_id=bindparam("exit_passage_id"), exited_at=bindparam("exited_at"),
        split_at=bindparam("split_at"), fee_fen=bindparam("fee_fen"),
    )
)


def passage_for_request(session: Session, gate_id: str, request_id: str) -> PassageRow | None:
    return session.scalar(select(PassageRow).where(PassageRow.gate_id == gate_id, PassageRow.request_id == request_id))


def count_open_stays(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(StayRow).where(StayRow.state == OPEN)) or 0


# --- outbox --------------------------------------------------------------------------------------


def pending_outbox(session: Session, limit: int, after_seq: int = 0) -> list[tuple[int, PassageRow]]:
    """The oldest pending passages, in the order they were decided."""
    rows = session.execute(
        select(OutboxRow.seq, PassageRow)
        .join(PassageRow, PassageRow.passage_id == OutboxRow.passage_id)
        .where(OutboxRow.state == PENDING, OutboxRow.seq > after_seq)
        .order_by(OutboxRow.seq)
        .limit(limit)
    )
    return [(seq, passage) for seq, passage in rows]


def outbox_depth(session: Session) -> tuple[int, datetime | None]:
    """Pending passages and the enqueue instant of the oldest."""
    count, oldest = session.execute(
        select(func.count(), func.min(OutboxRow.enqueued_at, type_=UtcDateTime())).where(OutboxRow.state == PENDING)
    ).one()
    return int(count or 0), oldest


def rejected_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(OutboxRow).where(OutboxRow.state == REJECTED)) or 0


def mark_delivered(session: Session, passage_ids: Sequence[str], now: datetime) -> None:
    if not passage_ids:
        return
    session.execute(delete(OutboxRow).where(OutboxRow.passage_id.in_(passage_ids), OutboxRow.state == PENDING))
    session.execute(update(PassageRow).where(PassageRow.passage_id.in_(passage_ids)).values(delivered_at=now))


def mark_rejected(session: Session, passage_id: str, reason: str, now: datetime) -> None:
    session.execute(
        update(OutboxRow)
        .where(OutboxRow.passage_id == passage_id, OutboxRow.state == PENDING)
        .values(state=REJECTED, reason=reason[:512], rejected_at=now)
    )


def count_attempt(session: Session, passage_ids: Sequence[str]) -> None:
    if passage_ids:
        session.execute(
            update(OutboxRow).where(OutboxRow.passage_id.in_(passage_ids)).values(attempts=OutboxRow.attempts + 1)
        )


def requeue_rejected(session: Session, passage_ids: Sequence[str] | None = None) -> int:
    """An operator's decision to send rejected passages again (after fixing the cause)."""
    query = update(OutboxRow).where(OutboxRow.state == REJECTED)
    if passage_ids is not None:
        query = query.where(OutboxRow.passage_id.in_(passage_ids))
    result = session.execute(query.values(state=PENDING, reason="", rejected_at=None))
    return int(getattr(result, "rowcount", 0) or 0)


# --- card list -----------------------------------------------------------------------------------


def upsert_cards(session: Session, rows: Iterable[dict[str, object]]) -> None:
    """Insert or replace card-list entries by card id (Core executemany: bulk speed)."""
    rows = list(rows)
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    stmt = (sqlite_insert if dialect == "sqlite" else pg_insert)(CardRow)
    names = ("vehicle_hash", "valid_from", "valid_until", "state", "valid_at_lot", "version")
    columns = {c: stmt.excluded[c] for c in names}
    session.execute(stmt.on_conflict_do_update(index_elements=["card_id"], set_=columns), rows)


def insert_cards(session: Session, rows: Sequence[dict[str, object]]) -> None:
    if rows:
        session.execute(insert(CardRow), list(rows))


def clear_cards(session: Session) -> None:
    session.execute(delete(CardRow))
