"""The lot's copy of the card list (patent Figs. 3, 6), fed by ``WatchCards``: a compact lookup
table from a vehicle's keyed hash to its cards, answering gate lookups without the network.

Layout: the bulk of the cards lives in sorted NumPy arrays, about 46 bytes a card (a million
cards in under 50 MB, so a lot node with a million cards and its recognition models stays under
200 MB resident); deltas that add cards go to a small dict overlay that is merged into the arrays
when it grows. A snapshot is built aside and swapped in at its end, so lookups keep answering
from the old list meanwhile.

    key   = hash[0:8]  as big-endian uint64   sorted by key          ─┐
    tail  = hash[8:16] as big-endian uint64                          ├─ row i describes one card
    id    = "card_" + ULID packed into 16 bytes (other ids by row)   │
    valid_from, valid_until (uint32 seconds while every value is a   │
    whole second, else int64 µs), state, scope flag, version         ─┘
    lookup(h): searchsorted(key, h[0:8]) → the few rows with that key → compare the tail

A vehicle is known by the first 128 bits of its keyed hash (HMAC-SHA256 truncated to half its
length, as RFC 2104 §5 allows): two of a lot's vehicles collide with odds of about n²/2¹²⁹.

Use at the lot (the stream loop and the gate share one cache)::

    cache = CardCache.load_parts(store_chunks, held_version, key)   # or CardCache(key) when new
    for message in stub.WatchCards(WatchCardsRequest(lot_id=..., since_version=cache.version)):
        applied = cache.apply(message)
        if applied.kind == "snapshot_chunk":  store the message's entries (whole hashes)
        elif applied.kind == "delta":         upsert applied.rows; save applied.version
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
#: The bytes of the keyed hash the cache keeps (see the module text).
VEHICLE_BYTES = 16
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
    hashes: np.ndarray  # (n, 16 or 32) uint8: the vehicle hash (the cache keeps its first 16 bytes)
    card_ids: np.ndarray  # (n,) bytes
    valid_from_us: np.ndarray  # (n,) int64
    valid_until_us: np.ndarray  # (n,) int64
    states: np.ndarray  # (n,) uint8: 1 active, 2 cancelled
    valid_at_lot: np.ndarray  # (n,) bool
    versions: np.ndarray  # (n,) int64

    def __len__(self) -> int:
        return len(self.card_ids)


# --- compact columns ------------------------------------------------------------------------------

_CARD_PREFIX = b"card_"
_CROCKFORD = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # the ULID alphabet
_ULID_CHARS = 26
_PACKED_ID_LEN = len(_CARD_PREFIX) + _ULID_CHARS
_DIGIT = np.full(256, 255, np.uint8)
_DIGIT[np.frombuffer(_CROCKFORD, np.uint8)] = np.arange(32, dtype=np.uint8)


def _pack_ids(ids: np.ndarray) -> tuple[np.ndarray, dict[int, str]]:
    """Card ids (``(n,)`` bytes) → ``(n, 2)`` uint64 holding each ``card_<ULID>`` id in 128 bits
    (the platform's form), and the ids of any other form by row."""
    n, width = len(ids), ids.dtype.itemsize
    packed = np.zeros((n, 2), np.uint64)
    ulid = np.zeros(n, bool)
    if n and width >= _PACKED_ID_LEN:
        raw = np.frombuffer(np.ascontiguousarray(ids).tobytes(), np.uint8).reshape(n, width)
        digits = _DIGIT[raw[:, len(_CARD_PREFIX) : _PACKED_ID_LEN]]
        ulid = (
            (raw[:, : len(_CARD_PREFIX)] == np.frombuffer(_CARD_PREFIX, np.uint8)).all(axis=1)
            & (digits < 32).all(axis=1)
            & (digits[:, 0] < 8)  # 26 characters carry 130 bits; a ULID's first is 0-7
        )
        if width > _PACKED_ID_LEN:
            ulid &= raw[:, _PACKED_ID_LEN] == 0
        hi, lo = np.zeros(n, np.uint64), np.zeros(n, np.uint64)
        five, carry = np.uint64(5), np.uint64(59)
        for column in digits.T:
            hi = (hi << five) | (lo >> carry)
            lo = (lo << five) | column.astype(np.uint64)
        packed[:, 0] = np.where(ulid, hi, 0)
        packed[:, 1] = np.where(ulid, lo, 0)
    others = {int(i): bytes(ids[i]).decode() for i in np.flatnonzero(~ulid)}
    return packed, others


def _unpack_id(hi: int, lo: int) -> str:
    value = (int(hi) << 64) | int(lo)
    chars = bytearray(_ULID_CHARS)
    for i in range(_ULID_CHARS - 1, -1, -1):
        chars[i] = _CROCKFORD[value & 31]
        value >>= 5
    return (_CARD_PREFIX + chars).decode()


class _Column:
    """Integers stored as uint32 in ``unit``s while every value fits exactly (card instants are
    whole seconds, versions below 2³²), widened to int64 in place the first time one does not."""

    __slots__ = ("data", "unit")

    def __init__(self, values: np.ndarray, unit: int) -> None:
        values = np.asarray(values, dtype=np.int64)
        if len(values) and (values.min() < 0 or values.max() // unit >= 2**32 or (values % unit).any()):
            self.data, self.unit = values, 1
        else:
            self.data, self.unit = (values // unit).astype(np.uint32), unit

    def __getitem__(self, i: int) -> int:
        return int(self.data[i]) * self.unit

    def __setitem__(self, i: int, value: int) -> None:
        if self.data.dtype == np.uint32 and (value < 0 or value % self.unit or value // self.unit >= 2**32):
            self.data, self.unit = self.wide(), 1
        self.data[i] = value // self.unit

    def wide(self) -> np.ndarray:
        return self.data.astype(np.int64) * self.unit

    def take(self, order: np.ndarray) -> _Column:
        column = _Column.__new__(_Column)
        column.data, column.unit = self.data[order], self.unit
        return column


_SECOND = 1_000_000


class _Table:
    """Cards in compact, sorted columns (immutable in shape; rows updated in place)."""

    __slots__ = ("at_lot", "ids", "keys", "other_ids", "states", "tails", "until", "valid_from", "versions")

    def __init__(self, state: CardCacheState, *, consume: bool = False) -> None:
        """Compact ``state``'s rows (unsorted: ``sorted()`` orders them). With ``consume``, each
        column of ``state`` is dropped once compacted, so a snapshot's peak stays near one table."""
        hashes = np.ascontiguousarray(state.hashes, dtype=np.uint8)
        hashes = hashes.reshape(len(state), -1) if len(state) else np.zeros((0, VEHICLE_BYTES), np.uint8)
        if hashes.shape[1] < VEHICLE_BYTES:
            raise ValueError(f"vehicle hashes of {hashes.shape[1]} bytes; at least {VEHICLE_BYTES} needed")
        words = np.ascontiguousarray(hashes[:, :VEHICLE_BYTES]).view(">u8").astype(np.uint64)
        self.keys, self.tails = np.ascontiguousarray(words[:, 0]), np.ascontiguousarray(words[:, 1])
        del hashes, words
        self.ids, self.other_ids = _pack_ids(state.card_ids)
        self.valid_from = _Column(state.valid_from_us, _SECOND)
        self.until = _Column(state.valid_until_us, _SECOND)
        self.states = np.asarray(state.states, dtype=np.uint8)
        self.at_lot = np.asarray(state.valid_at_lot, dtype=bool)
        self.versions = _Column(state.versions, 1)
        if consume:
            for name in ("hashes", "card_ids", "valid_from_us", "valid_until_us", "states", "valid_at_lot", "versions"):
                setattr(state, name, _NOTHING)

    @classmethod
    def empty(cls) -> _Table:
        return cls(_columns([]))

    @classmethod
    def joined(cls, parts: Sequence[_Table]) -> _Table:
        """One sorted table of the rows of ``parts``."""
        if len(parts) == 1:
            return parts[0].sorted()
        table = cls.__new__(cls)
        offsets = np.cumsum([0, *(len(p) for p in parts)])
        table.keys = np.concatenate([p.keys for p in parts])
        table.tails = np.concatenate([p.tails for p in parts])
        table.ids = np.concatenate([p.ids for p in parts])
        table.other_ids = {int(at) + i: text for at, p in zip(offsets, parts, strict=False)
                           for i, text in p.other_ids.items()}
        table.valid_from = _Column(np.concatenate([p.valid_from.wide() for p in parts]), _SECOND)
        table.until = _Column(np.concatenate([p.until.wide() for p in parts]), _SECOND)
        table.states = np.concatenate([p.states for p in parts])
        table.at_lot = np.concatenate([p.at_lot for p in parts])
        table.versions = _Column(np.concatenate([p.versions.wide() for p in parts]), 1)
        return table.sorted()

    def sorted(self) -> _Table:
        order = np.argsort(self.keys, kind="stable")  # rows_of scans every row of a key
        table = _Table.__new__(_Table)
        table.keys, table.tails, table.ids = self.keys[order], self.tails[order], self.ids[order]
        table.valid_from, table.until = self.valid_from.take(order), self.until.take(order)
        table.states, table.at_lot, table.versions = self.states[order], self.at_lot[order], self.versions.take(order)
        position = np.empty(len(order), np.int64)
        position[order] = np.arange(len(order))
        table.other_ids = {int(position[i]): text for i, text in self.other_ids.items()}
        return table

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def nbytes(self) -> int:
        arrays = (self.keys, self.tails, self.ids, self.valid_from.data, self.until.data, self.states, self.at_lot,
                  self.versions.data)
        return sum(a.nbytes for a in arrays) + sum(len(t) + 60 for t in self.other_ids.values())

    def rows_of(self, vehicle: bytes) -> list[int]:
        key = np.uint64(int.from_bytes(vehicle[:8], "big"))
        tail = int.from_bytes(vehicle[8:VEHICLE_BYTES], "big")
        lo = int(np.searchsorted(self.keys, key, side="left"))
        found = []
        n = len(self.keys)
        while lo < n and self.keys[lo] == key:
            if int(self.tails[lo]) == tail:
                found.append(lo)
            lo += 1
        return found

    def card_id(self, i: int) -> str:
        other = self.other_ids.get(i)
        return other if other is not None else _unpack_id(self.ids[i, 0], self.ids[i, 1])

    def card(self, i: int) -> CachedCard:
        return CachedCard(
            self.card_id(i),
            _instant(self.valid_from[i]),
            _instant(self.until[i]),
            _CODE_STATE[int(self.states[i])],
            bool(self.at_lot[i]),
            self.versions[i],
        )

    def set(self, i: int, card: CachedCard) -> None:
        self.valid_from[i] = _micros(card.valid_from)
        self.until[i] = _micros(card.valid_until)
        self.states[i] = _STATE_CODE[card.state]
        self.at_lot[i] = card.valid_at_lot
        self.versions[i] = card.version

    def state(self, version: int) -> CardCacheState:
        n = len(self)
        hashes = np.stack([self.keys, self.tails], axis=1).astype(">u8").view(np.uint8).reshape(n, VEHICLE_BYTES)
        return CardCacheState(
            version, hashes, np.array([self.card_id(i).encode() for i in range(n)], dtype=bytes),
            self.valid_from.wide(), self.until.wide(), self.states, self.at_lot, self.versions.wide(),
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
        np.frombuffer(b"".join(h[:VEHICLE_BYTES] for h in hashes), dtype=np.uint8).reshape(-1, VEHICLE_BYTES),
        np.array(ids, dtype=bytes),
        np.array(since, dtype=np.int64),
        np.array(until, dtype=np.int64),
        np.array(states, dtype=np.uint8),
        np.array(at_lot, dtype=bool),
        np.array(versions, dtype=np.int64),
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


class CardCache:
    """The card list one lot holds, at ``version``. Thread-safe: the stream applies while gates look up."""

    def __init__(self, key: bytes | None = None) -> None:
        #: The lot's card-hash key (from registration), to hash plates read at the gate.
        self.key = key
        self.version = 0
        self._table = _Table.empty()
        self._overlay: dict[bytes, dict[str, CachedCard]] = {}
        self._overlay_size = 0
        self._building: list[_Table] | None = None  # a snapshot's chunks, compacted as they come
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
            found.update(self._overlay.get(vehicle[:VEHICLE_BYTES], {}))
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
                self._building.append(_Table(_columns(records), consume=True))
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
        """A snapshot starts: it is built aside, each chunk compacted as it arrives (so the peak
        stays near twice the table's own size); lookups keep using the current list."""
        self._building = []

    def end_snapshot(self, version: int) -> None:
        """Swap in the snapshot just received; the cache now holds every card up to ``version``."""
        if self._building is None:
            raise ValueError("snapshot_end without snapshot_begin")
        table = _Table.joined(self._building or [_Table.empty()])
        self._building = None
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
                    if table.card_id(i) == card.card_id:
                        table.set(i, card)
                        break
                else:
                    cards = self._overlay.setdefault(vehicle[:VEHICLE_BYTES], {})
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
        self._table = _Table.joined([self._table, _Table(_columns(extra))])
        self._overlay, self._overlay_size = {}, 0

    # --- persistence -----------------------------------------------------------------------------

    def export(self) -> CardCacheState:
        """The whole cache as arrays (the overlay merged in; hashes as the 16 bytes kept)."""
        with self._lock:
            if self._overlay_size:
                self._merge()
            return self._table.state(self.version)

    @classmethod
    def load(cls, state: CardCacheState, key: bytes | None = None) -> CardCache:
        return cls.load_parts([state], state.version, key)

    @classmethod
    def load_parts(cls, parts: Iterable[CardCacheState], version: int, key: bytes | None = None) -> CardCache:
        """A cache holding ``version`` from the cards of ``parts`` (e.g. the lot store read chunk by
        chunk: each part is compacted and dropped before the next is read)."""
        cache = cls(key)
        cache._table = _Table.joined([_Table(part, consume=True) for part in parts] or [_Table.empty()])
        cache.version = version
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
        """Every card in the form of the lot store's ``lot_cards`` rows (``vehicle_hash`` holds
        the 16 bytes the cache keeps)."""
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
