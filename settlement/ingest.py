"""Passage ingest (ReportPassages): every stream hands its batches to one writer thread, which
decides them against what the database holds and commits many streams' batches in one transaction
(group commit: one fsync for all of them). A stream gets its acks only after that commit, so every
acknowledged passage is durable. Inserts ignore rows another replica committed meanwhile, so two
replicas receiving the same passage store it once.

The writer keeps one connection for its life (its prepared statements stay cached). On SQLite that
connection does not checkpoint the WAL itself: a checkpointer thread does, beside it, so copying
the WAL into the database file (and its fsync) is never inside a commit that streams wait for."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from sqlite3 import SQLITE_LIMIT_VARIABLE_NUMBER

import structlog
from sqlalchemy import Connection, Table, select, update

from crosspark.clock import Clock
from crosspark.db import Database
from crosspark.errors import Unavailable
from settlement.domain import (
    EXIT,
    Ack,
    Decision,
    HeldEntry,
    Passage,
    Stay,
    check_passages,
    decide,
    decide_exit,
)
from settlement.store import PassageRow, StayRow, from_us, to_us

log = structlog.get_logger("settlement.ingest")

#: Most passages one group commit takes; more wait for the next one.
MAX_GROUP = 40_000
#: Ids per lookup statement on SQLite.
_IN_CHUNK = 1_000


@dataclass
class _Alone:
    """A batch decided as if nothing but the batch were held (``_decide_alone``), in the stream's
    thread. It stands for every passage but the ``open_exits`` when the writer finds that none of
    the group's passages is held and no two batches of the group share one."""

    decisions: list[Decision]
    #: Exits (without a problem of their own) whose entries are outside the batch: the writer decides them.
    open_exits: list[int] = field(default_factory=list)
    #: Rows of the passages and stays accepted (open exits aside).
    passage_rows: list[tuple[object, ...]] = field(default_factory=list)
    stay_rows: list[tuple[object, ...]] = field(default_factory=list)
    #: Ids of the passages rejected (open exits aside).
    rejected: list[str] = field(default_factory=list)


@dataclass
class _Job:
    """A batch on its way through the writer."""

    lot_id: str
    passages: Sequence[Passage]
    outbox_depth: int
    outbox_oldest_us: int | None
    #: When the stream's thread took the batch (the passages' ``received_us``).
    received_us: int
    problems: list[str]
    ids: list[str]
    #: The entries the batch's exits close (``_entry_ids``).
    entry_ids: list[str]
    alone: _Alone
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
        self._checkpointer: _Checkpointer | None = None
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

        What needs nothing but the passages (``prepare``) is done here, in the stream's thread,
        while the writer waits on the database for other streams' batches."""
        self._ensure_writer()
        job = self.prepare(lot_id, passages, outbox_depth, outbox_oldest_us)
        self._queue.put(job)
        return job

    def prepare(
        self, lot_id: str, passages: Sequence[Passage], outbox_depth: int = 0, outbox_oldest_us: int | None = None
    ) -> _Job:
        """A batch made ready for the writer: its passages' own rules checked, and the batch
        decided as if it were alone (``_Alone``), so that the writer, which works for every
        stream in turn, is left with little but the exits of entries reported earlier."""
        now_us = to_us(self._clock.now())
        problems = check_passages(passages, lot_id, now_us)
        ids = [p.passage_id for p in passages]
        alone = _decide_alone(passages, lot_id, now_us, problems, ids)
        return _Job(
            lot_id, passages, outbox_depth, outbox_oldest_us, now_us, problems, ids, _entry_ids(passages), alone
        )

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
            if self._checkpointer is None and self._db.dialect == "sqlite":
                self._checkpointer = _Checkpointer(self._db, self._stop)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="passage-ingest", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        conn: Connection | None = None
        checkpointer = self._checkpointer
        try:
            while not self._stop.is_set():
                jobs = self._next_group()
                if not jobs:
                    continue
                try:
                    if conn is None:
                        conn = self._connect()
                    if checkpointer is not None:
                        checkpointer.settle()
                    lots_with_stays = self._commit(conn, jobs)
                except Exception as exc:  # every waiting stream learns of it; the writer carries on
                    log.error("ingest.commit_failed", error=str(exc), batches=len(jobs))
                    for job in jobs:
                        job.error = exc
                    lots_with_stays = set()
                    _discard(conn)
                    conn = None
                for job in jobs:
                    job.done.set()
                if checkpointer is not None:
                    checkpointer.poke()
                if lots_with_stays and self._on_stays is not None:
                    self._on_stays(lots_with_stays)
        finally:
            _discard(conn)

    def _next_group(self) -> list[_Job]:
        """The batches waiting, up to MAX_GROUP passages (blocks a little while for the first)."""
        try:
            jobs = [self._queue.get(timeout=0.2)]
        except queue.Empty:
            return []
        size = len(jobs[0].passages)
        while size < MAX_GROUP:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            jobs.append(job)
            size += len(job.passages)
        return jobs

    def _connect(self) -> Connection:
        """The writer's own connection; on SQLite it leaves WAL checkpoints to the checkpointer."""
        conn = self._db.writer.connect()
        if self._db.dialect == "sqlite":
            conn.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
            conn.commit()
        return conn

    def _commit(self, conn: Connection, jobs: list[_Job]) -> set[str]:
        """Decide and store a group of batches in one transaction; the lots that got stays.

        First optimistically: the group's passages are taken to be new, so only the entries its
        exits name from outside the group are looked up. The inserts' unique indexes then find any
        accepted passage (or stay) already held, and a lookup of the rejected ones (few) any of
        them already held (a held passage is a duplicate whatever else is wrong with it). If one
        was, the transaction is rolled back and the group decided again against everything it
        names. Resent passages are rare; looking up every id of every batch cost the writer as
        much as inserting it."""
        now_us = to_us(self._clock.now())
        own = set(chain.from_iterable(job.ids for job in jobs))
        named_outside = set(chain.from_iterable(job.entry_ids for job in jobs)) - own
        try:
            with conn.begin():
                return self._store(conn, jobs, now_us, _held(conn, named_outside), optimistic=True)
        except _AlreadyHeld:
            pass
        with conn.begin():
            return self._store(conn, jobs, now_us, _held(conn, own | named_outside), optimistic=False)

    def _store(
        self, conn: Connection, jobs: list[_Job], now_us: int, held: dict[str, HeldEntry | Passage], optimistic: bool
    ) -> set[str]:
        """Decide the group against ``held`` and write it. ``optimistic``: ``held`` lacks the
        group's own passages, and ``_AlreadyHeld`` is raised if one of them is in the database."""
        closed = _closed_stays(conn, [i for i, h in held.items() if h.direction != EXIT])
        if optimistic and _distinct_ids(jobs):
            group = _reuse_alone(jobs, held, closed)
        else:
            group = _decide_group(jobs, now_us, held, closed)
        if optimistic and group.rejected and _held(conn, group.rejected):
            raise _AlreadyHeld
        # In key order, each insert lands next to the previous one in the primary-key index
        # (ids are random UUIDs): about a third less work for the database.
        group.passage_rows.sort(key=_ID)
        group.stay_rows.sort(key=_ID)
        stored = self._insert_passages(conn, group.passage_rows)
        stored += self._insert_stays(conn, group.stay_rows)
        if optimistic and stored < len(group.passage_rows) + len(group.stay_rows):
            raise _AlreadyHeld
        # Not optimistic, a row can still be skipped: another replica stored it since the lookup.
        _record_outboxes(conn, jobs, now_us)
        _count_received(conn, group.accepted, now_us)
        return group.lots_with_stays


class _AlreadyHeld(Exception):
    """An optimistic commit found a passage or stay of its group already stored."""


@dataclass
class _Group:
    """What deciding a group of batches gives the writer to store."""

    passage_rows: list[tuple[object, ...]] = field(default_factory=list)
    stay_rows: list[tuple[object, ...]] = field(default_factory=list)
    #: Passages accepted, per lot.
    accepted: dict[str, int] = field(default_factory=dict)
    lots_with_stays: set[str] = field(default_factory=set)
    #: Ids of the passages rejected.
    rejected: set[str] = field(default_factory=set)


def _decide_group(jobs: list[_Job], now_us: int, held: dict[str, HeldEntry | Passage], closed: set[str]) -> _Group:
    """Each batch's decisions (``job.decisions``) against ``held``, the batches in the order they came."""
    group = _Group()
    ack_accepted, ack_rejected = Ack.ACCEPTED, Ack.REJECTED
    for job in jobs:
        job.decisions = decide(job.passages, job.lot_id, now_us, held, closed, job.problems)
        accepted = 0
        stays_before = len(group.stay_rows)
        for passage, decision in zip(job.passages, job.decisions, strict=True):
            if decision.ack is ack_accepted:
                group.passage_rows.append(_passage_row(passage, job.received_us))
                accepted += 1
                if decision.stay is not None:
                    group.stay_rows.append(_stay_row(decision.stay, job.received_us))
            elif decision.ack is ack_rejected:
                group.rejected.add(passage.passage_id)
        _count(group, job.lot_id, accepted, len(group.stay_rows) - stays_before)
    return group


def _decide_alone(passages: Sequence[Passage], lot_id: str, now_us: int, problems: list[str], ids: list[str]) -> _Alone:
    """The batch decided as if nothing else were held, with the rows of what that accepts."""
    alone = _Alone(decide(passages, lot_id, now_us, {}, set(), problems))
    inside = set(ids)
    ack_accepted = Ack.ACCEPTED
    for i, (passage, decision) in enumerate(zip(passages, alone.decisions, strict=True)):
        if decision.ack is ack_accepted:
            alone.passage_rows.append(_passage_row(passage, now_us))
            if decision.stay is not None:
                alone.stay_rows.append(_stay_row(decision.stay, now_us))
        elif not problems[i] and passage.direction == EXIT and passage.entry_passage_id not in inside:
            alone.open_exits.append(i)  # its entry was reported in another batch: for the writer
        else:
            alone.rejected.append(passage.passage_id)
    return alone


def _reuse_alone(jobs: list[_Job], held: dict[str, HeldEntry | Passage], closed: set[str]) -> _Group:
    """The group's decisions from its batches decided alone, when no two batches share a passage:
    only the open exits are decided here, against ``held`` (the entries named from outside the
    group) and the passages of the batches before theirs."""
    group = _Group()
    not_in_held: list[_Job] = []  # batches before this one, not yet in ``held``
    for job in jobs:
        alone = job.alone
        group.passage_rows += alone.passage_rows
        group.stay_rows += alone.stay_rows
        group.rejected.update(alone.rejected)
        accepted, stays = len(alone.passage_rows), len(alone.stay_rows)
        job.decisions = alone.decisions
        if alone.open_exits:
            for earlier in not_in_held:
                _remember(earlier, held, closed)
            not_in_held.clear()
            job.decisions = list(alone.decisions)
            for i in alone.open_exits:
                passage = job.passages[i]
                decision = job.decisions[i] = decide_exit(passage, "", job.lot_id, held, closed)
                if decision.ack is Ack.ACCEPTED:
                    group.passage_rows.append(_passage_row(passage, job.received_us))
                    accepted += 1
                    if decision.stay is not None:
                        group.stay_rows.append(_stay_row(decision.stay, job.received_us))
                        stays += 1
                else:
                    group.rejected.add(passage.passage_id)
        not_in_held.append(job)
        _count(group, job.lot_id, accepted, stays)
    return group


def _remember(job: _Job, held: dict[str, HeldEntry | Passage], closed: set[str]) -> None:
    """Add what a decided batch accepted to ``held`` and the stays it closed to ``closed``."""
    for passage, decision in zip(job.passages, job.decisions, strict=True):
        if decision.ack is Ack.ACCEPTED:
            held[passage.passage_id] = passage
            if decision.stay is not None:
                closed.add(decision.stay.stay_id)


def _count(group: _Group, lot_id: str, accepted: int, stays: int) -> None:
    if accepted:
        group.accepted[lot_id] = group.accepted.get(lot_id, 0) + accepted
    if stays:
        group.lots_with_stays.add(lot_id)


def _distinct_ids(jobs: list[_Job]) -> bool:
    """No passage id is reported twice in the group (in one batch or in two)."""
    return len(set(chain.from_iterable(job.ids for job in jobs))) == sum(len(job.ids) for job in jobs)


def _entry_ids(passages: Sequence[Passage]) -> list[str]:
    """The entries a batch's exits close."""
    return [p.entry_passage_id for p in passages if p.direction == EXIT and p.entry_passage_id]


# fmt: off
PASSAGE_COLUMNS = (
    "passage_id", "lot_id", "gate_id", "direction", "plate", "color", "source", "card_id", "stay_id",
    "entry_passage_id", "flags", "membership_answer_id", "occurred_us", "card_valid_until_us", "received_us",
)
#: The key of a passages or stays row: its first column.
_ID = itemgetter(0)
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
    """A ``stays`` row, in STAY_COLUMNS order (a Stay's fields, then when it was received)."""
    return (*stay, received_us)


# fmt: on


class _MultiRowInsert:
    """Insert many rows with few statements, handed to the driver as plain values (no per-row
    SQLAlchemy processing), skipping rows another replica committed meanwhile (``ON CONFLICT DO
    NOTHING``, SQLite ≥ 3.24 and PostgreSQL).

    SQLite: ``VALUES (…), (…), …`` of thousands of rows per statement rather than ``executemany``,
    so the driver releases the GIL once per statement instead of once per row: each time the
    writer wants it back it may wait a switch interval (5 ms) for the streams' threads. Statements
    hold as many rows as SQLite's parameter limit allows (up to ``ROWS``), or a power of two below
    for the rest, so only a few distinct statements exist and all stay compiled in the driver's
    statement cache (compiling one costs about as much as running it). PostgreSQL: ``COPY`` into
    a temporary table emptied at commit, then one ``INSERT … SELECT``."""

    #: Rows of the largest statement (a power of two), where SQLite allows that many parameters.
    ROWS = 8192

    def __init__(self, table: Table, columns: tuple[str, ...], dialect: str) -> None:
        assert set(columns) <= set(table.columns.keys())
        self._postgresql = dialect == "postgresql"
        self._width = len(columns)
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
        self._statements: dict[int, str] = {}

    def __call__(self, conn: Connection, rows: list[tuple[object, ...]]) -> int:
        """Insert ``rows``; how many were stored (the others were already there)."""
        if not rows:
            return 0
        driver = conn.connection.driver_connection
        cursor = driver.cursor()  # type: ignore[union-attr]
        try:
            if self._postgresql:
                cursor.execute(self._create_staging)
                with cursor.copy(self._copy) as copy:
                    for row in rows:
                        copy.write_row(row)
                cursor.execute(self._from_staging)
                stored: int = cursor.rowcount
                cursor.execute(self._empty_staging)
                return stored
            parameters = driver.getlimit(SQLITE_LIMIT_VARIABLE_NUMBER)  # type: ignore[union-attr]
            top = _floor_power_of_two(min(self.ROWS, parameters // self._width))
            start = stored = 0
            for size in _chunk_sizes(len(rows), top):
                cursor.execute(self._statement(size), tuple(chain.from_iterable(rows[start : start + size])))
                stored += cursor.rowcount
                start += size
            return stored
        finally:
            cursor.close()

    def _statement(self, rows: int) -> str:
        statement = self._statements.get(rows)
        if statement is None:
            statement = self._statements[rows] = self._head + ", ".join([self._row] * rows) + " ON CONFLICT DO NOTHING"
        return statement


def _floor_power_of_two(n: int) -> int:
    return 1 << (n.bit_length() - 1)


def _chunk_sizes(count: int, top: int) -> list[int]:
    """``count`` split into chunks of ``top`` (a power of two), then the powers of two of the rest."""
    sizes = [top] * (count // top)
    rest = count % top
    sizes += [1 << k for k in reversed(range(rest.bit_length())) if rest & (1 << k)]
    return sizes


def _held(conn: Connection, ids: set[str]) -> dict[str, HeldEntry | Passage]:
    """What the platform holds of these passage ids (raw SQL: the list is thousands long). On
    SQLite the ids go in lists of one length, padded with an id no passage has, so the statement
    is compiled once."""
    held: dict[str, HeldEntry | Passage] = {}
    if not ids:
        return held
    postgresql = conn.dialect.name == "postgresql"
    ordered = list(ids)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    columns = "passage_id, lot_id, direction, occurred_us, card_id, plate, color"
    try:
        if postgresql:
            cursor.execute(f"SELECT {columns} FROM passages WHERE passage_id = ANY(%s)", [ordered])
            rows = cursor.fetchall()
        else:
            rows = []
            select_chunk = f"SELECT {columns} FROM passages WHERE passage_id IN ({', '.join('?' * _IN_CHUNK)})"
            for start in range(0, len(ordered), _IN_CHUNK):
                chunk = ordered[start : start + _IN_CHUNK]
                chunk += [""] * (_IN_CHUNK - len(chunk))
                cursor.execute(select_chunk, chunk)
                rows += cursor.fetchall()
        for passage_id, lot_id, direction, occurred_us, card_id, plate, color in rows:
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


class _Checkpointer:
    """Copies the SQLite WAL into the database file after commits, in its own thread and
    connection, while the writer goes on committing (``PASSIVE``: it never blocks the writer or
    readers). A checkpoint changes nothing about durability: a commit is durable once in the WAL.

    SQLite starts the WAL over only when a write transaction begins after a checkpoint that copied
    all of it; a checkpoint running beside the writer rarely has. So once the WAL is larger than
    ``RESTART_FRAMES``, the writer waits (``settle``) for the checkpoint that began after its last
    commit before it begins the next one; meanwhile more batches queue for that next commit."""

    #: WAL pages (4 KiB) beyond which the writer lets a checkpoint finish so the WAL restarts.
    RESTART_FRAMES = 16_384

    def __init__(self, db: Database, stop: threading.Event) -> None:
        self._db = db
        self._stop = stop
        self._changed = threading.Condition()
        self._commits = 0  # commits the writer has made
        self._copied = 0  # commits a finished checkpoint has copied
        self._wal_frames = 0
        threading.Thread(target=self._run, name="passage-ingest-checkpoint", daemon=True).start()

    def poke(self) -> None:
        """A commit happened: checkpoint it when the running checkpoint is done."""
        with self._changed:
            self._commits += 1
            self._changed.notify_all()

    def settle(self) -> None:
        """Before a commit: if the WAL has grown large, wait until every commit so far is copied."""
        with self._changed:
            if self._wal_frames > self.RESTART_FRAMES:
                self._changed.wait_for(lambda: self._copied >= self._commits or self._stop.is_set(), timeout=10)

    def _run(self) -> None:
        raw = None
        while not self._stop.is_set():
            with self._changed:
                if not self._changed.wait_for(lambda: self._copied < self._commits, timeout=0.5):
                    continue
                target = self._commits
            try:
                if raw is None:
                    raw = self._db.writer.raw_connection()
                cursor = raw.cursor()
                _busy, frames, _copied = cursor.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                cursor.close()
            except Exception as exc:  # the next commit pokes again
                log.warning("ingest.checkpoint_failed", error=str(exc))
                _close_raw(raw)
                raw = None
                frames = 0
            with self._changed:
                self._copied = target
                self._wal_frames = frames
                self._changed.notify_all()
        _close_raw(raw)


def _close_raw(raw: object) -> None:
    if raw is not None:
        raw.close()  # type: ignore[attr-defined]


def _discard(conn: Connection | None) -> None:
    """Close the writer's connection without handing it back to the pool (its settings are the
    writer's own, and after a failure it may be broken)."""
    if conn is not None:
        conn.invalidate()
        conn.close()
