"""Platform tables of the card side, and the queries the rest of the platform needs.

* ``lots``: registered lots with the hash of their bearer token and their card-hash key.
* ``cards``: every card ever issued (never deleted), its current state and the global card version
  of its last change; ``request_id`` makes ApplyCard idempotent.
* ``card_renewals``: each renewal, keyed by its request id (idempotent RenewCard).
* ``card_version``: one row holding the latest global card version. Every change locks and bumps it
  in its own transaction, so versions are gap-free (a rollback undoes the bump) and commit order is
  version order (the row lock is held to commit): a lot reading ``version > X`` never misses one.
* ``card_version.log_floor``: how far back a lot may resume with deltas (read from ``cards``: each
  card once, at the version of its last change); a lot holding less than the floor gets a fresh
  snapshot, which is cheaper than a delta of most of the list.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
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
    func,
    insert,
    select,
    type_coerce,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.types import NullType

from card_service.domain import Card, CardStanding, CardState, Lot, MembershipMode, SettlementPeriod
from crosspark.db import Database, PlatformBase
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


# --- lots ----------------------------------------------------------------------------------------


def token_hash(token: str) -> str:
    """What the platform stores of a bearer token. Tokens are 256-bit random values, so a plain
    SHA-256 (not a slow password hash) is the right tool."""
    return hashlib.sha256(token.encode()).hexdigest()


#: The enabled lot holding a token (``HotReads.lot_for_token``: every lot call runs it).
_LOT_FOR_TOKEN = select(LotRow.lot_id).where(LotRow.token_hash == bindparam("token_hash"), LotRow.enabled)


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


class HotReads:
    """The two reads on every lot call, token → lot and vehicle → cards, through raw DBAPI
    connections kept for them alone, with the statements compiled once.

    A Core read pays ~60-120 µs of pool checkout, events, compilation cache and result
    processing for a ~10 µs query; at a thousand membership checks a second that was most of a
    core. Each read is one statement in autocommit, so it sees one committed state (a vehicle's
    cards and the card version together). Connections are made by the engine's own pool (so they
    get its settings) and then detached from it; a connection whose read failed is closed.
    """

    def __init__(self, db: Database, idle: int = 8) -> None:
        self._db = db
        self._idle_max = idle
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        dialect = db.reader.dialect
        self._token = _Compiled(_LOT_FOR_TOKEN, dialect)
        self._vehicle = _Compiled(_VEHICLE_AT_VERSION, dialect)

    def lot_for_token(self, token: str) -> str | None:
        """The enabled lot whose token this is, or None."""
        rows = self._read(self._token, token_hash=token_hash(token))
        return str(rows[0][0]) if rows else None

    def vehicle(self, plate: str, color: PlateColor, lot_id: str) -> tuple[int, list[CardStanding]]:
        """The latest card version and the vehicle's cards as ``lot_id`` sees them."""
        rows = self._read(self._vehicle, plate=plate, color=color.value)
        cards = [
            CardStanding(
                card_id, CardState(state), _instant(since), _instant(until), not scope or lot_id in split_scope(scope)
            )
            for _, card_id, state, since, until, scope in rows
            if card_id is not None
        ]
        return int(rows[0][0]), cards

    def _read(self, statement: _Compiled, **values: Any) -> list[Any]:
        with self._lock:
            connection = self._idle.pop() if self._idle else None
        if connection is None:
            connection = self._connect()
        try:
            cursor = connection.cursor()
            cursor.execute(statement.sql, statement.params(values))
            rows = cursor.fetchall()
            cursor.close()
        except BaseException:
            connection.close()
            raise
        with self._lock:
            if len(self._idle) < self._idle_max:
                self._idle.append(connection)
                connection = None
        if connection is not None:
            connection.close()
        return rows

    def _connect(self) -> Any:
        pooled = self._db.reader.raw_connection()
        pooled.detach()
        connection = pooled.dbapi_connection
        assert connection is not None
        if self._db.dialect == "postgresql":
            connection.rollback()  # a pooled connection may come back in a transaction (pre-ping)
            connection.autocommit = True
        return connection

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


class _Compiled:
    """A Core statement as the driver's SQL and parameters."""

    def __init__(self, statement: Any, dialect: Any) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self._defaults = compiled.params  # the statement's own literals (``id = 1``)
        self._order = compiled.positiontup if compiled.positional else None

    def params(self, values: dict[str, Any]) -> Any:
        values = {**self._defaults, **values}
        return values if self._order is None else tuple(values[name] for name in self._order)


def _instant(raw: Any) -> datetime:
    """A stored instant read raw: SQLite's text (UTC, no offset) or PostgreSQL's aware datetime."""
    return datetime.fromisoformat(raw).replace(tzinfo=UTC) if isinstance(raw, str) else raw


_VEHICLE_AT_VERSION = (
    select(
        CardVersionRow.version, CardRow.card_id, CardRow.state, CardRow.valid_from, CardRow.valid_until, CardRow.scope
    )
    .select_from(
        CardVersionRow.__table__.outerjoin(
            CardRow.__table__, and_(CardRow.plate == bindparam("plate"), CardRow.color == bindparam("color"))
        )
    )
    .where(CardVersionRow.id == 1)
)


def insert_card(session: Session, card: Card, request_id: str | None, request_digest: str) -> None:
    session.execute(insert(CardRow).values(**row_values(card), request_id=request_id, request_digest=request_digest))


#: Columns of a card loaded in bulk (``load_cards``), in the order its row tuples give them; the
#: other columns are the same for every card of one load.
LOAD_COLUMNS = (
    "card_id",
    "request_id",
    "plate",
    "color",
    "holder_name",
    "holder_phone",
    "start_date",
    "months",
    "valid_from",
    "valid_until",
    "scope",
    "version",
)


def _card_constants(time_zone: str, at: datetime) -> dict[str, Any]:
    """The columns every card of one import shares: new active cards created ``at``."""
    return {
        "request_digest": "",
        "time_zone": time_zone,
        "state": CardState.ACTIVE.value,
        "cancel_reason": "",
        "created_at": at,
        "updated_at": at,
    }


def card_rows(dialect: str, time_zone: str, at: datetime) -> Callable[[Sequence[tuple[Any, ...]]], list[Any]]:
    """A function turning row tuples in ``LOAD_COLUMNS`` order into the rows ``card_loader``
    stores (dates and instants as the backend's text, the shared columns appended). It needs no
    connection, so the rows can be formed in another process than the one loading them."""
    return _row_former(dialect, CardRow.__table__, LOAD_COLUMNS, _card_constants(time_zone, at))


@contextmanager
def card_loader(session: Session, time_zone: str, at: datetime) -> Iterator[Callable[[Sequence[Any]], None]]:
    """A bulk load of new active cards (card import) in the session's transaction: call the
    function it gives with rows formed by ``card_rows`` for the same zone and instant, as often as
    needed. On PostgreSQL the rows stream into one COPY, which the server works through while the
    caller prepares the next rows."""
    with _bulk_writer(session, CardRow.__table__, [*LOAD_COLUMNS, *_card_constants(time_zone, at)]) as write:
        yield write


def _row_former(
    dialect: str, table: Any, names: Sequence[str], constants: dict[str, Any]
) -> Callable[[Sequence[tuple[Any, ...]]], list[Any]]:
    """Rows (tuples of the columns ``names``) as ``_bulk_writer`` stores them: each followed by the
    same ``constants``, dates and instants as text already in the backend's stored form (each
    distinct value formatted once: a load has few), which skips per-value type processing: on
    SQLite that made a bulk load several times faster, on PostgreSQL it cut COPY's row formatting
    from ~7.5 to ~1.3 µs."""
    to_text = _StoredText(_sqlite_text if dialect == "sqlite" else _postgresql_text)
    tail = tuple(to_text(v) for v in constants.values())
    positions = [i for i, name in enumerate(names) if isinstance(table.c[name].type, (UtcDateTime, Date))]

    def formed(rows: Sequence[tuple[Any, ...]]) -> list[Any]:
        if positions:
            return [to_text.row(row, positions) + tail for row in rows]
        return [row + tail for row in rows] if tail else list(rows)

    return formed


@contextmanager
def _bulk_writer(session: Session, table: Any, columns: Sequence[str]) -> Iterator[Callable[[Sequence[Any]], None]]:
    """A function that loads rows formed by ``_row_former`` (values of ``columns``) by the fastest
    path of the backend: COPY on PostgreSQL, executemany on SQLite."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        driver = connection.connection.driver_connection
        assert driver is not None
        with driver.cursor() as cursor, cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:

            def copy_rows(rows: Sequence[Any]) -> None:
                write = copy.write_row
                for row in rows:
                    write(row)

            yield copy_rows
        return
    quote = connection.dialect.identifier_preparer.quote
    marks = ", ".join("?" * len(columns))
    statement = f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, columns))}) VALUES ({marks})"

    def insert_rows(rows: Sequence[Any]) -> None:
        connection.exec_driver_sql(statement, rows)  # type: ignore[arg-type]

    yield insert_rows


class _StoredText:
    """Dates and instants as the text a backend stores or parses, each distinct value formatted
    once (other values pass unchanged)."""

    def __init__(self, text: Callable[[date], str]) -> None:
        self._text = text
        self._known: dict[Any, Any] = {}

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, date):
            return value
        text = self._known.get(value)
        if text is None:
            text = self._known[value] = self._text(value)
        return text

    def row(self, row: tuple[Any, ...], positions: Sequence[int]) -> tuple[Any, ...]:
        """``row`` with the values at ``positions`` as text (a card import's hot path: the look-up
        of a value already formatted is inlined, a third of the cost of calling for it)."""
        values = list(row)
        known = self._known
        for i in positions:
            value = values[i]
            text = known.get(value)
            values[i] = self(value) if text is None else text
        return tuple(values)


def _sqlite_text(value: date) -> str:
    """How SQLAlchemy's SQLite dialect stores a date or (UTC, naive) datetime."""
    if isinstance(value, datetime):
        value = value.astimezone(UTC).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond:06d}"
    return value.isoformat()


def _postgresql_text(value: date) -> str:
    """PostgreSQL's input form of a date or aware instant (ISO 8601 with its offset)."""
    if isinstance(value, datetime) and value.tzinfo is None:
        raise ValueError("naive datetime given for a UTC instant column")
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
    """Cards (request id, plate, colour, validity, state) changed after ``version``, in version order."""
    query = (
        select(
            CardRow.card_id,
            CardRow.request_id,
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
