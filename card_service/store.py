"""Platform tables of the card side, and the queries the rest of the platform needs.

* ``lots``: registered lots with the hash of their bearer token and their card-hash key.
* ``cards``: every card ever issued (never deleted), its current state and the global card version
  of its last change; ``request_id`` makes ApplyCard idempotent.
* ``card_renewals``: each renewal, keyed by its request id (idempotent RenewCard).
* ``card_version``: one row holding the latest global card version. Every change locks and bumps it
  in its own transaction, so versions are gap-free (a rollback undoes the bump) and commit order is
  version order (the row lock is held to commit): a lot reading ``version > X`` never misses one.
* ``card_changes``: the retained change log (version → card); versions at or below ``log_floor``
  have been pruned, and a lot holding less than the floor gets a fresh snapshot.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Connection,
    Date,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    delete,
    func,
    insert,
    select,
    type_coerce,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.types import NullType

from card_service.domain import Card, CardState, Lot, MembershipMode, SettlementPeriod
from crosspark.db import PlatformBase
from crosspark.identity import PlateColor
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
    # Migration 0002: the last sign of life of an open WatchCards stream (refreshed at each
    # heartbeat; cleared when the stream ends), and whether the next WatchCards must start with a
    # snapshot (the card-hash key was rotated, so every hash the lot holds is stale).
    card_stream_seen_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    snapshot_required: Mapped[bool] = mapped_column(Boolean, default=False)


class CardRow(PlatformBase):
    """A monthly card (月卡); see ``card_service.domain.Card``."""

    __tablename__ = "cards"

    card_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    request_digest: Mapped[str] = mapped_column(String(64), default="")
    plate: Mapped[str] = mapped_column(String(16))
    color: Mapped[str] = mapped_column(String(16))
    holder_name: Mapped[str] = mapped_column(String(64))
    holder_phone: Mapped[str] = mapped_column(String(24))
    start_date: Mapped[date] = mapped_column(Date)
    months: Mapped[int] = mapped_column(Integer)
    time_zone: Mapped[str] = mapped_column(String(64))
    valid_from: Mapped[datetime] = mapped_column(UtcDateTime())
    valid_until: Mapped[datetime] = mapped_column(UtcDateTime())
    # Lot ids joined by "," (lot ids never contain one); "" = every connected lot.
    scope: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(16))
    cancel_reason: Mapped[str] = mapped_column(String(256), default="")
    version: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (
        UniqueConstraint("request_id", name="uq_cards_request_id"),
        UniqueConstraint("version", name="uq_cards_version"),
        Index("ix_cards_vehicle", "plate", "color"),
    )


class CardRenewalRow(PlatformBase):
    __tablename__ = "card_renewals"

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    card_id: Mapped[str] = mapped_column(String(40), index=True)
    months: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(BigInteger)
    renewed_at: Mapped[datetime] = mapped_column(UtcDateTime())


class CardVersionRow(PlatformBase):
    __tablename__ = "card_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger)
    log_floor: Mapped[int] = mapped_column(BigInteger)


class CardChangeRow(PlatformBase):
    __tablename__ = "card_changes"

    version: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    card_id: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(16))  # applied, renewed, cancelled, imported
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime())


# --- lots ----------------------------------------------------------------------------------------


def token_hash(token: str) -> str:
    """What the platform stores of a bearer token. Tokens are 256-bit random values, so a plain
    SHA-256 (not a slow password hash) is the right tool."""
    return hashlib.sha256(token.encode()).hexdigest()


_LOT_FOR_TOKEN = select(LotRow.lot_id).where(LotRow.token_hash == bindparam("token_hash"), LotRow.enabled)


def lot_id_for_token(session: Session | Connection, token: str) -> str | None:
    """The enabled lot whose token this is, or None. Runs on every lot call: one Core statement
    (pass a ``Connection`` from ``db.reader.connect()`` to skip the ORM session altogether)."""
    connection = session.connection() if isinstance(session, Session) else session
    return connection.execute(_LOT_FOR_TOKEN, {"token_hash": token_hash(token)}).scalar()


def lot_of(row: LotRow) -> Lot:
    return Lot(
        lot_id=row.lot_id,
        name=row.name,
        vendor=row.vendor,
        time_zone=row.time_zone,
        mode=MembershipMode(row.mode),
        period=SettlementPeriod(row.period),
        close_delay_seconds=row.close_delay_seconds,
        membership_deadline_ms=row.membership_deadline_ms,
        enabled=row.enabled,
        registered_at=row.registered_at,
        updated_at=row.updated_at,
    )


def get_lot(session: Session, lot_id: str, *, for_update: bool = False) -> LotRow | None:
    query = select(LotRow).where(LotRow.lot_id == lot_id)
    return session.scalar(query.with_for_update() if for_update else query)


def missing_lots(session: Session, lot_ids: Sequence[str]) -> list[str]:
    """The ids among ``lot_ids`` that name no registered lot."""
    if not lot_ids:
        return []
    found = set(session.scalars(select(LotRow.lot_id).where(LotRow.lot_id.in_(lot_ids))))
    return [lot_id for lot_id in lot_ids if lot_id not in found]


def all_lot_ids(session: Session) -> set[str]:
    return set(session.scalars(select(LotRow.lot_id)))


def page_lots(session: Session, after: str, limit: int) -> list[LotRow]:
    return list(session.scalars(select(LotRow).where(LotRow.lot_id > after).order_by(LotRow.lot_id).limit(limit)))


def touch_lot(session: Session, lot_id: str, values: dict[str, Any]) -> None:
    session.execute(update(LotRow).where(LotRow.lot_id == lot_id).values(**values))


# --- card versions -------------------------------------------------------------------------------


def lock_versions(session: Session) -> tuple[int, int]:
    """Lock the version row for this transaction (every card writer does this first, which also
    serialises the overlap checks) and return ``(latest version, log floor)``."""
    row = session.execute(
        select(CardVersionRow.version, CardVersionRow.log_floor).where(CardVersionRow.id == 1).with_for_update()
    ).one()
    return int(row.version), int(row.log_floor)


def set_version(session: Session, version: int, log_floor: int | None = None) -> None:
    values: dict[str, int] = {"version": version}
    if log_floor is not None:
        values["log_floor"] = log_floor
    session.execute(update(CardVersionRow).where(CardVersionRow.id == 1).values(**values))


def read_versions(connection: Connection | Session) -> tuple[int, int]:
    row = connection.execute(
        select(CardVersionRow.version, CardVersionRow.log_floor).where(CardVersionRow.id == 1)
    ).one()
    return int(row.version), int(row.log_floor)


def record_changes(session: Session, changes: Sequence[dict[str, Any]]) -> None:
    _bulk_insert(session, CardChangeRow.__table__, changes)


def prune_changes(session: Session, floor: int) -> None:
    session.execute(delete(CardChangeRow).where(CardChangeRow.version <= floor))


# --- cards ---------------------------------------------------------------------------------------


def card_of(row: Any) -> Card:
    """A domain card from a ``CardRow`` or a Core row with the same columns."""
    return Card(
        card_id=row.card_id,
        plate=row.plate,
        color=PlateColor(row.color),
        holder_name=row.holder_name,
        holder_phone=row.holder_phone,
        start_date=row.start_date,
        months=row.months,
        time_zone=row.time_zone,
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        scope=split_scope(row.scope),
        state=CardState(row.state),
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        cancel_reason=row.cancel_reason,
    )


def row_values(card: Card) -> dict[str, Any]:
    return {
        "card_id": card.card_id,
        "plate": card.plate,
        "color": card.color.value,
        "holder_name": card.holder_name,
        "holder_phone": card.holder_phone,
        "start_date": card.start_date,
        "months": card.months,
        "time_zone": card.time_zone,
        "valid_from": card.valid_from,
        "valid_until": card.valid_until,
        "scope": ",".join(card.scope),
        "state": card.state.value,
        "cancel_reason": card.cancel_reason,
        "version": card.version,
        "created_at": card.created_at,
        "updated_at": card.updated_at,
    }


def split_scope(text: str) -> tuple[str, ...]:
    return tuple(text.split(",")) if text else ()


def get_card(session: Session, card_id: str) -> Card | None:
    row = session.get(CardRow, card_id)
    return card_of(row) if row is not None else None


def card_for_request(session: Session, request_id: str) -> tuple[Card, str] | None:
    """The card an ApplyCard ``request_id`` created, with that request's digest."""
    row = session.scalar(select(CardRow).where(CardRow.request_id == request_id))
    return (card_of(row), row.request_digest) if row is not None else None


def renewal(session: Session, request_id: str) -> CardRenewalRow | None:
    return session.get(CardRenewalRow, request_id)


_CARD_COLUMNS = [c for c in CardRow.__table__.c if c.name not in ("request_id", "request_digest")]


def cards_of_vehicle(connection: Connection | Session, plate: str, color: PlateColor) -> list[Card]:
    rows = connection.execute(select(*_CARD_COLUMNS).where(CardRow.plate == plate, CardRow.color == color.value)).all()
    return [card_of(row) for row in rows]


_VEHICLE_AT_VERSION = (
    select(CardVersionRow.version, *_CARD_COLUMNS)
    .select_from(
        CardVersionRow.__table__.outerjoin(
            CardRow.__table__, and_(CardRow.plate == bindparam("plate"), CardRow.color == bindparam("color"))
        )
    )
    .where(CardVersionRow.id == 1)
)


def vehicle_at_version(connection: Connection, plate: str, color: PlateColor) -> tuple[int, list[Card]]:
    """The latest card version and the vehicle's cards, read in one statement (so consistent with
    each other on every backend, and one round trip on the membership hot path)."""
    rows = connection.execute(_VEHICLE_AT_VERSION, {"plate": plate, "color": color.value}).all()
    return int(rows[0].version), [card_of(row) for row in rows if row.card_id is not None]


def insert_card(session: Session, card: Card, request_id: str | None, request_digest: str) -> None:
    session.execute(insert(CardRow).values(**row_values(card), request_id=request_id, request_digest=request_digest))


def insert_cards(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Bulk insert of ``row_values`` dicts plus ``request_id``/``request_digest`` (executemany)."""
    _bulk_insert(session, CardRow.__table__, rows)


def _bulk_insert(session: Session, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Core ``insert()`` executemany. On SQLite the rows go to the driver as tuples with dates and
    instants already in SQLAlchemy's storage format (the same object is formatted once), which makes
    a bulk load several times faster than per-value type processing."""
    if not rows:
        return
    connection = session.connection()
    names = [c.name for c in table.c]
    getter = itemgetter(*names)
    if connection.dialect.name == "postgresql":
        # COPY is PostgreSQL's bulk path: several times faster than multi-row INSERTs.
        driver = connection.connection.driver_connection
        assert driver is not None
        with driver.cursor() as cursor, cursor.copy(f"COPY {table.name} ({', '.join(names)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(getter(row))
        return
    if connection.dialect.name != "sqlite":
        connection.execute(insert(table), list(rows))
        return
    positions = [i for i, c in enumerate(table.c) if isinstance(c.type, (UtcDateTime, Date))]
    formatted: dict[Any, str] = {}
    tuples = []
    for row in rows:
        values = list(getter(row))
        for i in positions:
            value = values[i]
            text = formatted.get(value)
            if text is None:
                text = formatted[value] = _sqlite_text(value)
            values[i] = text
        tuples.append(tuple(values))
    statement = insert(table).compile(dialect=connection.dialect, column_keys=names)
    connection.exec_driver_sql(str(statement), tuples)


def _sqlite_text(value: date) -> str:
    """How SQLAlchemy's SQLite dialect stores a date or (UTC, naive) datetime."""
    if isinstance(value, datetime):
        value = value.astimezone(UTC).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond:06d}"
    return value.isoformat()


def update_card(session: Session, card: Card) -> None:
    values = row_values(card)
    card_id = values.pop("card_id")
    session.execute(update(CardRow).where(CardRow.card_id == card_id).values(**values))


def insert_renewal(session: Session, request_id: str, card_id: str, months: int, version: int, at: datetime) -> None:
    session.execute(
        insert(CardRenewalRow).values(
            request_id=request_id, card_id=card_id, months=months, version=version, renewed_at=at
        )
    )


def page_cards(session: Session, after: str, limit: int, plate: str | None = None) -> list[Card]:
    query = select(*_CARD_COLUMNS).where(CardRow.card_id > after)
    if plate:
        query = query.where(CardRow.plate == plate)
    rows = session.execute(query.order_by(CardRow.card_id).limit(limit)).all()
    return [card_of(row) for row in rows]


def active_intervals(session: Session) -> Iterator[tuple[str, str, datetime, datetime, str]]:
    """(plate, colour, valid_from, valid_until, card_id) of every active card (bulk import's
    overlap check)."""
    query = select(CardRow.plate, CardRow.color, CardRow.valid_from, CardRow.valid_until, CardRow.card_id).where(
        CardRow.state == CardState.ACTIVE.value
    )
    for row in session.execute(query.execution_options(yield_per=20_000)):
        yield row.plate, row.color, row.valid_from, row.valid_until, row.card_id


def all_request_ids(session: Session) -> set[str]:
    query = select(CardRow.request_id).where(CardRow.request_id.is_not(None))
    return set(session.scalars(query.execution_options(yield_per=50_000)))


def existing_request_ids(session: Session, request_ids: Iterable[str]) -> set[str]:
    ids = list(request_ids)
    found: set[str] = set()
    for start in range(0, len(ids), 5000):
        found.update(
            session.scalars(select(CardRow.request_id).where(CardRow.request_id.in_(ids[start : start + 5000])))
        )
    return found


# --- the card list (WatchCards) --------------------------------------------------------------------

#: Columns a card-list entry is made from; instants come raw (no per-value type processing) and
#: are turned into microseconds by ``EpochMicros``, which parses each distinct value once.
LIST_COLUMNS = (
    CardRow.card_id,
    CardRow.plate,
    CardRow.color,
    type_coerce(CardRow.valid_from, NullType()),
    type_coerce(CardRow.valid_until, NullType()),
    CardRow.state,
    CardRow.scope,
    CardRow.version,
)

#: (card_id, plate, colour, valid_from µs, valid_until µs, state, scope, version)
ListRow = tuple[str, str, str, int, int, str, str, int]


class EpochMicros:
    """Stored instants (SQLite text, PostgreSQL datetimes) → microseconds since the epoch. A card
    list has few distinct validity instants (local midnights), so each is converted once."""

    def __init__(self) -> None:
        self._known: dict[Any, int] = {}

    def __call__(self, raw: Any) -> int:
        found = self._known.get(raw)
        if found is None:
            instant = datetime.fromisoformat(raw) if isinstance(raw, str) else raw
            if instant.tzinfo is None:
                instant = instant.replace(tzinfo=UTC)
            delta = instant - _EPOCH
            found = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
            if len(self._known) < 100_000:
                self._known[raw] = found
        return found

    def rows(self, rows: Iterable[Any]) -> list[ListRow]:
        micros = self
        return [(c, p, col, micros(f), micros(u), st, sc, v) for c, p, col, f, u, st, sc, v in rows]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def count_cards(connection: Connection) -> int:
    return int(connection.execute(select(func.count()).select_from(CardRow)).scalar_one())


def snapshot_rows(connection: Connection, batch: int) -> Iterator[list[ListRow]]:
    """Every card, in batches, inside ``connection``'s transaction. A million rows: read with the
    driver's own cursor (plain tuples; a server-side cursor on PostgreSQL)."""
    micros = EpochMicros()
    sql = str(select(*LIST_COLUMNS).compile(dialect=connection.dialect))
    driver = connection.connection.driver_connection
    assert driver is not None
    cursor = driver.cursor(name="card_snapshot") if connection.dialect.name == "postgresql" else driver.cursor()
    try:
        cursor.execute(sql)
        while rows := cursor.fetchmany(batch):
            yield micros.rows(rows)
    finally:
        cursor.close()


def list_changes(connection: Connection, version: int, limit: int) -> list[ListRow]:
    """Cards whose last change is after ``version``, in version order (each card once, as it is now)."""
    query = select(*LIST_COLUMNS).where(CardRow.version > version).order_by(CardRow.version).limit(limit)
    return EpochMicros().rows(connection.execute(query))


def changed_since(connection: Connection, version: int, limit: int) -> Sequence[Any]:
    """Cards (plate, colour, validity, state) changed after ``version``, in version order."""
    query = (
        select(
            CardRow.card_id,
            CardRow.plate,
            CardRow.color,
            CardRow.valid_from,
            CardRow.valid_until,
            CardRow.state,
            CardRow.version,
        )
        .where(CardRow.version > version)
        .order_by(CardRow.version)
        .limit(limit)
    )
    return connection.execute(query).all()
