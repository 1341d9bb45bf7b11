"""Use cases of the card side: each opens a unit of work, applies the domain rules, commits.

Every card change locks the single version row first (``store.lock_versions``), so card writes are
serialised: the overlap check cannot race, versions are gap-free, and commit order is version order.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy.exc import IntegrityError

from card_service import domain, store
from card_service.card_list import STREAM_MARK_SECONDS
from card_service.domain import Card, CardApplication, CardStanding, CardState, Lot, MembershipStatus
from crosspark.db import Database
from crosspark.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from crosspark.identity import PlateColor

#: Versions a lot may be behind and still resume with deltas; a lot further behind gets a fresh snapshot.
RETAINED_CHANGES = 200_000
#: Move the resume floor only when it is this much behind, so it moves rarely.
PRUNE_SLACK = 10_000
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
CARD_HASH_KEY_BYTES = 32

log = structlog.get_logger("card_service")


@dataclass(frozen=True)
class CardEnv:
    """What card use cases run against: the database, a clock and the platform's time zone.
    ``changed`` is called after each committed change (wakes this process's card-list streams)."""

    db: Database
    now: Callable[[], datetime]
    zone_name: str
    changed: Callable[[int], None] = lambda _version: None
    retained_changes: int = RETAINED_CHANGES

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.zone_name)

    def today(self) -> date:
        return self.now().astimezone(self.zone).date()


def request_digest(application: CardApplication) -> str:
    """What identifies an application's content, to tell a replay from a reused request id. The
    start date is left out: a retry of "start today" made after midnight is still the same request."""
    text = "|".join(
        [
            application.plate,
            application.color.value,
            application.holder_name,
            application.holder_phone,
            str(application.months),
            ",".join(application.scope),
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _replay(found: tuple[Card, str], digest: str, request_id: str) -> Card:
    card, known_digest = found
    if known_digest and known_digest != digest:
        raise InvalidArgument.field("request_id", f"{request_id!r} was already used for a different application")
    return card


def _commit_version(env: CardEnv, session: Any, floor: int, version: int) -> None:
    """Store ``version`` as the latest, moving the resume floor up once the lots may resume from
    more than ``retained_changes`` versions back (by ``PRUNE_SLACK`` at a time, so it moves rarely)."""
    new_floor = None
    if version - floor > env.retained_changes + min(PRUNE_SLACK, max(1, env.retained_changes // 10)):
        new_floor = version - env.retained_changes
    store.set_version(session, version, new_floor)


def _check_no_overlap(
    session: Any, plate: str, color: PlateColor, start: datetime, end: datetime, skip: str = ""
) -> None:
    for other in store.cards_of_vehicle(session, plate, color):
        if other.card_id != skip and other.overlaps(start, end):
            raise AlreadyExists(
                f"{plate} {color.value} already has active card {other.card_id} valid "
                f"[{other.valid_from.isoformat()}, {other.valid_until.isoformat()}), which overlaps"
            )


# --- cards ---------------------------------------------------------------------------------------


def apply_card(env: CardEnv, application: CardApplication) -> Card:
    """Issue a card (办理月卡); the same ``request_id`` again returns the same card."""
    digest = request_digest(application)
    with env.db.read_session() as session:
        found = store.card_for_request(session, application.request_id)
    if found is not None:
        return _replay(found, digest, application.request_id)
    valid_from, valid_until = domain.validity(application.start_date, application.months, env.zone)
    now = env.now()
    if valid_until <= now:
        raise InvalidArgument.field(
            "start_date", f"a card from {application.start_date} for {application.months} month(s) has already ended"
        )
    try:
        with env.db.session() as session:
            version, floor = store.lock_versions(session)
            found = store.card_for_request(session, application.request_id)
            if found is not None:
                return _replay(found, digest, application.request_id)
            missing = store.missing_lots(session, application.scope)
            if missing:
                raise InvalidArgument(
                    f"scope names unregistered lot(s): {', '.join(missing)}",
                    [(f"scope_lot_ids[{application.scope.index(m)}]", f"lot {m!r} is not registered") for m in missing],
                )
            _check_no_overlap(session, application.plate, application.color, valid_from, valid_until)
            version += 1
            card = Card(
                card_id=domain.new_card_id(now),
                plate=application.plate,
                color=application.color,
                holder_name=application.holder_name,
                holder_phone=application.holder_phone,
                start_date=application.start_date,
                months=application.months,
                time_zone=env.zone_name,
                valid_from=valid_from,
                valid_until=valid_until,
                scope=application.scope,
                state=CardState.ACTIVE,
                version=version,
                created_at=now,
                updated_at=now,
            )
            store.insert_card(session, card, application.request_id, digest)
            _commit_version(env, session, floor, version)
    except IntegrityError:  # a racing replica inserted the same request id first (PostgreSQL)
        with env.db.read_session() as session:
            found = store.card_for_request(session, application.request_id)
        if found is None:
            raise
        return _replay(found, digest, application.request_id)
    env.changed(card.version)
    return card


def renew_card(env: CardEnv, card_id: str, months: int, request_id: str) -> Card:
    """Extend a card's validity by whole months, counted from its start date; idempotent on
    ``request_id``."""
    violations: list[tuple[str, str]] = []
    domain.check_card_id(card_id, violations)
    domain.check_months(months, violations)
    domain.check_request_id(request_id, violations)
    if violations:
        raise InvalidArgument("invalid renewal: " + "; ".join(f"{f}: {d}" for f, d in violations), violations)
    with env.db.session() as session:
        version, floor = store.lock_versions(session)
        done = store.renewal(session, request_id)
        card = store.get_card(session, card_id)
        if done is not None:
            if done.card_id != card_id:
                raise InvalidArgument.field("request_id", f"{request_id!r} already renewed another card")
            assert card is not None
            return card
        if card is None:
            raise NotFound(f"card {card_id!r} does not exist")
        if card.state is CardState.CANCELLED:
            raise FailedPrecondition(f"card {card_id} is cancelled; apply for a new card instead")
        total = card.months + months
        _, valid_until = domain.validity(card.start_date, total, ZoneInfo(card.time_zone))
        _check_no_overlap(session, card.plate, card.color, card.valid_until, valid_until, skip=card.card_id)
        version += 1
        now = env.now()
        card = replace(card, months=total, valid_until=valid_until, version=version, updated_at=now)
        store.update_card(session, card)
        store.insert_renewal(session, request_id, card_id, months, version, now)
        _commit_version(env, session, floor, version)
    env.changed(card.version)
    return card


def cancel_card(env: CardEnv, card_id: str, reason: str) -> Card:
    """End a card's validity now (a card already cancelled is returned unchanged)."""
    violations: list[tuple[str, str]] = []
    domain.check_card_id(card_id, violations)
    if violations:
        raise InvalidArgument(violations[0][1], violations)
    reason = domain.check_reason(reason)
    with env.db.session() as session:
        version, floor = store.lock_versions(session)
        card = store.get_card(session, card_id)
        if card is None:
            raise NotFound(f"card {card_id!r} does not exist")
        if card.state is CardState.CANCELLED:
            return card
        now = env.now()
        version += 1
        card = replace(
            card,
            state=CardState.CANCELLED,
            valid_until=domain.cancelled_until(card, now),
            cancel_reason=reason,
            version=version,
            updated_at=now,
        )
        store.update_card(session, card)
        _commit_version(env, session, floor, version)
    env.changed(card.version)
    return card


def get_card(env: CardEnv, card_id: str) -> Card:
    violations: list[tuple[str, str]] = []
    domain.check_card_id(card_id, violations)
    if violations:
        raise InvalidArgument(violations[0][1], violations)
    with env.db.read_session() as session:
        card = store.get_card(session, card_id)
    if card is None:
        raise NotFound(f"card {card_id!r} does not exist")
    return card


def _page_size(size: int) -> int:
    if size < 0 or size > MAX_PAGE_SIZE:
        raise InvalidArgument.field("page.page_size", f"must be 0-{MAX_PAGE_SIZE}")
    return size or DEFAULT_PAGE_SIZE


def encode_page_token(kind: str, after: str) -> str:
    """An opaque token that resumes a ``kind`` listing after the key ``after``."""
    return base64.urlsafe_b64encode(f"{kind}:{after}".encode()).decode().rstrip("=")


def decode_page_token(kind: str, token: str) -> str:
    if not token:
        return ""
    try:
        text = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    prefix, sep, after = text.partition(":")
    if prefix != kind or not sep:
        raise InvalidArgument.field("page.page_token", "is not a token from a previous reply")
    return after


def list_cards(env: CardEnv, page_size: int, page_token: str, plate: str = "") -> tuple[list[Card], str]:
    """Cards in id order (ids sort by creation time), one page; the token resumes after the page."""
    size = _page_size(page_size)
    after = decode_page_token("cards", page_token)
    if plate:
        violations: list[tuple[str, str]] = []
        plate = domain.check_plate(plate, violations, "plate")
        if violations:
            raise InvalidArgument(violations[0][1], violations)
    with env.db.read_session() as session:
        cards = store.page_cards(session, after, size + 1, plate or None)
    more = len(cards) > size
    cards = cards[:size]
    return cards, encode_page_token("cards", cards[-1].card_id) if more else ""


# --- membership ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MembershipAnswer:
    status: MembershipStatus
    card: CardStanding | None
    card_version: int
    answer_id: str


def check_membership(
    env: CardEnv, reads: store.HotReads, lot_id: str, plate: str, color: PlateColor, at: datetime | None
) -> MembershipAnswer:
    """Is this vehicle a monthly-card vehicle at this lot at ``at`` (default now)? (patent Fig. 2)"""
    now = env.now()
    if at is not None and abs(at - now) > domain.MAX_CHECK_SKEW:
        raise InvalidArgument.field("at", f"must be within {domain.MAX_CHECK_SKEW.days} days of the platform's clock")
    version, cards = reads.vehicle(plate, color, lot_id)
    status, card = domain.decide_membership(cards, at or now)
    return MembershipAnswer(status, card, version, domain.new_answer_id(now))


class SeenRecorder:
    """When each lot was last seen calling, written to ``lots.last_seen_at`` off the calling
    thread. A membership check only notes the instant in memory; a writer thread stores it the
    first time a lot is seen and then at most once per ``interval`` seconds a lot (a lot checking a
    thousand vehicles a second costs one write every half minute), so no call waits for the
    database's write lock (held for whole group commits by ingest) or for a commit's flush.
    ``last_seen`` answers from memory what is not written yet."""

    def __init__(self, db: Database, interval: float = 30.0) -> None:
        self._db = db
        self._interval = interval
        self._latest: dict[str, datetime] = {}
        self._stored: dict[str, datetime] = {}
        self._written: dict[str, float] = {}
        self._wake = threading.Event()
        self._lock = threading.Lock()

    def seen(self, lot_id: str, at: datetime) -> None:
        with self._lock:
            self._latest[lot_id] = at
            if lot_id in self._written:
                return
            self._written[lot_id] = -1e18  # never written: due at once
        self._wake.set()

    def last_seen(self, lot_id: str) -> datetime | None:
        """The latest instant this process saw ``lot_id``, written or not."""
        with self._lock:
            return self._latest.get(lot_id)

    def wake(self) -> None:
        """Wake the writer thread (to see that its stop event is set)."""
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        """The writer thread: writes what is due until ``stop`` (set, then ``wake``), then
        everything not written."""
        while not stop.is_set():
            self._wake.wait(1.0)
            try:
                self.flush()
            except Exception as exc:  # the database is away for a moment: the lots stay due
                log.warning("lot.seen_write_failed", error=str(exc))
                stop.wait(1.0)
        self.flush(everything=True)

    def flush(self, *, everything: bool = False) -> None:
        """Write, in one transaction, the instants not written yet of the lots last written at
        least ``interval`` seconds ago (of every lot with ``everything``)."""
        tick = time.monotonic()
        with self._lock:
            self._wake.clear()
            due = {
                lot_id: at
                for lot_id, at in self._latest.items()
                if at != self._stored.get(lot_id) and (everything or tick - self._written[lot_id] >= self._interval)
            }
        if not due:
            return
        with self._db.session() as session:
            for lot_id, at in sorted(due.items()):
                store.touch_lot(session, lot_id, {"last_seen_at": at})
        with self._lock:
            self._stored.update(due)
            self._written.update(dict.fromkeys(due, tick))


# --- lots ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LotCredentials:
    lot: Lot
    token: str
    card_hash_key: bytes


@dataclass(frozen=True)
class LotStatus:
    lot: Lot
    last_seen_at: datetime | None
    card_version_held: int
    card_version_latest: int
    outbox_depth: int
    outbox_lag_seconds: int
    passages_received: int
    connected: bool


def _new_credentials() -> tuple[str, bytes]:
    return secrets.token_urlsafe(32), secrets.token_bytes(CARD_HASH_KEY_BYTES)


def register_lot(env: CardEnv, values: dict[str, Any]) -> LotCredentials:
    """Register a lot and issue its bearer token (stored only as a hash) and card-hash key."""
    lot_id = domain.check_lot_id(str(values.get("lot_id", "")), "lot.lot_id")
    values = {
        "vendor": "",
        **values,
        "close_delay_seconds": values.get("close_delay_seconds") or domain.DEFAULT_CLOSE_DELAY_SECONDS,
        "membership_deadline_ms": values.get("membership_deadline_ms") or domain.DEFAULT_DEADLINE_MS,
    }
    violations: list[tuple[str, str]] = []
    domain.check_lot_settings(values, violations)
    if violations:
        raise InvalidArgument("invalid lot: " + "; ".join(f"{f}: {d}" for f, d in violations), violations)
    token, key = _new_credentials()
    now = env.now()
    row = store.LotRow(
        lot_id=lot_id,
        name=values["name"],
        vendor=values["vendor"],
        time_zone=values["time_zone"],
        mode=values["mode"].value,
        period=values["period"].value,
        close_delay_seconds=values["close_delay_seconds"],
        membership_deadline_ms=values["membership_deadline_ms"],
        enabled=True,
        token_hash=store.token_hash(token),
        card_hash_key=key,
        registered_at=now,
        updated_at=now,
        card_version_held=0,
        outbox_depth=0,
        snapshot_required=False,
    )
    try:
        with env.db.session() as session:
            if store.get_lot(session, lot_id) is not None:
                raise AlreadyExists(f"lot {lot_id!r} is already registered")
            session.add(row)
            session.flush()
            lot = store.lot_of(row)
    except IntegrityError:
        raise AlreadyExists(f"lot {lot_id!r} is already registered") from None
    return LotCredentials(lot, token, key)


def update_lot(env: CardEnv, lot_id: str, values: dict[str, Any], fields: Sequence[str]) -> Lot:
    """Replace the named settings of a lot."""
    domain.check_lot_id(lot_id, "lot.lot_id")
    unknown = [f for f in fields if f not in domain.UPDATABLE_LOT_FIELDS]
    if not fields or unknown:
        raise InvalidArgument.field(
            "update_fields",
            f"name at least one of {', '.join(domain.UPDATABLE_LOT_FIELDS)}"
            + (f"; unknown: {', '.join(unknown)}" if unknown else ""),
        )
    chosen = {f: values[f] for f in fields}
    violations: list[tuple[str, str]] = []
    domain.check_lot_settings(chosen, violations)
    if violations:
        raise InvalidArgument("invalid lot: " + "; ".join(f"{f}: {d}" for f, d in violations), violations)
    with env.db.session() as session:
        row = store.get_lot(session, lot_id, for_update=True)
        if row is None:
            raise NotFound(f"lot {lot_id!r} is not registered")
        for name, value in chosen.items():
            setattr(row, name, value.value if name in ("mode", "period") else value)
        row.updated_at = env.now()
        session.flush()
        return store.lot_of(row)


def list_lots(env: CardEnv, page_size: int, page_token: str) -> tuple[list[Lot], str]:
    size = _page_size(page_size)
    after = decode_page_token("lots", page_token)
    with env.db.read_session() as session:
        rows = store.page_lots(session, after, size + 1)
        lots = [store.lot_of(r) for r in rows]
    more = len(lots) > size
    lots = lots[:size]
    return lots, encode_page_token("lots", lots[-1].lot_id) if more else ""


def rotate_lot_credentials(env: CardEnv, lot_id: str) -> LotCredentials:
    """New token and card-hash key; the old token stops working at once, and the lot's next
    WatchCards starts with a snapshot (its hashes were made with the old key)."""
    domain.check_lot_id(lot_id)
    token, key = _new_credentials()
    with env.db.session() as session:
        row = store.get_lot(session, lot_id, for_update=True)
        if row is None:
            raise NotFound(f"lot {lot_id!r} is not registered")
        row.token_hash = store.token_hash(token)
        row.card_hash_key = key
        row.snapshot_required = True
        row.card_version_held = 0
        row.updated_at = env.now()
        session.flush()
        lot = store.lot_of(row)
    return LotCredentials(lot, token, key)


def lot_status(env: CardEnv, lot_id: str, seen: SeenRecorder | None = None) -> LotStatus:
    """The lot and how it stands; ``seen`` adds a last call this process has not written yet."""
    domain.check_lot_id(lot_id)
    now = env.now()
    with env.db.read_session() as session:
        row = store.get_lot(session, lot_id)
        if row is None:
            raise NotFound(f"lot {lot_id!r} is not registered")
        latest, _ = store.read_versions(session)
        received = _passages_received(session, lot_id)
        stream_seen = row.card_stream_seen_at
        unwritten = seen.last_seen(lot_id) if seen is not None else None
        candidates = [at for at in (row.last_seen_at, unwritten) if at is not None]
        last_seen = max(candidates) if candidates else None
        return LotStatus(
            lot=store.lot_of(row),
            last_seen_at=last_seen,
            card_version_held=row.card_version_held,
            card_version_latest=latest,
            outbox_depth=row.outbox_depth,
            outbox_lag_seconds=domain.outbox_lag_seconds(row.outbox_oldest_at, now),
            passages_received=received,
            connected=stream_seen is not None and (now - stream_seen).total_seconds() < 2.5 * STREAM_MARK_SECONDS,
        )


def _passages_received(session: Any, lot_id: str) -> int:
    """Passages settlement holds from the lot (0 until settlement offers the count)."""
    try:
        from settlement import store as settlement_store
    except ImportError:
        return 0
    count = getattr(settlement_store, "passages_received", None)
    return int(count(session, lot_id)) if callable(count) else 0
