"""Replicas issuing at once (DESIGN section 13): per-lot row locks, SKIP LOCKED, no double statements."""

from __future__ import annotations

import secrets
import threading
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from crosspark.clock import ManualClock
from crosspark.db import Database, upgrade
from settlement.domain import ENTRY, EXIT, Passage
from settlement.ingest import PassageIngest
from settlement.issuing import issue_due
from settlement.service import SigningKeys
from settlement.store import StatementRow, StayRow, to_us

START = datetime(2026, 11, 1, tzinfo=UTC)
LOTS = 12
DAYS = 3


def seed(url: str) -> None:
    from card_service.store import LotRow

    db = Database(url)
    upgrade(db, "platform")
    with db.session() as session:
        for n in range(LOTS):
            session.add(
                LotRow(
                    lot_id=f"lot-{n}",
                    name="l",
                    vendor="t",
                    time_zone="UTC",
                    mode="CACHED",
                    period="DAILY",
                    close_delay_seconds=0,
                    membership_deadline_ms=300,
                    enabled=True,
                    token_hash=secrets.token_hex(32),
                    card_hash_key=b"k" * 32,
                    registered_at=START,
                    updated_at=START,
                )
            )
    stop = threading.Event()
    ingest = PassageIngest(db, ManualClock(START + timedelta(days=DAYS)), stop)
    for n in range(LOTS):
        passages = []
        for i in range(DAYS * 4):
            at = to_us(START + timedelta(hours=6 * i))
            pid = str(uuid.uuid4())
            passages.append(Passage(pid, f"lot-{n}", "g", ENTRY, "粤B12345", "blue", "camera", at, card_id="c"))
            passages.append(
                Passage(
                    str(uuid.uuid4()),
                    f"lot-{n}",
                    "g",
                    EXIT,
                    "粤B12345",
                    "blue",
                    "camera",
                    at + 3600 * 10**6,
                    card_id="c",
                    entry_passage_id=pid,
                )
            )
        ingest.submit(f"lot-{n}", passages)
    stop.set()
    db.dispose()


def test_two_concurrent_issuers_issue_each_statement_once(db_url: str) -> None:
    seed(db_url)
    replicas = [Database(db_url), Database(db_url)]
    clock = ManualClock(START + timedelta(days=DAYS))
    keys = [SigningKeys(db, clock) for db in replicas]
    barrier = threading.Barrier(2)
    issued: list[list[StatementRow]] = [[], []]

    def run(i: int) -> None:
        key = keys[i].current()
        barrier.wait()
        issued[i] = issue_due(replicas[i], key, clock.now(), clock.now())

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [row.statement_id for rows in issued for row in rows]
    with replicas[0].read_session() as session:
        stored = session.scalar(select(func.count()).select_from(StatementRow))
        unstated = session.scalar(select(func.count()).select_from(StayRow).where(StayRow.statement_seq.is_(None)))
    for db in replicas:
        db.dispose()
    assert len(ids) == len(set(ids)) == stored == LOTS * DAYS
    assert unstated == 0
