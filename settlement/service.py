"""Settlement use cases other than ingest and issuing: tariffs, signing keys, statement delivery,
reconciliation (费用核对) and disputes. Each opens a unit of work, applies the domain, commits."""

from __future__ import annotations

import base64
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from crosspark.clock import Clock
from crosspark.db import Database
from crosspark.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from settlement import statement_file
from settlement.store import (
    DisputeRow,
    SigningKeyRow,
    StatementChunkRow,
    StatementRow,
    StayRow,
    TariffRow,
    lot_settings,
)
from settlement.tariff import Band, Tariff, TariffError, TariffKind

MAX_PAGE = 1000
DEFAULT_PAGE = 100
MAX_NOTE = 256
MAX_RESOLUTION_NOTE = 512

# ---------------------------------------------------------------------------------------- tariffs


def tariff_of(row: TariffRow, time_zone: str) -> Tariff:
    return Tariff(
        kind=TariffKind(row.kind),
        time_zone=time_zone,
        visit_fee_fen=row.visit_fee_fen,
        unit_minutes=row.unit_minutes,
        bands=tuple(Band.parse(str(start), int(fee)) for start, fee in row.bands),
        free_minutes=row.free_minutes,
        cap_per_24h_fen=row.cap_per_24h_fen,
        max_per_stay_fen=row.max_per_stay_fen,
        version=row.version,
        effective_from=row.effective_from,
        lot_id=row.lot_id,
    )


def lot_tariffs(session: Session, lot_id: str, time_zone: str) -> list[Tariff]:
    rows = session.scalars(select(TariffRow).where(TariffRow.lot_id == lot_id).order_by(TariffRow.version))
    return [tariff_of(row, time_zone) for row in rows]


def put_tariff(db: Database, clock: Clock, tariff: Tariff) -> tuple[Tariff, datetime]:
    """Add the next version of a lot's tariff; returns it (with its version) and its creation time."""
    if tariff.effective_from is None:
        raise InvalidArgument.field("tariff.effective_from", "is required")
    with db.session() as session:
        settings = lot_settings(session, tariff.lot_id)
        if settings is None:
            raise NotFound(f"lot {tariff.lot_id!r} is not registered")
        last = session.scalars(
            select(TariffRow).where(TariffRow.lot_id == tariff.lot_id).order_by(TariffRow.version.desc()).limit(1)
        ).first()
        if last is not None and tariff.effective_from < last.effective_from:
            raise FailedPrecondition(
                f"effective_from {tariff.effective_from.isoformat()} is before version {last.version}'s "
                f"{last.effective_from.isoformat()}; versions follow each other in time"
            )
        try:
            stored = replace(tariff, time_zone=settings[0], version=(last.version if last else 0) + 1)
        except TariffError as exc:
            raise InvalidArgument.field(f"tariff.{exc.field}", exc.description) from None
        now = clock.now()
        session.add(
            TariffRow(
                lot_id=stored.lot_id,
                version=stored.version,
                effective_from=tariff.effective_from,
                kind=stored.kind.value,
                visit_fee_fen=stored.visit_fee_fen,
                unit_minutes=stored.unit_minutes,
                bands=[[b.start, b.unit_fee_fen] for b in stored.bands],
                free_minutes=stored.free_minutes,
                cap_per_24h_fen=stored.cap_per_24h_fen,
                max_per_stay_fen=stored.max_per_stay_fen,
                created_at=now,
            )
        )
    return stored, now


def get_tariffs(db: Database, lot_id: str, at: datetime | None) -> list[tuple[Tariff, datetime]]:
    """Every version of a lot's tariff, or only the one in force at ``at``."""
    with db.read_session() as session:
        settings = lot_settings(session, lot_id)
        if settings is None:
            raise NotFound(f"lot {lot_id!r} is not registered")
        rows = list(session.scalars(select(TariffRow).where(TariffRow.lot_id == lot_id).order_by(TariffRow.version)))
    found = [(tariff_of(row, settings[0]), row.created_at) for row in rows]
    if at is not None:
        in_force = [f for f in found if f[0].effective_from is not None and f[0].effective_from <= at]
        in_force.sort(key=lambda f: (f[0].effective_from, f[0].version))  # type: ignore[arg-type, return-value]
        if not in_force:
            raise NotFound(f"lot {lot_id!r} has no tariff in force at {at.isoformat()}")
        return in_force[-1:]
    return found


# ---------------------------------------------------------------------------------------- signing keys


@dataclass(frozen=True)
class SigningKey:
    key_id: str
    private_key: bytes
    public_key: bytes


class SigningKeys:
    """The platform's statement-signing key, kept in the database so every replica signs with the
    same key; generated on first use."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._lock = threading.Lock()
        self._current: SigningKey | None = None

    def current(self) -> SigningKey:
        with self._lock:
            if self._current is None:
                self._current = self._load() or self._create()
            return self._current

    def _load(self) -> SigningKey | None:
        with self._db.read_session() as session:
            row = session.scalars(
                select(SigningKeyRow).order_by(SigningKeyRow.created_at, SigningKeyRow.key_id)
            ).first()
            return SigningKey(row.key_id, row.private_key, row.public_key) if row else None

    def _create(self) -> SigningKey:
        private = statement_file.new_private_key()
        public = statement_file.public_key_of(private)
        with self._db.session() as session:
            session.add(
                SigningKeyRow(
                    key_id=statement_file.key_id(public),
                    public_key=public,
                    private_key=private,
                    created_at=self._clock.now(),
                )
            )
        # Another replica may have created one at the same moment: all agree on the oldest.
        loaded = self._load()
        assert loaded is not None
        return loaded

    def published(self) -> list[SigningKeyRow]:
        self.current()
        with self._db.read_session() as session:
            return list(session.scalars(select(SigningKeyRow).order_by(SigningKeyRow.created_at)))


# ---------------------------------------------------------------------------------------- statements


class StatementNotifier:
    """Wakes this process's WatchStatements streams when it issues a statement (streams also poll
    the database, for statements issued by other replicas)."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._generation = 0

    def notify(self) -> None:
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    def wait(self, timeout: float) -> None:
        with self._condition:
            generation = self._generation
            self._condition.wait_for(lambda: self._generation != generation, timeout)


def _page(token: str) -> int:
    if not token:
        return 0
    try:
        return int(base64.urlsafe_b64decode(token.encode()).decode())
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument.field("page.page_token", "is not a token from a previous reply") from None


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode()).decode()


def page_size(size: int) -> int:
    if size < 0 or size > MAX_PAGE:
        raise InvalidArgument.field("page.page_size", f"must be 0–{MAX_PAGE}")
    return size or DEFAULT_PAGE


def list_statements(db: Database, lot_id: str, size: int, token: str) -> tuple[list[StatementRow], str]:
    """A lot's statements (or every lot's, when ``lot_id`` is empty) by lot and sequence number."""
    limit, offset = page_size(size), _page(token)
    query = select(StatementRow).order_by(StatementRow.lot_id, StatementRow.seq).offset(offset).limit(limit + 1)
    if lot_id:
        query = query.where(StatementRow.lot_id == lot_id)
    with db.read_session() as session:
        rows = list(session.scalars(query))
    more = len(rows) > limit
    return rows[:limit], _token(offset + limit) if more else ""


def statements_after(db: Database, lot_id: str, after_seq: int) -> list[StatementRow]:
    with db.read_session() as session:
        return list(
            session.scalars(
                select(StatementRow)
                .where(StatementRow.lot_id == lot_id, StatementRow.seq > after_seq)
                .order_by(StatementRow.seq)
                .limit(MAX_PAGE)
            )
        )


def get_statement(db: Database, statement_id: str) -> StatementRow:
    with db.read_session() as session:
        row = session.get(StatementRow, statement_id)
    if row is None:
        raise NotFound(f"statement {statement_id!r} does not exist")
    return row


def statement_chunks(db: Database, statement_id: str) -> Iterator[bytes]:
    """The file's bytes in stored chunks (each ≤ 1 MiB), read one at a time."""
    with db.read_session() as session:
        numbers = list(
            session.scalars(
                select(StatementChunkRow.chunk_no)
                .where(StatementChunkRow.statement_id == statement_id)
                .order_by(StatementChunkRow.chunk_no)
            )
        )
    for number in numbers:
        with db.read_session() as session:
            chunk = session.get(StatementChunkRow, (statement_id, number))
            assert chunk is not None
            data = chunk.data
        yield data


def statement_bytes(db: Database, statement_id: str) -> bytes:
    return b"".join(statement_chunks(db, statement_id))


def record_fetch(db: Database, clock: Clock, statement_id: str) -> None:
    """The lot received the whole file: first fetch moves ISSUED to FETCHED."""
    now = clock.now()
    with db.session() as session:
        row = session.get(StatementRow, statement_id)
        if row is None:
            return
        row.fetch_count += 1
        if row.fetched_at is None:
            row.fetched_at = now
        if row.status == "ISSUED":
            row.status = "FETCHED"


# ---------------------------------------------------------------------------------------- reconciliation


@dataclass(frozen=True)
class ReconciliationItem:
    stay_id: str
    result: str  # MATCHED, FEE_MISMATCH, MISSING_IN_STATEMENT, UNKNOWN_TO_LOT
    line_no: int
    platform_fee_fen: int
    lot_fee_fen: int
    note: str


RESULTS = ("MATCHED", "FEE_MISMATCH", "MISSING_IN_STATEMENT", "UNKNOWN_TO_LOT")


def submit_reconciliation(
    db: Database,
    clock: Clock,
    lot_id: str,
    statement_id: str,
    sha256: str,
    items: list[ReconciliationItem],
    matched_count: int,
) -> tuple[StatementRow, list[DisputeRow]]:
    """Record the lot's check of a statement and open a dispute for every line it disagrees with.
    A second submission for the same statement returns the first one's receipt."""
    statement = get_statement(db, statement_id)
    if statement.lot_id != lot_id:
        raise NotFound(f"statement {statement_id!r} is not a statement of lot {lot_id!r}")
    if sha256.lower() != statement.sha256:
        raise FailedPrecondition("sha256 is not the digest of this statement's file: verify the file you fetched")
    if statement.reconciled_at is not None:
        with db.read_session() as session:
            return statement, list(session.scalars(select(DisputeRow).where(DisputeRow.statement_id == statement_id)))
    document = statement_file.parse(statement_bytes(db, statement_id))
    by_line = {line.line_no: line for line in document.lines}
    stays = {line.stay_id for line in document.lines if line.kind == "STAY"}
    disputed: list[tuple[ReconciliationItem, dict[str, str | int | bool] | None]] = []
    seen: set[tuple[str, str]] = set()
    for index, item in enumerate(items):
        where = f"items[{index}]"
        if item.result not in RESULTS:
            raise InvalidArgument.field(f"{where}.result", "is unspecified")
        if not item.stay_id or len(item.stay_id) > 64:
            raise InvalidArgument.field(f"{where}.stay_id", "must be 1–64 characters")
        if len(item.note) > MAX_NOTE:
            raise InvalidArgument.field(f"{where}.note", f"is longer than {MAX_NOTE} characters")
        if (item.stay_id, item.result) in seen:
            raise InvalidArgument.field(f"{where}.stay_id", "is listed twice")
        seen.add((item.stay_id, item.result))
        if item.result == "MISSING_IN_STATEMENT":
            if item.stay_id in stays:
                raise InvalidArgument.field(f"{where}.stay_id", "is in the statement; it is not missing")
            disputed.append((item, _missing_line(db, lot_id, item.stay_id)))
            continue
        line = by_line.get(item.line_no)
        if line is None or line.stay_id != item.stay_id:
            raise InvalidArgument.field(
                f"{where}.line_no", f"line {item.line_no} of the statement is not stay {item.stay_id!r}"
            )
        if item.platform_fee_fen != line.fee_fen:
            raise InvalidArgument.field(
                f"{where}.platform_fee_fen", f"the statement's fee on line {line.line_no} is {line.fee_fen} fen"
            )
        if item.result != "MATCHED":
            disputed.append((item, _line_snapshot(line)))
    now = clock.now()
    with db.session() as session:
        row = session.get(StatementRow, statement_id, with_for_update=True)
        assert row is not None
        if row.reconciled_at is not None:
            raise AlreadyExists(f"statement {statement_id!r} was reconciled meanwhile")
        disputes = [
            DisputeRow(
                dispute_id=f"dsp_{uuid.uuid4().hex[:20]}",
                lot_id=lot_id,
                statement_id=statement_id,
                stay_id=item.stay_id,
                result=item.result,
                line_no=item.line_no,
                platform_fee_fen=item.platform_fee_fen,
                lot_fee_fen=item.lot_fee_fen,
                note=item.note,
                state="OPEN",
                resolution_note="",
                opened_at=now,
                line=line,
            )
            for item, line in disputed
        ]
        session.add_all(disputes)
        row.reconciled_at = now
        row.matched_count = matched_count
        row.status = "DISPUTED" if disputes else "RECONCILED"
    return row, disputes


def _line_snapshot(line: statement_file.StatementLine) -> dict[str, str | int | bool]:
    return {
        "stay_id": line.stay_id,
        "card_id": line.card_id,
        "plate": line.plate,
        "color": line.color,
        "entry_at": line.entry_at.isoformat(),
        "exit_at": line.exit_at.isoformat(),
        "duration_seconds": line.duration_seconds,
        "tariff_version": line.tariff_version,
        "entry_passage_id": line.entry_passage_id,
        "exit_passage_id": line.exit_passage_id,
    }


def _missing_line(db: Database, lot_id: str, stay_id: str) -> dict[str, str | int | bool] | None:
    """What the platform holds of a stay the lot says the statement lacks (None: nothing)."""
    from settlement.store import from_us

    with db.read_session() as session:
        stay = session.get(StayRow, stay_id)
    if stay is None or stay.lot_id != lot_id:
        return None
    return {
        "stay_id": stay.stay_id,
        "card_id": stay.card_id,
        "plate": stay.plate,
        "color": stay.color,
        "entry_at": from_us(stay.entry_us).isoformat(),
        "exit_at": from_us(stay.exit_us).isoformat(),
        "duration_seconds": (stay.settle_to_us - stay.entry_us) // 1_000_000,
        "tariff_version": 0,
        "entry_passage_id": stay.entry_passage_id,
        "exit_passage_id": stay.exit_passage_id,
    }


# ---------------------------------------------------------------------------------------- disputes


def list_disputes(db: Database, lot_id: str, state: str, size: int, token: str) -> tuple[list[DisputeRow], str]:
    limit, offset = page_size(size), _page(token)
    query = select(DisputeRow).order_by(DisputeRow.opened_at, DisputeRow.dispute_id).offset(offset).limit(limit + 1)
    if lot_id:
        query = query.where(DisputeRow.lot_id == lot_id)
    if state:
        query = query.where(DisputeRow.state == state)
    with db.read_session() as session:
        rows = list(session.scalars(query))
    return rows[:limit], _token(offset + limit) if len(rows) > limit else ""


def resolve_dispute(db: Database, clock: Clock, dispute_id: str, accept_lot: bool, note: str) -> DisputeRow:
    """The operator's decision: the lot's figure (an adjustment line follows in the lot's next
    statement) or the platform's. When a statement's last open dispute is resolved, it is RESOLVED."""
    if len(note) > MAX_RESOLUTION_NOTE:
        raise InvalidArgument.field("note", f"is longer than {MAX_RESOLUTION_NOTE} characters")
    now = clock.now()
    with db.session() as session:
        row = session.get(DisputeRow, dispute_id, with_for_update=True)
        if row is None:
            raise NotFound(f"dispute {dispute_id!r} does not exist")
        if row.state != "OPEN":
            raise FailedPrecondition(f"dispute {dispute_id!r} is already {row.state}")
        row.state = "ACCEPTED" if accept_lot else "REJECTED"
        row.resolution_note = note
        row.resolved_at = now
        session.flush()
        still_open = session.scalar(
            select(func.count())
            .select_from(DisputeRow)
            .where(DisputeRow.statement_id == row.statement_id, DisputeRow.state == "OPEN")
        )
        if not still_open:
            session.execute(
                update(StatementRow).where(StatementRow.statement_id == row.statement_id).values(status="RESOLVED")
            )
    return row
