"""The card list in the lot's store: snapshots, deltas, resuming, and a snapshot cut in the middle."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from crosspark.clock import ManualClock
from crosspark.db import Database, upgrade
from crosspark.identity import PlateColor, VehicleIdentity
from crosspark.v1 import cards_pb2
from lot_node.card_cache import CardCache
from lot_node.card_sync import CardSync, cached_answer
from lot_node.gate import Membership
from tests.integration.test_lot_node import KEY, T0, card_entry


def sync_on(db: Database) -> CardSync:
    return CardSync(db, ManualClock(T0), "lot-a", CardCache(KEY))


def snapshot(*entries: cards_pb2.CardListEntry, end: bool = True) -> list[cards_pb2.CardListMessage]:
    version = max(e.version for e in entries)
    messages = [
        cards_pb2.CardListMessage(snapshot_begin=cards_pb2.SnapshotBegin(version=version, entry_count=len(entries))),
        cards_pb2.CardListMessage(chunk=cards_pb2.CardListChunk(entries=list(entries), version=version)),
    ]
    if end:
        messages.append(cards_pb2.CardListMessage(snapshot_end=cards_pb2.SnapshotEnd(version=version)))
    return messages


def database(tmp_path: Path, url: str | None = None) -> Database:
    db = Database(url or f"sqlite:///{tmp_path / 'lot.db'}")
    upgrade(db, "lot")
    return db


def test_snapshot_and_delta_survive_a_restart(tmp_path: Path, db_url: str) -> None:
    db = database(tmp_path, db_url)
    try:
        first = sync_on(db)
        first.apply_all(snapshot(card_entry("粤B12345", "card_1", T0 + timedelta(days=3), 1)))
        cancelled = card_entry("粤B12345", "card_1", T0 + timedelta(hours=1), 2, state=cards_pb2.CARD_STATE_CANCELLED)
        first.apply_message(
            cards_pb2.CardListMessage(chunk=cards_pb2.CardListChunk(entries=[cancelled], version=2))
        )
        again = sync_on(db)
        version = again.load()
        answer = cached_answer(again.cache, VehicleIdentity("粤B12345", PlateColor.BLUE), T0 + timedelta(hours=2))
    finally:
        db.dispose()
    assert version == 2 and answer.status is Membership.CANCELLED and answer.card_id == "card_1"


def test_snapshot_cut_in_the_middle_is_asked_for_again(tmp_path: Path) -> None:
    db = database(tmp_path)
    try:
        first = sync_on(db)
        first.apply_all(snapshot(card_entry("粤B12345", "card_1", T0 + timedelta(days=3), 5), end=False))
        again = sync_on(db)
        version = again.load()
    finally:
        db.dispose()
    assert version == 0 and len(again.cache) == 0


def test_card_valid_elsewhere_only_is_not_valid_at_lot(tmp_path: Path) -> None:
    db = database(tmp_path)
    try:
        sync = sync_on(db)
        sync.apply_all(snapshot(card_entry("粤B12345", "card_1", T0 + timedelta(days=3), 1, at_lot=False)))
        answer = cached_answer(sync.cache, VehicleIdentity("粤B12345", PlateColor.BLUE), T0)
    finally:
        db.dispose()
    assert answer.status is Membership.NOT_VALID_AT_LOT
