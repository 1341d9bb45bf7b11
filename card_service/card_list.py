"""The card list pushed to a lot (patent Figs. 3, 6): a snapshot when the lot holds nothing (or too
little), then live deltas in version order, then heartbeats while nothing changes.

Any number of platform replicas can serve streams: each learns of new versions by polling the
database's version row (``VersionWatch``), and wakes at once for changes made in its own process.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection

from card_service import store
from card_service.domain import CardState, keyed_hasher
from crosspark.db import Database
from crosspark.errors import NotFound, Unauthenticated

#: Entries per chunk: ~100 bytes each, so ~200 kB messages.
CHUNK_ENTRIES = 2000
HEARTBEAT_SECONDS = 10.0
#: How often an open stream refreshes the lot's mark (LotStatus ``connected``, version held).
STREAM_MARK_SECONDS = 10.0


class Entry(NamedTuple):
    """One card as a lot sees it (the plate only as a keyed hash); instants in microseconds since
    the epoch (UTC), the form both ends of the stream use."""

    vehicle_hash: bytes
    card_id: str
    valid_from_us: int
    valid_until_us: int
    state: CardState
    valid_at_lot: bool
    version: int


@dataclass(frozen=True, slots=True)
class SnapshotBegin:
    version: int
    entry_count: int


@dataclass(frozen=True, slots=True)
class Chunk:
    entries: list[Entry]
    version: int


@dataclass(frozen=True, slots=True)
class SnapshotEnd:
    version: int


@dataclass(frozen=True, slots=True)
class Heartbeat:
    version: int
    at: datetime


Message = SnapshotBegin | Chunk | SnapshotEnd | Heartbeat


class VersionWatch:
    """The latest card version as this process knows it: polled from the database every
    ``poll_seconds`` by one thread, and poked by this process's own writers."""

    def __init__(self, db: Database, poll_seconds: float = 0.2) -> None:
        self._db = db
        self._poll_seconds = poll_seconds
        self._cond = threading.Condition()
        self._latest = 0
        self._started = False

    def start(self, spawn: Callable[[str, Callable[[threading.Event], None]], None]) -> None:
        with self._cond:
            if self._started:
                return
            self._started = True
        spawn("card-version-watch", self._run)
        self.observe(self._read())

    def _read(self) -> int:
        with self._db.reader.connect() as connection:
            version, _ = store.read_versions(connection)
            connection.rollback()
        return version

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self._poll_seconds):
            try:
                self.observe(self._read())
            except Exception:  # the database is away for a moment: keep the last value, try again
                stop.wait(1.0)

    def observe(self, version: int) -> None:
        with self._cond:
            if version > self._latest:
                self._latest = version
                self._cond.notify_all()

    def poke(self, version: int) -> None:
        """A change committed in this process: streams wake without waiting for the next poll."""
        self.observe(version)

    def wait_beyond(self, version: int, timeout: float) -> int:
        """The latest version once it is past ``version``, or after ``timeout`` seconds."""
        with self._cond:
            self._cond.wait_for(lambda: self._latest > version, timeout)
            return self._latest


@contextmanager
def _consistent_read(db: Database) -> Iterator[Connection]:
    """A read transaction that sees one state of the database throughout (SQLite's read
    transactions do; PostgreSQL needs REPEATABLE READ)."""
    with db.reader.connect() as connection:
        if db.dialect == "postgresql":
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            yield connection


def _entries(rows: list[store.ListRow], lot_id: str, key: bytes) -> list[Entry]:
    digest = keyed_hasher(key)
    states = {"active": CardState.ACTIVE, "cancelled": CardState.CANCELLED}
    return [
        Entry(
            digest(f"{plate}|{color}".encode()),
            card_id,
            since,
            until,
            states[state],
            not scope or lot_id in scope.split(","),
            version,
        )
        for card_id, plate, color, since, until, state, scope, version in rows
    ]


@dataclass
class _LotView:
    key: bytes
    snapshot_required: bool
    enabled: bool


def _lot_view(db: Database, lot_id: str) -> _LotView:
    with db.read_session() as session:
        row = store.get_lot(session, lot_id)
        if row is None:
            raise NotFound(f"lot {lot_id!r} is not registered")
        return _LotView(row.card_hash_key, row.snapshot_required, row.enabled)


def snapshot(db: Database, lot_id: str, key: bytes) -> Iterator[Message]:
    """Every card as this lot sees it, consistent at one version."""
    with _consistent_read(db) as connection:
        version, _ = store.read_versions(connection)
        yield SnapshotBegin(version, store.count_cards(connection))
        for rows in store.snapshot_rows(connection, CHUNK_ENTRIES):
            yield Chunk(_entries(rows, lot_id, key), version)
    yield SnapshotEnd(version)


def deltas(db: Database, lot_id: str, key: bytes, since: int) -> Iterator[Chunk]:
    """Cards changed after ``since``, in version order, as chunks."""
    while True:
        with db.reader.connect() as connection:
            rows = store.list_changes(connection, since, CHUNK_ENTRIES)
            connection.rollback()
        if not rows:
            return
        chunk = Chunk(_entries(rows, lot_id, key), rows[-1][-1])
        since = chunk.version
        yield chunk
        if len(rows) < CHUNK_ENTRIES:
            return


def watch_cards(
    db: Database,
    watch: VersionWatch,
    now: Callable[[], datetime],
    lot_id: str,
    since: int,
    active: Callable[[], bool],
    heartbeat_seconds: float = HEARTBEAT_SECONDS,
) -> Iterator[Message]:
    """The card-list stream of one lot from ``since`` until ``active()`` turns false.

    A snapshot comes first when the lot holds nothing (``since`` 0), holds less than the resume
    floor (``retained_changes`` versions back), holds more than exists (a restored platform), or
    its card-hash key was rotated; then deltas; a heartbeat whenever nothing changed for
    ``heartbeat_seconds``.
    """
    view = _lot_view(db, lot_id)
    latest, floor = _versions(db)
    held = since
    _mark(db, lot_id, now(), held)
    try:
        if since <= 0 or since < floor or since > latest or view.snapshot_required:
            for message in snapshot(db, lot_id, view.key):
                if isinstance(message, SnapshotEnd):
                    held = message.version
                    _mark(db, lot_id, now(), held, {"snapshot_required": False} if view.snapshot_required else None)
                yield message
                if not active():
                    return
        marked_at = sent_at = time.monotonic()
        caught_up = False
        for chunk in deltas(db, lot_id, view.key, held):
            yield chunk
            held, caught_up = chunk.version, True
        if not caught_up:
            yield Heartbeat(held, now())
        while active():
            latest = watch.wait_beyond(held, min(1.0, heartbeat_seconds))
            if not active():
                return
            current = _lot_view(db, lot_id)
            if current.key != view.key or not current.enabled:
                raise Unauthenticated(f"lot {lot_id}'s credentials were rotated or it was disabled; reconnect")
            if latest > held:
                for chunk in deltas(db, lot_id, view.key, held):
                    yield chunk
                    held = chunk.version
                # The newest version always belongs to a card, so this only guards against spinning.
                held = max(held, latest)
                sent_at = time.monotonic()
            elif time.monotonic() - sent_at >= heartbeat_seconds:
                sent_at = time.monotonic()
                yield Heartbeat(held, now())
            if time.monotonic() - marked_at >= STREAM_MARK_SECONDS:
                marked_at = time.monotonic()
                _mark(db, lot_id, now(), held)
    finally:
        with contextlib.suppress(Exception):  # best effort: the platform may be shutting down
            _mark(db, lot_id, now(), held, {"card_stream_seen_at": None})


def _versions(db: Database) -> tuple[int, int]:
    with db.reader.connect() as connection:
        versions = store.read_versions(connection)
        connection.rollback()
    return versions


def _mark(db: Database, lot_id: str, at: datetime, held: int, extra: dict[str, Any] | None = None) -> None:
    """Record that the lot's stream is alive and how far it has fetched."""
    values: dict[str, Any] = {"last_seen_at": at, "card_stream_seen_at": at, "card_version_held": held}
    values.update(extra or {})
    with db.session() as session:
        store.touch_lot(session, lot_id, values)
