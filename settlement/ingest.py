"""Passage ingest (ReportPassages): every stream hands its batches to one writer thread, which
decides them against what the database holds and commits many streams' batches in one transaction
(group commit: one fsync for all of them). A stream gets its acks only after that commit, so every
acknowledged passage is durable. Inserts ignore rows another replica committed meanwhile, so two
replicas receiving the same passage store it once."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain

import structlog
from sqlalchemy import Connection, Table, select, update

from crosspark.clock import Clock
from crosspark.db import Database
from crosspark.errors import Unavailable
from settlement.domain import EXIT, Ack, Decision, HeldEntry, Passage, Stay, check_passages, decide
from settlement.store import PassageRow, StayRow, from_us, to_us

log = structlog.get_logger("settlement.ingest")

#: Most passages one group commit takes; more wait for the next one.
MAX_GROUP = 40_000
_IN_CHUNK = 5_000


@dataclass
class _Job:
    lot_id: str
    passages: Sequence[Passage]
    outbox_depth: int
    outbox_oldest_us: int | None
    problems: list[str]
    rows: list[tuple[object, ...] | None]
    done: threading.Event = field(default_factory=threading.Event)
    decisions: list[Decision] = field(default_factory=list)
    error: BaseException | None = None


class PassageIngest:
    """Decides and stores reported passages; ``submit`` blocks until its batch is committed."""

    def __init__(
        self, db: Database, clock: Clock, stop: threading.Event, on_stays: Callable[[set[str]], None] | None = None
    ) -> None:
        self._db = db
        self._clock = clock
        self._stop = stop
        self._on_stays = on_stays
        self._queue: queue.Queue[_Job] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._insert_passages = _MultiRowInsert(PassageRow.__table__, PASSAGE_COLUMNS, db.dialect)  # type: ignore[arg-type]
        self._insert_stays = _MultiRowInsert(StayRow.__table__, STAY_COLUMNS, db.dialect)  # type: ignore[arg-type]

    def submit(
        self, lot_id: str, passages: Sequence[Passage], outbox_depth: int = 0, outbox_oldest_us: int | None = None
    ) -> list[Decision]:
        """Decisions for ``passages`` in their order, once the accepted ones are committed."""
        return self.wait(self.enqueue(lot_id, passages, outbox_depth, outbox_oldest_us))

    def enqueue(
        self, lot_id: str, passages: Sequence[Passage], outbox_depth: int = 0, outbox_oldest_us: int | None = None
    ) -> _Job:
        """Hand a batch to the writer without waiting for it (``wait`` gives its decisions), so a
        stream can read its next batch meanwhile and the writer commits several of its batches at once.

        What needs nothing but the passages (their own rules, their rows) is done here, in the
        stream's thread, while the writer waits on the database for other streams' batches."""
        self._ensure_writer()
        now_us = to_us(self._clock.now())
        problems = check_passages(passages, lot_id, now_us)
        rows = [None if problem else _passage_row(p, now_us) for p, problem in zip(passages, problems, strict=True)]
        job = _Job(lot_id, passages, outbox_depth, outbox_oldest_us, problems, rows)
        self._queue.put(job)
        return job

    def wait(self, job: _Job) -> list[Decision]:
        """The decisions of an enqueued batch, once the accepted passages are committed."""
        while not job.done.wait(0.5):
            if self._stop.is_set():
                raise Unavailable("the platform is shutting down")
        if job.error is not None:
            raise Unavailable(f"passages could not be stored: {job.error}") from job.error
        return job.decisions

    def _ensure_writer(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="passage-ingest", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                jobs = [self._queue.get(timeout=0.2)]
            except queue.Empty:
                continue
            size = len(jobs[0].passages)
            while size < MAX_GROUP:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                jobs.append(job)
                size += len(job.passages)
            try:
                lots_with_stays = self._commit(jobs)
            except Exception as exc:  # every waiting stream learns of it; the writer carries on
                log.error("ingest.commit_failed", error=str(exc), batches=len(jobs))
                for job in jobs:
                    job.error = exc
                lots_with_stays = set()
            for job in jobs:
                job.done.set()
            if lots_with_stays and self._on_stays is not None:
                self._on_stays(lots_with_stays)

    def _commit(self, jobs: list[_Job]) -> set[str]:
        now_us = to_us(self._clock.now())
        wanted = set()
        for job in jobs:
            for p in job.passages:
                wanted.add(p.passage_id)
                if p.direction == EXIT and p.entry_passage_id:
                    wanted.add(p.entry_passage_id)
        passage_rows: list[tuple[object, ...]] = []
        stay_rows: list[tuple[object, ...]] = []
        lots_with_stays: set[str] = set()
        accepted: dict[str, int] = {}
        stays_before = 0
        with self._db.writer.begin() as conn:
            held = _held(conn, wanted)
            closed = _closed_stays(conn, [i for i, h in held.items() if h.direction != EXIT])
            for job in jobs:
                job.decisions = decide(job.passages, job.lot_id, now_us, held, closed, job.problems)
                count = 0
                for row, decision in zip(job.rows, job.decisions, strict=True):
                    if decision.ack is Ack.ACCEPTED:
                        passage_rows.append(row)  # type: ignore[arg-type]
                        count += 1
                        if decision.stay is not None:
                            stay_rows.append(_stay_row(decision.stay, now_us))
                if count:
                    accepted[job.lot_id] = accepted.get(job.lot_id, 0) + count
                    if len(stay_rows) > stays_before:
                        lots_with_stays.add(job.lot_id)
                    stays_before = len(stay_rows)
            self._insert_passages(conn, passage_rows)
            self._insert_stays(conn, stay_rows)
            _record_outboxes(conn, jobs, now_us)
            _count_received(conn, accepted, now_us)
        return lots_with_stays


# fmt: off
PASSAGE_COLUMNS = (
    "passage_id", "lot_id", "gate_id", "direction", "plate", "color", "source", "card_id", "stay_id",
    "entry_passage_id", "flags", "membership_answer_id", "occurred_us", "card_valid_until_us", "received_us",
)
STAY_COLUMNS = (
    "stay_id", "lot_id", "card_id", "plate", "color", "entry_us", "exit_us", "settle_to_us", "entry_passage_id",
    "exit_passage_id", "flags", "received_us",
)


def _passage_row(p: Passage, received_us: int) -> tuple[object, ...]:
    """A ``passages`` row, in PASSAGE_COLUMNS order."""
    stay_id = p.stay_id or (p.passage_id if p.direction != EXIT else "")
    return (
        p.passage_id, p.lot_id, p.gate_id, p.direction, p.plate, p.color, p.source, p.card_id, stay_id,
        p.entry_passage_id, p.flags, p.membership_answer_id, p.occurred_us, p.card_valid_until_us, received_us,
    )


def _stay_row(stay: Stay, received_us: int) -> tuple[object, ...]:
    """A ``stays`` row, in STAY_COLUMNS order."""
    return (
        stay.stay_id, stay.lot_id, stay.card_id, stay.plate, stay.color, stay.entry_us, stay.exit_us,
        stay.settle_to_us, stay.entry_passage_id, stay.exit_passage_id, stay.flags, received_us,
    )
# fmt: on


class _MultiRowInsert:
    """Insert many rows with few statements, handed to the driver as plain values (no per-row
    SQLAlchemy processing), skipping rows another replica committed meanwhile (``ON CONFLICT DO
    NOTHING``, SQLite ≥ 3.24 and PostgreSQL).

    SQLite: ``VALUES (…), (…), …`` of up to ``ROWS`` rows per statement rather than
    ``executemany``, so the driver releases the GIL once per chunk instead of once per row (it
    matters with many streams' threads waiting for it). PostgreSQL: ``COPY`` into a temporary
    table emptied at commit, then one ``INSERT … SELECT``."""

    ROWS = 500

    def __init__(self, table: Table, columns: tuple[str, ...], dialect: str) -> None:
        assert set(columns) <= set(table.columns.keys())
        self._postgresql = dialect == "postgresql"
        names = ", ".join(columns)
        staging = f"ingest_{table.name}"
        self._create_staging = (
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging} AS SELECT {names} FROM {table.name} WITH NO DATA"
        )
        self._copy = f"COPY {staging} ({names}) FROM STDIN"
        self._from_staging = f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {staging} ON CONFLICT DO NOTHING"
        self._empty_staging = f"TRUNCATE {staging}"
        self._head = f"INSERT INTO {table.name} ({names}) VALUES "
        self._row = "(" + ", ".join(["?"] * len(columns)) + ")"
        self._full = self._values(self.ROWS)

    def _values(self, rows: int) -> str:
        return self._head + ", ".join([self._row] * rows) + " ON CONFLICT DO NOTHING"

    def __call__(self, conn: Connection, rows: list[tuple[object, ...]]) -> None:
        if not rows:
            return
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            if self._postgresql:
                cursor.execute(self._create_staging)
                with cursor.copy(self._copy) as copy:
                    for row in rows:
                        copy.write_row(row)
                cursor.execute(self._from_staging)
                cursor.execute(self._empty_staging)
                return
            for start in range(0, len(rows), self.ROWS):
                chunk = rows[start : start + self.ROWS]
                sql = self._full if len(chunk) == self.ROWS else self._values(len(chunk))
                cursor.execute(sql, tuple(chain.from_iterable(chunk)))
        finally:
            cursor.close()


def _held(conn: Connection, ids: set[str]) -> dict[str, HeldEntry | Passage]:
    """What the platform holds of these passage ids (raw SQL: the list is thousands long)."""
    postgresql = conn.dialect.name == "postgresql"
    held: dict[str, HeldEntry | Passage] = {}
    ordered = list(ids)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    columns = "passage_id, lot_id, direction, occurred_us, card_id, plate, color"
    try:
        for start in range(0, len(ordered), _IN_CHUNK):
            chunk = ordered[start : start + _IN_CHUNK]
            if postgresql:
                cursor.execute(f"SELECT {columns} FROM passages WHERE passage_id = ANY(%s)", [chunk])
            else:
                cursor.execute(
                    f"SELECT {columns} FROM passages WHERE passage_id IN ({', '.join('?' * len(chunk))})", chunk
                )
            for passage_id, lot_id, direction, occurred_us, card_id, plate, color in cursor.fetchall():
                held[passage_id] = HeldEntry(lot_id, direction, occurred_us, card_id, plate, color)
    finally:
        cursor.close()
    return held


def _closed_stays(conn: Connection, entry_ids: list[str]) -> set[str]:
    closed: set[str] = set()
    for start in range(0, len(entry_ids), _IN_CHUNK):
        closed.update(
            conn.scalars(select(StayRow.stay_id).where(StayRow.stay_id.in_(entry_ids[start : start + _IN_CHUNK])))
        )
    return closed


def _record_outboxes(conn: Connection, jobs: list[_Job], now_us: int) -> None:
    """The latest outbox figures of each lot, for LotStatus."""
    from card_service.store import LotRow

    latest = {job.lot_id: job for job in jobs}
    for lot_id, job in latest.items():
        conn.execute(
            update(LotRow)
            .where(LotRow.lot_id == lot_id)
            .values(
                outbox_depth=job.outbox_depth,
                outbox_oldest_at=from_us(job.outbox_oldest_us) if job.outbox_oldest_us else None,
                last_seen_at=from_us(now_us),
            )
        )


def _count_received(conn: Connection, accepted: dict[str, int], now_us: int) -> None:
    mark = "%s" if conn.dialect.name == "postgresql" else "?"
    for lot_id, count in accepted.items():
        conn.exec_driver_sql(
            f"INSERT INTO lot_ingest (lot_id, passages_received, last_received_us) VALUES ({mark}, {mark}, {mark}) "
            "ON CONFLICT (lot_id) DO UPDATE SET passages_received = lot_ingest.passages_received + "
            "excluded.passages_received, last_received_us = excluded.last_received_us",
            (lot_id, count, now_us),
        )
