"""Issuing statements (对账文件, DESIGN sections 8 and 13).

A statement is issued for each of a lot's periods once the period has ended plus the lot's close
delay (``PER_EXIT``: one per monthly-card exit, as soon as it is ingested). It carries every stay of
the lot not yet in a statement whose exit falls before the period's end: those of earlier periods
arrived after their own statement and are marked ``late``. Accepted disputes become ADJUSTMENT
lines (lot's fee − platform's fee) naming the line they correct.

Lines show the stay's real exit; ``duration_seconds``, units and fee cover the settled part
``[entry, settle_to)`` (shorter only for CARD_ENDED_IN_STAY stays).

Replicas: each statement is one transaction holding the lot's ``statement_schedule`` row
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL: a replica skips a lot another one is issuing; SQLite
serialises writers anyway); ``uq_statements_lot_seq`` and ``uq_statements_lot_period`` are the last
guard against a double statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import structlog
from sqlalchemy import Connection, Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from crosspark.db import Database
from settlement import statement_file
from settlement.periods import SettlementPeriod, period_after, period_containing
from settlement.service import SigningKey, lot_tariffs
from settlement.statement_file import StatementHeader, StatementLine
from settlement.store import (
    DisputeRow,
    StatementChunkRow,
    StatementRow,
    StatementScheduleRow,
    StayRow,
    from_us,
    to_us,
)
from settlement.tariff import price_stays_by_version

log = structlog.get_logger("settlement.issuing")

CHUNK_BYTES = 1 << 20
_IN_CHUNK = 5_000


@dataclass(frozen=True)
class LotSchedule:
    lot_id: str
    time_zone: str
    period: SettlementPeriod
    close_delay: timedelta
    registered_at: datetime


def _lots(db: Database, lot_id: str | None) -> list[LotSchedule]:
    from card_service.store import LotRow

    query = select(LotRow.lot_id, LotRow.time_zone, LotRow.period, LotRow.close_delay_seconds, LotRow.registered_at)
    query = query.where(LotRow.enabled) if not lot_id else query.where(LotRow.lot_id == lot_id)
    with db.read_session() as session:
        rows = session.execute(query.order_by(LotRow.lot_id)).all()
    return [LotSchedule(r[0], r[1], SettlementPeriod.parse(r[2]), timedelta(seconds=r[3]), r[4]) for r in rows]


def issue_due(
    db: Database, key: SigningKey, as_of: datetime, now: datetime, lot_id: str | None = None
) -> list[StatementRow]:
    """Issue every statement that is due at ``as_of`` (for one lot or all); returns those issued.
    ``now`` is the issuing instant written into the files."""
    lots = _lots(db, lot_id)
    pending = _lots_with_pending_work(db, [lot.lot_id for lot in lots if lot.period is SettlementPeriod.PER_EXIT])
    with db.read_session() as session:
        schedule = session.execute(select(StatementScheduleRow.lot_id, StatementScheduleRow.issued_through))
        issued_through = {lot: through for lot, through in schedule}
    issued: list[StatementRow] = []
    for lot in lots:
        if lot.period is SettlementPeriod.PER_EXIT and lot.lot_id not in pending:
            continue
        if lot.period is not SettlementPeriod.PER_EXIT and not _periodic_due(
            lot, issued_through.get(lot.lot_id), as_of
        ):
            continue
        issued.extend(issue_for_lot(db, key, lot, as_of, now))
    return issued


def _lots_with_pending_work(db: Database, lot_ids: list[str]) -> set[str]:
    """Of these (PER_EXIT) lots, those with a stay or an accepted dispute no statement carries yet."""
    if not lot_ids:
        return set()
    with db.read_session() as session:
        lots = {
            lot_id
            for lot_id in lot_ids
            if session.scalar(
                select(StayRow.stay_id).where(StayRow.lot_id == lot_id, StayRow.statement_seq.is_(None)).limit(1)
            )
        }
        lots.update(
            session.scalars(
                select(DisputeRow.lot_id)
                .where(
                    DisputeRow.lot_id.in_(lot_ids),
                    DisputeRow.state == "ACCEPTED",
                    DisputeRow.adjusted_in_statement_id.is_(None),
                )
                .distinct()
            )
        )
    return lots


def _first_period(lot: LotSchedule) -> tuple[datetime, datetime]:
    return period_containing(lot.period, lot.registered_at, lot.time_zone)


def _periodic_due(lot: LotSchedule, issued_through: datetime | None, as_of: datetime) -> bool:
    """Whether the period after ``issued_through`` (or the lot's first) has closed at ``as_of``."""
    period = period_after(lot.period, issued_through, lot.time_zone) if issued_through else _first_period(lot)
    return period[1] + lot.close_delay <= as_of


def issue_for_lot(
    db: Database, key: SigningKey, lot: LotSchedule, as_of: datetime, now: datetime
) -> list[StatementRow]:
    """Issue the lot's due statements one transaction each, until none is due or another replica
    holds the lot."""
    _ensure_schedule_row(db, lot.lot_id)
    issued = []
    while True:
        try:
            row = _issue_next(db, key, lot, as_of, now)
        except IntegrityError:
            log.warning("statement.collision", lot_id=lot.lot_id)  # another replica issued it first
            break
        if row is None:
            break
        issued.append(row)
        if lot.period is not SettlementPeriod.PER_EXIT and not _periodic_due(lot, row.period_to, as_of):
            break
    return issued


def _ensure_schedule_row(db: Database, lot_id: str) -> None:
    with db.read_session() as session:
        if session.get(StatementScheduleRow, lot_id) is not None:
            return
    dialect = postgresql if db.dialect == "postgresql" else sqlite
    table: Table = StatementScheduleRow.__table__  # type: ignore[assignment]
    with db.writer.begin() as conn:
        conn.execute(
            dialect.insert(table).values(lot_id=lot_id, last_seq=0, issued_through=None).on_conflict_do_nothing()
        )


def _issue_next(db: Database, key: SigningKey, lot: LotSchedule, as_of: datetime, now: datetime) -> StatementRow | None:
    with db.session() as session:
        state = session.scalars(
            select(StatementScheduleRow)
            .where(StatementScheduleRow.lot_id == lot.lot_id)
            .with_for_update(skip_locked=True)
        ).first()
        if state is None:
            return None  # another replica is issuing this lot's statements
        conn = session.connection()
        adjustments = list(
            session.scalars(
                select(DisputeRow)
                .where(
                    DisputeRow.lot_id == lot.lot_id,
                    DisputeRow.state == "ACCEPTED",
                    DisputeRow.adjusted_in_statement_id.is_(None),
                )
                .order_by(DisputeRow.resolved_at, DisputeRow.dispute_id)
            )
        )
        if lot.period is SettlementPeriod.PER_EXIT:
            stays = _unstated(conn, lot.lot_id, None, limit=1)
            if stays.size:
                exit_at = from_us(int(stays.exit_us[0]))
                period_from = period_to = exit_at
                period_key = f"PER_EXIT:{stays.stay_id[0]}"
            elif adjustments:
                period_from = period_to = as_of
                period_key = f"ADJUSTMENT:{adjustments[0].dispute_id}"
            else:
                return None
        else:
            if state.issued_through is not None:
                period_from, period_to = period_after(lot.period, state.issued_through, lot.time_zone)
            else:
                period_from, period_to = _first_period(lot)
            if period_to + lot.close_delay > as_of:
                return None
            stays = _unstated(conn, lot.lot_id, to_us(period_to), limit=None)
            period_key = f"{lot.period.value}:{period_from.isoformat()}"
            state.issued_through = period_to
        seq = state.last_seq + 1
        statement_id = f"stmt_{lot.lot_id}_{seq}"
        rows, visits, total = _stay_rows(session, lot, stays, to_us(period_from))
        adjustment_lines = _adjustment_lines(adjustments, len(rows) + 1)
        zone = ZoneInfo(lot.time_zone)
        rows.extend(statement_file.line_row(line, zone) for line in adjustment_lines)
        totals = statement_file.StatementTotals(
            len(rows), visits, total + sum(line.fee_fen for line in adjustment_lines)
        )
        header = StatementHeader(
            statement_id=statement_id,
            lot_id=lot.lot_id,
            seq=seq,
            settlement_period=lot.period.value,
            period_from=period_from,
            period_to=period_to,
            time_zone=lot.time_zone,
            issued_at=now,
            key_id=key.key_id,
        )
        data = statement_file.render_rows(header, rows, totals)
        row = StatementRow(
            statement_id=statement_id,
            lot_id=lot.lot_id,
            seq=seq,
            period=lot.period.value,
            period_key=period_key,
            period_from=period_from,
            period_to=period_to,
            time_zone=lot.time_zone,
            issued_at=now,
            line_count=totals.line_count,
            visit_count=totals.visit_count,
            total_fee_fen=totals.total_fee_fen,
            file_size=len(data),
            sha256=statement_file.sha256_hex(data),
            signature=statement_file.sign(key.private_key, data),
            key_id=key.key_id,
            status="ISSUED",
            fetch_count=0,
        )
        session.add(row)
        session.flush()
        session.add_all(
            StatementChunkRow(statement_id=statement_id, chunk_no=i, data=data[start : start + CHUNK_BYTES])
            for i, start in enumerate(range(0, max(len(data), 1), CHUNK_BYTES))
        )
        _mark_stated(conn, stays.stay_id.tolist(), seq)
        for dispute in adjustments:
            dispute.adjusted_in_statement_id = statement_id
        state.last_seq = seq
    log.info("statement.issued", statement_id=statement_id, lines=row.line_count, total_fee_fen=row.total_fee_fen)
    return row


def _mark_stated(conn: Connection, stay_ids: list[str], seq: int) -> None:
    """Stays now carried by statement ``seq`` (raw SQL: a month of a busy lot is many ids)."""
    postgresql = conn.dialect.name == "postgresql"
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        for start in range(0, len(stay_ids), _IN_CHUNK):
            chunk = stay_ids[start : start + _IN_CHUNK]
            if postgresql:
                cursor.execute("UPDATE stays SET statement_seq = %s WHERE stay_id = ANY(%s)", [seq, chunk])
            else:
                marks = ", ".join("?" * len(chunk))
                cursor.execute(f"UPDATE stays SET statement_seq = ? WHERE stay_id IN ({marks})", [seq, *chunk])
    finally:
        cursor.close()


@dataclass
class _Stays:
    """Unstated stays of a lot as columns."""

    stay_id: np.ndarray
    card_id: list[str]
    plate: list[str]
    color: list[str]
    entry_us: np.ndarray
    exit_us: np.ndarray
    settle_to_us: np.ndarray
    entry_passage_id: list[str]
    exit_passage_id: list[str]

    @property
    def size(self) -> int:
        return len(self.stay_id)


def _unstated(conn: Connection, lot_id: str, before_us: int | None, limit: int | None) -> _Stays:
    """The lot's stays no statement carries yet (exit before ``before_us``), by exit."""
    mark = "%s" if conn.dialect.name == "postgresql" else "?"
    sql = (
        "SELECT stay_id, card_id, plate, color, entry_us, exit_us, settle_to_us, entry_passage_id, exit_passage_id "
        f"FROM stays WHERE lot_id = {mark} AND statement_seq IS NULL"
    )
    params: list[object] = [lot_id]
    if before_us is not None:
        sql += f" AND exit_us < {mark}"
        params.append(before_us)
    sql += " ORDER BY exit_us, stay_id"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    columns: list[Any] = list(zip(*rows, strict=True)) if rows else [() for _ in range(9)]
    return _Stays(
        stay_id=np.array(columns[0], dtype=object),
        card_id=list(columns[1]),
        plate=list(columns[2]),
        color=list(columns[3]),
        entry_us=np.array(columns[4], dtype=np.int64),
        exit_us=np.array(columns[5], dtype=np.int64),
        settle_to_us=np.array(columns[6], dtype=np.int64),
        entry_passage_id=list(columns[7]),
        exit_passage_id=list(columns[8]),
    )


def _stay_rows(session, lot: LotSchedule, stays: _Stays, period_from_us: int) -> tuple[list[tuple], int, int]:  # type: ignore[no-untyped-def, type-arg]
    """The statement rows of the stays, formatted, with their visit count and total fee."""
    if not stays.size:
        return [], 0, 0
    tariffs = lot_tariffs(session, lot.lot_id, lot.time_zone)
    entry_s = stays.entry_us // 1_000_000
    settle_s = stays.settle_to_us // 1_000_000
    fee, units, visits, version = price_stays_by_version(tariffs, entry_s, settle_s)
    entry_at = statement_file.format_instants(entry_s, lot.time_zone)
    exit_at = statement_file.format_instants(stays.exit_us // 1_000_000, lot.time_zone)
    late = np.where(stays.exit_us < period_from_us, "true", "false").tolist()
    fees = [statement_file.yuan(f) for f in fee.tolist()]
    rows = list(
        zip(
            range(1, stays.size + 1),
            ["STAY"] * stays.size,
            stays.stay_id.tolist(),
            stays.card_id,
            stays.plate,
            stays.color,
            entry_at,
            exit_at,
            (settle_s - entry_s).tolist(),
            units.tolist(),
            visits.tolist(),
            version.tolist(),
            fees,
            stays.entry_passage_id,
            stays.exit_passage_id,
            late,
            [""] * stays.size,
            strict=True,
        )
    )
    return rows, int(visits.sum()), int(fee.sum())


def _adjustment_lines(disputes: list[DisputeRow], first_line_no: int) -> list[StatementLine]:
    lines = []
    for offset, dispute in enumerate(disputes):
        line = dispute.line or {}
        lines.append(
            StatementLine(
                line_no=first_line_no + offset,
                kind="ADJUSTMENT",
                stay_id=dispute.stay_id,
                card_id=str(line.get("card_id", "")),
                plate=str(line.get("plate", "")),
                color=str(line.get("color", "")),
                entry_at=datetime.fromisoformat(str(line["entry_at"])) if "entry_at" in line else dispute.opened_at,
                exit_at=datetime.fromisoformat(str(line["exit_at"])) if "exit_at" in line else dispute.opened_at,
                duration_seconds=int(line.get("duration_seconds", 0)),
                units=0,
                visits=0,
                tariff_version=int(line.get("tariff_version", 0)),
                fee_fen=dispute.lot_fee_fen - dispute.platform_fee_fen,
                entry_passage_id=str(line.get("entry_passage_id", "")),
                exit_passage_id=str(line.get("exit_passage_id", "")),
                adjusts=f"{dispute.statement_id}#{dispute.line_no}",
            )
        )
    return lines
