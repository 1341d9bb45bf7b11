"""The lot's copy of the card list (patent Figs. 3, 6), fed by ``WatchCards``: a compact lookup
table from a vehicle's keyed hash to its cards, answering gate lookups without the network.

Layout: the bulk of the cards lives in sorted NumPy arrays (the first 8 bytes of each hash as a
``uint64`` sort key, the whole hash, card id, validity in microseconds, state, scope flag, version),
about 100 bytes a card; deltas that add cards go to a small dict overlay that is merged into the
arrays when it grows. A snapshot is built aside and swapped in at its end, so lookups keep
answering from the old list meanwhile.

    key  = hash[:8] as big-endian uint64     sorted  ─┐
    hash = 32 bytes                                   ├─ row i describes one card
    card_id, valid_from_us, valid_until_us, ...      ─┘
    lookup(h): searchsorted(key, h[:8]) → the few rows with that key → compare whole hash

Use at the lot (the stream loop and the gate share one cache)::

    cache = CardCache.from_rows(store_rows, held_version, key)     # or CardCache(key) when new
    for message in stub.WatchCards(WatchCardsRequest(lot_id=..., since_version=cache.version)):
        applied = cache.apply(message)
        if applied.kind == "snapshot_end":  replace the stored list with cache.rows(); save the version
        elif applied.kind == "delta":       upsert applied.rows; save applied.version
    status, card = cache.decide(cache.vehicle_hash(plate, color), at)   # at the gate

``decide`` answers exactly as the platform's CheckMembership does (``card_service.domain``).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import numpy as np

from card_service.domain import CardState, MembershipStatus, decide_membership, vehicle_hash
from crosspark.identity import PlateColor

HASH_BYTES = 32
#: Overlay size (cards added by deltas) at which it is merged into the sorted arrays.
MERGE_AT = 50_000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NOTHING = np.zeros(0)
_ACTIVE, _CANCELLED = 1, 2
_STATE_CODE = {CardState.ACTIVE: _ACTIVE, CardState.CANCELLED: _CANCELLED}
_CODE_STATE = {_ACTIVE: CardState.ACTIVE, _CANCELLED: CardState.CANCELLED}
_PB_STATE = {1: _ACTIVE, 2: _CANCELLED}  # crosspark.v1.CardState numbers
_ROW_STATE = {"ACTIVE": _ACTIVE, "CANCELLED": _CANCELLED}
_STATE_ROW = {_ACTIVE: "ACTIVE", _CANCELLED: "CANCELLED"}


class CachedCard(NamedTuple):
    """One card as the lot holds it."""

    card_id: str
    valid_from: datetime
    valid_until: datetime
    state: CardState
    valid_at_lot: bool
    version: int


class Applied(NamedTuple):
    """What ``CardCache.apply`` did: ``kind`` is ``snapshot_begin``, ``snapshot_chunk``,
    ``snapshot_end``, ``delta`` or ``heartbeat``; ``rows`` are the cards a delta changed (in the
    form of ``rows()``) so the lot can persist just those; after ``snapshot_end`` persist all."""

    kind: str
    version: int
    rows: list[dict[str, Any]]


def _micros(dt: datetime) -> int:
    delta = dt - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _instant(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(micros))


@dataclass
class CardCacheState:
    """A cache's contents as plain arrays (what ``export`` gives and ``load`` takes)."""

    version: int
    hashes: np.ndarray  # (n, 32) uint8
    card_ids: np.ndarray  # (n,) bytes
    valid_from_us: np.ndarray  # (n,) int64
    valid_until_us: np.ndarray  # (n,) int64
    states: np.ndarray  # (n,) uint8: 1 active, 2 cancelled
    valid_at_lot: np.ndarray  # (n,) bool
    versions: np.ndarray  # (n,) int64

    def __len__(self) -> int:
        return len(self.card_ids)


class _Table:
    """Sorted arrays of cards (immutable in shape; rows updated in place)."""

    __slots__ = ("at_lot", "card_ids", "hashes", "keys", "states", "until", "valid_from", "versions")

    def __init__(self, state: CardCacheState, *, consume: bool = False) -> None:
        """Sort ``state``'s rows by key. With ``consume``, each column of ``state`` is dropped as
        soon as its sorted copy exists, so a snapshot's peak memory stays near one table."""
        hashes = np.ascontiguousarray(state.hashes, dtype=np.uint8).reshape(-1, HASH_BYTES)
        keys = hashes[:, :8].copy().view(">u8").ravel().astype(np.uint64)
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        del keys
        self.hashes = hashes[order]
        del hashes

        def take(name: str, dtype: Any = None) -> np.ndarray:
            sorted_column = np.asarray(getattr(state, name), dtype=dtype)[order]
            if consume:
                setattr(state, name, _NOTHING)
            return sorted_column

        if consume:
            state.hashes = _NOTHING
        self.card_ids = take("card_ids")
        self.valid_from = take("valid_from_us", np.int64)
        self.until = take("valid_until_us", np.int64)
        self.states = take("states", np.uint8)
        self.at_lot = take("valid_at_lot", bool)
        self.versions = take("versions", np.int64)

    @classmethod
    def empty(cls) -> _Table:
        return cls(_columns([]))

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def nbytes(self) -> int:
        return sum(
            a.nbytes
            for a in (
                self.keys,
                self.hashes,
                self.card_ids,
                self.valid_from,
                self.until,
                self.states,
                self.at_lot,
                self.versions,
            )
        )

    def rows_of(self, vehicle: bytes) -> list[int]:
        key = np.uint64(int.from_bytes(vehicle[:8], "big"))
        lo = int(np.searchsorted(self.keys, key, side="left"))
        found = []
        n = len(self.keys)
        while lo < n and self.keys[lo] == key:
            if self.hashes[lo].tobytes() == vehicle:
                found.append(lo)
            lo += 1
        return found

    def card(self, i: int) -> CachedCard:
        return CachedCard(
            self.card_ids[i].decode(),
            _instant(self.valid_from[i]),
            _instant(self.until[i]),
            _CODE_STATE[int(self.states[i])],
            bool(self.at_lot[i]),
            int(self.versions[i]),
        )

    def set(self, i: int, card: CachedCard) -> None:
        self.valid_from[i] = _micros(card.valid_from)
        self.until[i] = _micros(card.valid_until)
        self.states[i] = _STATE_CODE[card.state]
        self.at_lot[i] = card.valid_at_lot
        self.versions[i] = card.version

    def state(self, version: int) -> CardCacheState:
        return CardCacheState(
            version, self.hashes, self.card_ids, self.valid_from, self.until, self.states, self.at_lot, self.versions
        )


def _columns(records: Sequence[tuple[bytes, bytes, int, int, int, bool, int]], version: int = 0) -> CardCacheState:
    """Arrays from ``(hash, card_id, from_us, until_us, state, at_lot, version)`` records."""
    if not records:
        return CardCacheState(
            version,
            np.zeros((0, HASH_BYTES), np.uint8),
            np.zeros(0, "S1"),
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
            np.zeros(0, np.uint8),
            np.zeros(0, bool),
            np.zeros(0, np.int64),
        )
    hashes, ids, since, until, states, at_lot, versions = zip(*records, strict=True)
    return CardCacheState(
        version,
        np.frombuffer(b"".join(hashes), dtype=np.uint8).reshape(-1, HASH_BYTES),
        np.array(ids, dtype=bytes),
        np.array(since, dtype=np.int64),
        np.array(until, dtype=np.int64),
        np.array(states, dtype=np.uint8),
        np.array(at_lot, dtype=bool),
        np.array(versions, dtype=np.int64),
    )


def _concat(parts: Sequence[CardCacheState], version: int) -> CardCacheState:
    if not parts:
        return _columns([], version)
    width = max((p.card_ids.dtype.itemsize for p in parts), default=1)
    return CardCacheState(
        version,
        np.concatenate([p.hashes for p in parts]),
        np.concatenate([p.card_ids.astype(f"S{width}") for p in parts]),
        np.concatenate([p.valid_from_us for p in parts]),
        np.concatenate([p.valid_until_us for p in parts]),
        np.concatenate([p.states for p in parts]),
        np.concatenate([p.valid_at_lot for p in parts]),
        np.concatenate([p.versions for p in parts]),
    )


def _entry_records(entries: Iterable[Any]) -> list[tuple[bytes, bytes, int, int, int, bool, int]]:
    """Records from ``crosspark.v1.CardListEntry`` messages (the hot path of a snapshot)."""
    records = []
    for e in entries:
        vehicle = e.vehicle_hash
        if len(vehicle) != HASH_BYTES:
            raise ValueError(f"card {e.card_id}: vehicle_hash has {len(vehicle)} bytes, not {HASH_BYTES}")
        vf, vu = e.valid_from, e.valid_until
        records.append(
            (
                vehicle,
                e.card_id.encode(),
                vf.seconds * 1_000_000 + vf.nanos // 1000,
                vu.seconds * 1_000_000 + vu.nanos // 1000,
                _PB_STATE.get(e.state, _ACTIVE),
                e.valid_at_lot,
                e.version,
            )
        )
    return records


class _Builder:
    """Columns of a snapshot being received, filled in place (grown by doubling if the snapshot
    holds more entries than it announced)."""

    def __init__(self, capacity: int) -> None:
        self.size = 0
        self.columns = _columns([])
        self._grow(max(capacity, 1024), width=40)

    def _grow(self, capacity: int, width: int) -> None:
        old, n = self.columns, self.size

        def resized(array: np.ndarray, dtype: Any = None, shape: tuple[int, ...] = ()) -> np.ndarray:
            fresh = np.zeros((capacity, *shape), dtype=dtype or array.dtype)
            fresh[:n] = array[:n]
            return fresh

        self.columns = CardCacheState(
            0,
            resized(old.hashes, shape=(HASH_BYTES,)),
            resized(old.card_ids, f"S{width}"),
            resized(old.valid_from_us),
            resized(old.valid_until_us),
            resized(old.states),
            resized(old.valid_at_lot),
            resized(old.versions),
        )

    def add(self, part: CardCacheState) -> None:
        n, k = self.size, len(part)
        c = self.columns
        width = max(c.card_ids.dtype.itemsize, part.card_ids.dtype.itemsize)
        if n + k > len(c.card_ids) or width > c.card_ids.dtype.itemsize:
            self._grow(max(2 * len(c.card_ids), n + k), width)
            c = self.columns
        c.hashes[n : n + k] = part.hashes
        c.card_ids[n : n + k] = part.card_ids
        c.valid_from_us[n : n + k] = part.valid_from_us
        c.valid_until_us[n : n + k] = part.valid_until_us
        c.states[n : n + k] = part.states
        c.valid_at_lot[n : n + k] = part.valid_at_lot
        c.versions[n : n + k] = part.versions
        self.size = n + k

    def state(self, version: int) -> CardCacheState:
        c, n = self.columns, self.size
        ids = c.card_ids[:n]
        width = max(int(np.char.str_len(ids).max()) if n else 1, 1)
        return CardCacheState(
            version,
            c.hashes[:n],
            ids.astype(f"S{width}"),
            c.valid_from_us[:n],
            c.valid_until_us[:n],
            c.states[:n],
            c.valid_at_lot[:n],
            c.versions[:n],
        )


class CardCache:
    """The card list one lot holds, at ``version``. Thread-safe: the stream applies while gates look up."""

    def __init__(self, key: bytes | None = None) -> None:
        #: The lot's card-hash key (from registration), to hash plates read at the gate.
        self.key = key
        self.version = 0
        self._table = _Table.empty()
        self._overlay: dict[bytes, dict[str, CachedCard]] = {}
        self._overlay_size = 0
        self._building: _Builder | None = None
        self._lock = threading.RLock()

    # --- reading ---------------------------------------------------------------------------------

    def vehicle_hash(self, plate: str, color: PlateColor) -> bytes:
        """The keyed hash the platform sends for this vehicle (HMAC-SHA256 with the lot's key)."""
        if self.key is None:
            raise ValueError("the cache has no card-hash key")
        return vehicle_hash(self.key, plate, color)

    def cards(self, vehicle: bytes) -> list[CachedCard]:
        """Every card of the vehicle with this hash."""
        with self._lock:
            found = {c.card_id: c for c in (self._table.card(i) for i in self._table.rows_of(vehicle))}
            found.update(self._overlay.get(vehicle, {}))
        return list(found.values())

    def decide(self, vehicle: bytes, at: datetime) -> tuple[MembershipStatus, CachedCard | None]:
        """The membership answer at ``at``, decided exactly as the platform decides it."""
        return decide_membership(self.cards(vehicle), at)

    def lookup(self, vehicle: bytes, at: datetime | None = None) -> CachedCard | None:
        """The card that answers for this vehicle at ``at`` (default now): the one in force here,
        else in force elsewhere, else the last to end; None when the lot knows no card of it."""
        return self.decide(vehicle, at or datetime.now(UTC))[1]

    def __len__(self) -> int:
        with self._lock:
            return len(self._table) + self._overlay_size

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (the overlay, small by design, is not counted)."""
        return self._table.nbytes

    # --- feeding ---------------------------------------------------------------------------------

    def apply(self, message: Any) -> Applied:
        """Apply one ``crosspark.v1.CardListMessage``."""
        body = message.WhichOneof("body")
        if body == "snapshot_begin":
            self.begin_snapshot(message.snapshot_begin.version, message.snapshot_begin.entry_count)
            return Applied(body, self.version, [])
        if body == "chunk":
            records = _entry_records(message.chunk.entries)
            if self._building is not None:
                self._building.add(_columns(records))
                return Applied("snapshot_chunk", self.version, [])
            return Applied("delta", self.version, self._apply_delta(records, message.chunk.version))
        if body == "snapshot_end":
            self.end_snapshot(message.snapshot_end.version)
            return Applied(body, self.version, [])
        if body == "heartbeat":
            with self._lock:
                if self._building is None:
                    self.version = max(self.version, message.heartbeat.version)
            return Applied("heartbeat", self.version, [])
        raise ValueError(f"unknown card-list message {body!r}")

    def begin_snapshot(self, version: int, entry_count: int = 0) -> None:
        """A snapshot starts: it is built aside (in arrays sized for ``entry_count`` cards, so the
        peak stays near the table's own size); lookups keep using the current list."""
        self._building = _Builder(entry_count)

    def end_snapshot(self, version: int) -> None:
        """Swap in the snapshot just received; the cache now holds every card up to ``version``."""
        if self._building is None:
            raise ValueError("snapshot_end without snapshot_begin")
        state = self._building.state(version)
        self._building = None
        table = _Table(state, consume=True)
        with self._lock:
            self._table = table
            self._overlay, self._overlay_size = {}, 0
            self.version = version

    def _apply_delta(
        self, records: Sequence[tuple[bytes, bytes, int, int, int, bool, int]], version: int
    ) -> list[dict[str, Any]]:
        changed = []
        with self._lock:
            table = self._table
            for vehicle, card_id, since, until, state, at_lot, card_version in records:
                card = CachedCard(
                    card_id.decode(), _instant(since), _instant(until), _CODE_STATE[state], bool(at_lot), card_version
                )
                for i in table.rows_of(vehicle):
                    if table.card_ids[i] == card_id:
                        table.set(i, card)
                        break
                else:
                    cards = self._overlay.setdefault(vehicle, {})
                    if card.card_id not in cards:
                        self._overlay_size += 1
                    cards[card.card_id] = card
                changed.append(_row(vehicle, card))
            self.version = max(self.version, version)
            if self._overlay_size >= MERGE_AT:
                self._merge()
        return changed

    def _merge(self) -> None:
        extra = [
            (
                vehicle,
                c.card_id.encode(),
                _micros(c.valid_from),
                _micros(c.valid_until),
                _STATE_CODE[c.state],
                c.valid_at_lot,
                c.version,
            )
            for vehicle, cards in self._overlay.items()
            for c in cards.values()
        ]
        self._table = _Table(_concat([self._table.state(self.version), _columns(extra)], self.version))
        self._overlay, self._overlay_size = {}, 0

    # --- persistence -----------------------------------------------------------------------------

    def export(self) -> CardCacheState:
        """The whole cache as arrays (the overlay merged in), e.g. to save in the lot's store."""
        with self._lock:
            if self._overlay_size:
                self._merge()
            return self._table.state(self.version)

    @classmethod
    def load(cls, state: CardCacheState, key: bytes | None = None) -> CardCache:
        cache = cls(key)
        cache._table = _Table(state)
        cache.version = state.version
        return cache

    def to_bytes(self) -> bytes:
        """The cache as one ``.npz`` blob (no pickles)."""
        state = self.export()
        buffer = io.BytesIO()
        np.savez(
            buffer,
            version=np.int64(state.version),
            hashes=state.hashes,
            card_ids=state.card_ids,
            valid_from_us=state.valid_from_us,
            valid_until_us=state.valid_until_us,
            states=state.states,
            valid_at_lot=state.valid_at_lot,
            versions=state.versions,
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes, key: bytes | None = None) -> CardCache:
        with np.load(io.BytesIO(blob), allow_pickle=False) as data:
            state = CardCacheState(
                int(data["version"]),
                data["hashes"],
                data["card_ids"],
                data["valid_from_us"],
                data["valid_until_us"],
                data["states"],
                data["valid_at_lot"],
                data["versions"],
            )
        return cls.load(state, key)

    def rows(self) -> Iterator[dict[str, Any]]:
        """Every card as a row of the lot store's ``lot_cards`` table."""
        state = self.export()
        for i in range(len(state)):
            yield {
                "card_id": state.card_ids[i].decode(),
                "vehicle_hash": state.hashes[i].tobytes(),
                "valid_from": _instant(state.valid_from_us[i]),
                "valid_until": _instant(state.valid_until_us[i]),
                "state": _STATE_ROW[int(state.states[i])],
                "valid_at_lot": bool(state.valid_at_lot[i]),
                "version": int(state.versions[i]),
            }

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]], version: int, key: bytes | None = None) -> CardCache:
        """A cache from ``lot_cards`` rows (as ``rows()`` gives them), holding ``version``."""
        records = [
            (
                bytes(r["vehicle_hash"]),
                str(r["card_id"]).encode(),
                _micros(r["valid_from"]),
                _micros(r["valid_until"]),
                _ROW_STATE[r["state"]] if isinstance(r["state"], str) else _STATE_CODE[r["state"]],
                bool(r["valid_at_lot"]),
                int(r["version"]),
            )
            for r in rows
        ]
        return cls.load(_columns(records, version), key)


def _row(vehicle: bytes, card: CachedCard) -> dict[str, Any]:
    return {
        "card_id": card.card_id,
        "vehicle_hash": vehicle,
        "valid_from": card.valid_from,
        "valid_until": card.valid_until,
        "state": _STATE_ROW[_STATE_CODE[card.state]],
        "valid_at_lot": card.valid_at_lot,
        "version": card.version,
    }
