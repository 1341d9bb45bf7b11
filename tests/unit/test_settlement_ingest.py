"""Group commits of passage ingest (settlement.ingest): batches of several streams decided and
stored in one transaction, optimistically (the inserts find passages already held) or, when one
is already held, again against everything the group names. Real SQLite files and PostgreSQL."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from sqlite3 import SQLITE_LIMIT_VARIABLE_NUMBER

import pytest
from sqlalchemy import func, select

from crosspark.clock import ManualClock
from crosspark.db import Database, upgrade
from settlement.domain import ENTRY, EXIT, Ack, Decision, Passage, Stay
from settlement.ingest import STAY_COLUMNS, PassageIngest, _Checkpointer, _chunk_sizes
from settlement.store import PassageRow, StayRow, to_us

NOW = datetime(2026, 11, 3, 4, 0, tzinfo=UTC)
NOW_US = to_us(NOW)
HOUR = 3600 * 1_000_000


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    upgrade(database, "platform")
    yield database
    database.dispose()


@pytest.fixture
def ingest(db: Database) -> Iterator[PassageIngest]:
    stop = threading.Event()
    yield PassageIngest(db, ManualClock(NOW), stop)
    stop.set()


def entry(at: int = NOW_US - 2 * HOUR) -> Passage:
    pid = str(uuid.uuid4())
    return Passage(pid, "lot-a", "g1", ENTRY, "粤B12345", "blue", "camera", at, card_id="card_1", stay_id=pid)


def exit_of(e: Passage, at: int = NOW_US - HOUR) -> Passage:
    return Passage(
        str(uuid.uuid4()), "lot-a", "g2", EXIT, e.plate, e.color, "camera", at,
        card_id=e.card_id, stay_id=e.passage_id, entry_passage_id=e.passage_id,
    )  # fmt: skip


def commit_together(ingest: PassageIngest, db: Database, *batches: Sequence[Passage]) -> list[list[Ack]]:
    """The acks of ``batches`` stored as one group, as the writer takes batches queued meanwhile."""
    jobs = [ingest.prepare("lot-a", batch) for batch in batches]
    with db.writer.connect() as conn:
        ingest._commit(conn, jobs)
    return [[d.ack for d in job.decisions] for job in jobs]


def stored(db: Database, table: type) -> int:
    with db.read_session() as session:
        return session.scalar(select(func.count()).select_from(table)) or 0


def test_passage_in_two_batches_of_a_group_is_accepted_once(ingest: PassageIngest, db: Database) -> None:
    e = entry()
    assert commit_together(ingest, db, [e], [e]) == [[Ack.ACCEPTED], [Ack.DUPLICATE]]
    assert stored(db, PassageRow) == 1


def test_exit_joins_entry_of_an_earlier_batch_of_the_group(ingest: PassageIngest, db: Database) -> None:
    e = entry()
    assert commit_together(ingest, db, [e], [exit_of(e)]) == [[Ack.ACCEPTED], [Ack.ACCEPTED]]
    assert stored(db, StayRow) == 1


def test_held_passage_resent_beside_new_ones_is_duplicate_and_new_ones_stored(
    ingest: PassageIngest, db: Database
) -> None:
    e, other = entry(), entry()
    commit_together(ingest, db, [e])
    assert commit_together(ingest, db, [other, e]) == [[Ack.ACCEPTED, Ack.DUPLICATE]]
    assert stored(db, PassageRow) == 2


def test_resent_entry_with_its_new_exit_joins_the_held_entry(ingest: PassageIngest, db: Database) -> None:
    e = entry()
    commit_together(ingest, db, [e])
    later = dataclasses.replace(e, occurred_us=NOW_US - HOUR // 2)  # the same id, told differently
    assert commit_together(ingest, db, [later, exit_of(e)]) == [[Ack.DUPLICATE, Ack.ACCEPTED]]
    with db.read_session() as session:
        stay = session.get(StayRow, e.passage_id)
    assert stay is not None and stay.entry_us == e.occurred_us


def test_resent_exit_of_a_closed_stay_is_duplicate(ingest: PassageIngest, db: Database) -> None:
    e = entry()
    x = exit_of(e)
    commit_together(ingest, db, [e, x])
    assert commit_together(ingest, db, [entry(), x]) == [[Ack.ACCEPTED, Ack.DUPLICATE]]
    assert stored(db, StayRow) == 1


def test_second_exit_in_another_batch_of_the_group_is_rejected(ingest: PassageIngest, db: Database) -> None:
    e = entry()
    assert commit_together(ingest, db, [e, exit_of(e)], [exit_of(e, NOW_US)]) == [
        [Ack.ACCEPTED, Ack.ACCEPTED],
        [Ack.REJECTED],
    ]
    assert stored(db, StayRow) == 1


def test_exit_of_a_held_entry_whose_stay_is_closed_is_rejected(ingest: PassageIngest, db: Database) -> None:
    e = entry()
    commit_together(ingest, db, [e, exit_of(e)])
    assert commit_together(ingest, db, [entry(), exit_of(e, NOW_US)]) == [[Ack.ACCEPTED, Ack.REJECTED]]
    assert stored(db, PassageRow) == 3


def test_rejected_passage_changes_nothing_in_a_group(ingest: PassageIngest, db: Database) -> None:
    bad = entry(at=NOW_US + 301 * 1_000_000)
    assert commit_together(ingest, db, [entry()], [bad]) == [[Ack.ACCEPTED], [Ack.REJECTED]]
    assert stored(db, PassageRow) == 1


def test_every_acked_passage_is_committed_when_submit_returns(ingest: PassageIngest, db: Database) -> None:
    batches = [[entry() for _ in range(700)] for _ in range(6)]  # rows past one insert statement
    pairs = [[*b, *(exit_of(e) for e in b[:300])] for b in batches]
    acked = sum(sum(d.ack is Ack.ACCEPTED for d in ingest.submit("lot-a", batch)) for batch in pairs)
    assert acked == stored(db, PassageRow) == 6 * 1000
    assert stored(db, StayRow) == 6 * 300


def test_inserts_keep_within_a_lower_sqlite_parameter_limit(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'limit.db'}")
    upgrade(database, "platform")
    ingest = PassageIngest(database, ManualClock(NOW), threading.Event())
    entries = [entry() for _ in range(300)]
    job = ingest.prepare("lot-a", [*entries, *(exit_of(e) for e in entries[:100])])
    with database.writer.connect() as conn:
        conn.connection.driver_connection.setlimit(SQLITE_LIMIT_VARIABLE_NUMBER, 999)  # type: ignore[union-attr]
        ingest._commit(conn, [job])
    assert (stored(database, PassageRow), stored(database, StayRow)) == (400, 100)
    database.dispose()


def test_a_stay_is_its_row_less_the_instant_received() -> None:
    assert (*Stay._fields, "received_us") == STAY_COLUMNS
    assert Decision(Ack.ACCEPTED).stay is None


def test_chunks_are_full_statements_then_powers_of_two() -> None:
    assert _chunk_sizes(2 * 8192 + 5, 8192) == [8192, 8192, 4, 1]
    assert _chunk_sizes(0, 2048) == []


def test_wal_starts_over_when_the_writer_lets_the_checkpoint_finish(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'wal.db'}")
    upgrade(database, "platform")
    stop = threading.Event()
    checkpointer = _Checkpointer(database, stop)
    checkpointer.RESTART_FRAMES = -1  # type: ignore[misc]  # settle before every commit
    frames = []
    try:
        ingest = PassageIngest(database, ManualClock(NOW), stop)
        with database.writer.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
            conn.commit()
            for _ in range(3):
                checkpointer.settle()
                ingest._commit(conn, [ingest.prepare("lot-a", [entry() for _ in range(500)])])
                checkpointer.poke()
                checkpointer.settle()
                frames.append(checkpointer._wal_frames)
    finally:
        stop.set()
        database.dispose()
    # Each checkpoint saw only its own commit: the WAL started over after the one before.
    assert 0 < frames[2] < 1.5 * frames[1]
