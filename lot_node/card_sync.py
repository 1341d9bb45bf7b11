"""The card list pushed by the platform (patent Figs. 3, 6): ``WatchCards`` feeds the in-memory
card cache (``lot_node.card_cache``) and the lot's store, in version order, so a restarted node
loads the store and resumes the stream at the version it holds instead of taking a snapshot again.

A snapshot (first start, or too far behind) replaces everything: at its beginning the store is
cleared and its version set to 0 in one transaction, so a node killed in the middle of a snapshot
asks for a new one; the version is stored with the snapshot's end. Each live delta is written with
its version in one transaction. Lookups go by keyed hash only: the lot never sees a member's plate.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import numpy as np
import structlog

from crosspark.clock import Clock
from crosspark.db import Database
from crosspark.identity import VehicleIdentity
from crosspark.v1 import cards_pb2, cards_pb2_grpc
from lot_node import store
from lot_node.card_cache import CardCache, CardCacheState
from lot_node.gate import Membership, MembershipAnswer
from lot_node.retrying import PlatformStream

log = structlog.get_logger("lot_node.cards")

VERSION_KEY = "card_version"
LOAD_CHUNK = 20_000


def cached_answer(cache: CardCache, identity: VehicleIdentity, at: datetime) -> MembershipAnswer:
    """The gate's answer from the card list, decided as the platform decides it."""
    status, card = cache.decide(cache.vehicle_hash(identity.plate, identity.color), at)
    if card is None:
        return MembershipAnswer(Membership.NOT_MEMBER)
    return MembershipAnswer(Membership[status.name], card.card_id, card.valid_until)


def entry_row(entry: cards_pb2.CardListEntry) -> dict[str, object]:
    """A card-list entry as a ``lot_cards`` row."""
    return {
        "card_id": entry.card_id,
        "vehicle_hash": bytes(entry.vehicle_hash),
        "valid_from": entry.valid_from.ToDatetime(tzinfo=UTC),
        "valid_until": entry.valid_until.ToDatetime(tzinfo=UTC),
        "state": cards_pb2.CardState.Name(entry.state).removeprefix("CARD_STATE_"),
        "valid_at_lot": entry.valid_at_lot,
        "version": entry.version,
    }


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STATE_CODES = {"ACTIVE": 1, "CANCELLED": 2}


def _micros(values: Sequence[Any]) -> np.ndarray:
    """Instants as stored (SQLite: naive UTC text; PostgreSQL: aware datetimes) → epoch µs."""
    if values and isinstance(values[0], str):
        return np.array(values, dtype="datetime64[us]").astype(np.int64)
    one = timedelta(microseconds=1)
    return np.array(
        [((v if v.tzinfo else v.replace(tzinfo=UTC)) - _EPOCH) // one for v in values],
        dtype=np.int64,
    )


def _columns_of(rows: Sequence[Sequence[object]]) -> CardCacheState:
    card_ids, hashes, since, until, states, at_lot, versions = zip(*rows, strict=True)
    return CardCacheState(
        version=0,
        hashes=np.frombuffer(b"".join(bytes(h) for h in hashes), dtype=np.uint8).reshape(-1, 32),  # type: ignore[arg-type]
        card_ids=np.array([str(c).encode() for c in card_ids], dtype=bytes),
        valid_from_us=_micros(since),
        valid_until_us=_micros(until),
        states=np.array([_STATE_CODES[str(s)] for s in states], dtype=np.uint8),
        valid_at_lot=np.array(at_lot, dtype=bool),
        versions=np.array(versions, dtype=np.int64),
    )


class CardSync(PlatformStream):
    """Keeps ``cache`` and the store in step with the platform's card list."""

    failure_event = "cards.watch_failed"

    def __init__(
        self,
        db: Database,
        clock: Clock,
        lot_id: str,
        cache: CardCache,
        connect: Callable[[], grpc.Channel] | None = None,
        *,
        reachability: Callable[[bool], None] | None = None,
        min_backoff_s: float = 0.2,
        max_backoff_s: float = 15.0,
    ) -> None:
        self.db = db
        self.clock = clock
        self.lot_id = lot_id
        self.cache = cache
        self.connect = connect
        self.reachability = reachability or (lambda _ok: None)
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self.version = 0
        self._snapshot = False
        self._call: grpc.Future | None = None

    # --- store → memory ----------------------------------------------------------------------------

    def load(self) -> int:
        """Replace the cache with the store's card list (read straight into arrays, chunk by
        chunk: a million cards load in seconds and without a Python object per card)."""
        with self.db.reader.connect() as connection:
            version = int(
                connection.exec_driver_sql("SELECT value FROM lot_meta WHERE key = 'card_version'").scalar() or 0
            )
            parts: Iterable[CardCacheState] = ()
            if version:
                cursor = connection.exec_driver_sql(
                    "SELECT card_id, vehicle_hash, valid_from, valid_until, state, valid_at_lot, version FROM lot_cards"
                )
                parts = (_columns_of(rows) for rows in iter(lambda: cursor.fetchmany(LOAD_CHUNK), []))
            self.cache = CardCache.load_parts(parts, version, self.cache.key)
            if connection.dialect.name == "sqlite":  # a full scan filled this connection's page cache
                connection.exec_driver_sql("PRAGMA shrink_memory")
        _release_free_memory()
        self.version = version
        log.info("cards.loaded", version=version, cards=len(self.cache))
        return version

    # --- platform → store and memory ---------------------------------------------------------------

    def apply_message(self, message: cards_pb2.CardListMessage) -> None:
        """One message of the WatchCards stream: the cache first (it validates), then the store."""
        applied = self.cache.apply(message)
        now = self.clock.now()
        if applied.kind == "snapshot_begin":
            with self.db.session() as session:
                store.clear_cards(session)
                store.put_meta(session, VERSION_KEY, "0", now)
            self._snapshot = True
            self.version = 0
            log.info(
                "cards.snapshot_begin",
                version=message.snapshot_begin.version,
                entries=message.snapshot_begin.entry_count,
            )
        elif applied.kind == "snapshot_chunk":
            with self.db.session() as session:
                store.upsert_cards(session, [entry_row(e) for e in message.chunk.entries])
        elif applied.kind == "delta":
            with self.db.session() as session:
                store.upsert_cards(session, applied.rows)
                store.put_meta(session, VERSION_KEY, str(message.chunk.version), now)
            self.version = message.chunk.version
        elif applied.kind == "snapshot_end":
            with self.db.session() as session:
                store.put_meta(session, VERSION_KEY, str(message.snapshot_end.version), now)
            self._snapshot = False
            self.version = message.snapshot_end.version
            log.info("cards.snapshot_end", version=self.version, cards=len(self.cache))

    def apply_all(self, messages: Iterable[cards_pb2.CardListMessage]) -> None:
        for message in messages:
            self.apply_message(message)

    def _stream(self, stop: threading.Event) -> None:
        assert self.connect is not None
        channel = self.connect()
        stub = cards_pb2_grpc.CardServiceStub(channel)
        # Inside an unfinished snapshot the node holds nothing it can resume from.
        since = 0 if self._snapshot else self.version
        call = stub.WatchCards(cards_pb2.WatchCardsRequest(lot_id=self.lot_id, since_version=since))
        self._call = call
        received = False
        try:
            for message in call:
                self.reachability(True)
                self.apply_message(message)
                received = True
                if stop.is_set():
                    return
        except grpc.RpcError as error:
            if stop.is_set() or error.code() == grpc.StatusCode.CANCELLED:
                return
            if received:  # the backoff starts afresh after a stream that worked
                log.warning("cards.watch_broken", error=error.code().name)
                stop.wait(self.min_backoff_s)
                return
            raise
        finally:
            self._call = None
            call.cancel()
            channel.close()


def _release_free_memory() -> None:
    """Hand the heap freed by a large load back to the OS (glibc keeps it otherwise)."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    name = ctypes.util.find_library("c")
    if name:
        with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
            ctypes.CDLL(name).malloc_trim(0)


def stored_version(db: Database) -> int:
    with db.read_session() as session:
        return int(store.get_meta(session, VERSION_KEY) or 0)
