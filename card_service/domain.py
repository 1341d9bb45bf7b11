"""Monthly cards (月卡) and lots (车场): values and rules, no I/O.

* A card's validity is the half-open interval ``[valid_from, valid_until)``: local midnight of its
  start date to local midnight of the start date plus its months, in the platform's time zone.
* A vehicle (plate + colour) has at most one active card at any instant.
* A lot sees a card through a keyed hash of the vehicle (HMAC-SHA256 with the lot's key), never
  the plate.
"""

from __future__ import annotations

import calendar
import enum
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crosspark import plate as plates
from crosspark.errors import InvalidArgument
from crosspark.identity import PlateColor

MAX_MONTHS = 12
MAX_HOLDER_NAME = 64
MAX_REQUEST_ID = 64
MAX_CARD_ID = 40
#: How far from the platform's clock a membership check may ask about.
MAX_CHECK_SKEW = timedelta(days=366)
MAX_REASON = 256
MAX_SCOPE = 100
MAX_LOT_NAME = 128
MAX_VENDOR = 64
MAX_DEADLINE_MS = 60_000
MAX_CLOSE_DELAY_SECONDS = 7 * 24 * 3600
DEFAULT_CLOSE_DELAY_SECONDS = 3600
DEFAULT_DEADLINE_MS = 300

_PHONE = re.compile(r"\+?[0-9]{3,20}")
_LOT_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class CardState(enum.Enum):
    ACTIVE = "active"
    CANCELLED = "cancelled"


class MembershipStatus(enum.Enum):
    """The answer to "is this vehicle a monthly-card vehicle here, now?" (patent Fig. 2)."""

    MONTHLY = "monthly"
    NOT_MEMBER = "not_member"
    EXPIRED = "expired"
    NOT_VALID_AT_LOT = "not_valid_at_lot"
    CANCELLED = "cancelled"


class MembershipMode(enum.Enum):
    ONLINE = "ONLINE"
    CACHED = "CACHED"
    ONLINE_FALLBACK = "ONLINE_FALLBACK"


class SettlementPeriod(enum.Enum):
    PER_EXIT = "PER_EXIT"
    DAILY = "DAILY"
    WEEKLY = "WEEKLY"
    MONTHLY = "MONTHLY"


# --- ids -----------------------------------------------------------------------------------------


#: Every pair of base-32 digits, so ten bits become two characters with one lookup.
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)


def _base32_pairs(value: int, pairs: int) -> str:
    p = _PAIRS
    return "".join(p[(value >> shift) & 1023] for shift in range(10 * (pairs - 1), -1, -10))


def ulid(now: datetime, randomness: bytes | None = None) -> str:
    """A ULID: 48-bit millisecond time then 80 random bits, 26 Crockford base-32 characters, so
    ids sort by creation time."""
    millis = int(now.timestamp() * 1000)
    return _base32_pairs(millis, 5) + _base32_pairs(int.from_bytes(randomness or secrets.token_bytes(10), "big"), 8)


def monotonic_ulids(now: datetime) -> Iterator[str]:
    """ULIDs of one instant that increase by one each (the ULID spec's monotonic mode): a bulk
    load appends to the primary-key index instead of scattering over it. Only the last two
    characters change between neighbours, so the rest is built once per 1,024 ids."""
    head = _base32_pairs(int(now.timestamp() * 1000), 5)
    value = int.from_bytes(secrets.token_bytes(10), "big") >> 1  # room to count up without overflow
    p = _PAIRS
    while True:
        prefix = head + _base32_pairs(value >> 10, 7)
        for low in p[value & 1023 :]:
            yield prefix + low
        value = (value | 1023) + 1


def new_card_id(now: datetime) -> str:
    return f"card_{ulid(now)}"


def new_answer_id(now: datetime) -> str:
    return f"ans_{ulid(now)}"


# --- validity ------------------------------------------------------------------------------------


def add_months(day: date, months: int) -> date:
    """``day`` plus whole months; a day past the target month's end is clamped to its last day
    (2026-01-31 + 1 month = 2026-02-28)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def validity(start: date, months: int, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """``[valid_from, valid_until)`` of a card from ``start`` for ``months`` months, as UTC instants.
    Renewals recompute from the start date, so the end never drifts from the start's day."""
    return local_midnight(start, zone), local_midnight(add_months(start, months), zone)


def time_zone(name: str) -> ZoneInfo:
    """An IANA zone, or ``InvalidArgument`` for the field ``time_zone``."""
    try:
        if not name or len(name) > 64:
            raise ZoneInfoNotFoundError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidArgument.field("time_zone", f"{name!r} is not an IANA time zone") from None


# --- cards ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Card:
    """A monthly card. Never deleted; ``version`` is the global card version of its last change."""

    card_id: str
    plate: str
    color: PlateColor
    holder_name: str
    holder_phone: str
    start_date: date
    months: int
    time_zone: str
    valid_from: datetime
    valid_until: datetime
    scope: tuple[str, ...]
    state: CardState
    version: int
    created_at: datetime
    updated_at: datetime
    cancel_reason: str = ""

    def valid_at_lot(self, lot_id: str) -> bool:
        """Empty scope: every connected lot."""
        return not self.scope or lot_id in self.scope

    def in_force(self, at: datetime) -> bool:
        return self.state is CardState.ACTIVE and self.valid_from <= at < self.valid_until

    def overlaps(self, valid_from: datetime, valid_until: datetime) -> bool:
        """Whether this card, while active, shares an instant with ``[valid_from, valid_until)``."""
        return self.state is CardState.ACTIVE and self.valid_from < valid_until and valid_from < self.valid_until

    def standing(self, lot_id: str) -> CardStanding:
        return CardStanding(self.card_id, self.state, self.valid_from, self.valid_until, self.valid_at_lot(lot_id))


@dataclass(frozen=True, slots=True)
class CardApplication:
    """A checked request for a card (办理月卡)."""

    request_id: str
    plate: str
    color: PlateColor
    holder_name: str
    holder_phone: str
    start_date: date
    months: int
    scope: tuple[str, ...] = field(default=())


def check_card_id(card_id: str, violations: list[tuple[str, str]], name: str = "card_id") -> None:
    if not 1 <= len(card_id) <= MAX_CARD_ID:
        violations.append((name, f"must be 1-{MAX_CARD_ID} characters"))


def check_request_id(request_id: str, violations: list[tuple[str, str]], name: str = "request_id") -> None:
    if not 1 <= len(request_id) <= MAX_REQUEST_ID:
        violations.append((name, f"must be 1-{MAX_REQUEST_ID} characters"))


def check_months(months: int, violations: list[tuple[str, str]], name: str = "months") -> None:
    if not 1 <= months <= MAX_MONTHS:
        violations.append((name, f"must be 1-{MAX_MONTHS}, not {months}"))


def check_plate(raw: str, violations: list[tuple[str, str]], name: str = "vehicle.plate") -> str:
    """The normalised plate, or a violation naming the broken grammar rule."""
    try:
        return plates.parse(raw)
    except plates.PlateError as error:
        violations.append((name, f"{error} (rule: {error.rule})"))
        return ""


def check_holder(name: str, phone: str, violations: list[tuple[str, str]]) -> tuple[str, str]:
    name = name.strip()
    if not name:
        violations.append(("holder_name", "is required"))
    elif len(name) > MAX_HOLDER_NAME or not name.isprintable():
        violations.append(("holder_name", f"must be at most {MAX_HOLDER_NAME} printable characters"))
    phone = phone.strip().replace(" ", "").replace("-", "")
    if not _PHONE.fullmatch(phone):
        violations.append(("holder_phone", "must be 3-20 digits with an optional leading '+'"))
    return name, phone


def check_scope(
    scope: Sequence[str], violations: list[tuple[str, str]], name: str = "scope_lot_ids"
) -> tuple[str, ...]:
    """Scope lot ids, de-duplicated in order; whether they exist is the store's question."""
    if len(scope) > MAX_SCOPE:
        violations.append((name, f"at most {MAX_SCOPE} lots"))
        return ()
    seen: dict[str, None] = {}
    for index, lot_id in enumerate(scope):
        if not _LOT_ID.fullmatch(lot_id):
            violations.append((f"{name}[{index}]", f"{lot_id!r} is not a lot id (1-64 of A-Z a-z 0-9 _ . -)"))
        seen.setdefault(lot_id, None)
    return tuple(seen)


def parse_start_date(text: str, today: date, violations: list[tuple[str, str]], name: str = "start_date") -> date:
    if not text:
        return today
    try:
        return date.fromisoformat(text) if len(text) == 10 else _bad_date()
    except ValueError:
        violations.append((name, f"{text!r} is not a date YYYY-MM-DD"))
        return today


def _bad_date() -> date:
    raise ValueError


def check_application(
    *,
    request_id: str,
    plate: str,
    color: PlateColor | None,
    holder_name: str,
    holder_phone: str,
    start_date: str,
    months: int,
    scope: Sequence[str],
    today: date,
) -> CardApplication:
    """Every field of a card application checked at once; ``InvalidArgument`` lists each broken one."""
    violations: list[tuple[str, str]] = []
    check_request_id(request_id, violations)
    normalised = check_plate(plate, violations)
    if color is None:
        violations.append(("vehicle.color", "is required"))
    name, phone = check_holder(holder_name, holder_phone, violations)
    start = parse_start_date(start_date, today, violations)
    check_months(months, violations)
    lots = check_scope(scope, violations)
    if violations:
        raise InvalidArgument("invalid card application: " + "; ".join(f"{f}: {d}" for f, d in violations), violations)
    assert color is not None
    return CardApplication(request_id, normalised, color, name, phone, start, months, lots)


def check_reason(reason: str) -> str:
    if len(reason) > MAX_REASON:
        raise InvalidArgument.field("reason", f"at most {MAX_REASON} characters")
    return reason


def keyed_hasher(key: bytes) -> Callable[[bytes], bytes]:
    """HMAC-SHA256 with ``key`` as a function of the message, for hashing many messages: the
    key's inner and outer pad blocks are hashed once (RFC 2104), so each message costs two
    compressions instead of four — a snapshot hashes a million plates."""
    block = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def digest(message: bytes) -> bytes:
        i = inner.copy()
        i.update(message)
        o = outer.copy()
        o.update(i.digest())
        return o.digest()

    return digest


def vehicle_hash(key: bytes, plate: str, color: PlateColor) -> bytes:
    """The keyed hash a lot sees instead of the plate: HMAC-SHA256(key, plate + "|" + colour name),
    colour name as in JSON (``"blue"``, ``"yellow_green"``)."""
    return hmac.digest(key, f"{plate}|{color.value}".encode(), "sha256")


def mask_phone(phone: str) -> str:
    """A phone for people to read: the last four digits only."""
    return "*" * max(len(phone) - 4, 0) + phone[-4:]


# --- membership ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CardStanding:
    """What a membership decision needs to know of one card, as one lot sees it."""

    card_id: str
    state: CardState
    valid_from: datetime
    valid_until: datetime
    valid_at_lot: bool


class Standing(Protocol):
    @property
    def state(self) -> CardState: ...
    @property
    def valid_from(self) -> datetime: ...
    @property
    def valid_until(self) -> datetime: ...
    @property
    def valid_at_lot(self) -> bool: ...


S = TypeVar("S", bound=Standing)


def decide_membership(cards: Iterable[S], at: datetime) -> tuple[MembershipStatus, S | None]:
    """The answer for one vehicle's cards at instant ``at``, and the card it is about.

    A card in force here → ``MONTHLY``; in force but out of scope → ``NOT_VALID_AT_LOT``;
    otherwise the card that ended last before ``at`` (or, if none has begun, the next to begin)
    answers ``CANCELLED`` or ``EXPIRED``; no card → ``NOT_MEMBER``. The platform and the lot's
    cache both decide with this function.
    """
    elsewhere: S | None = None
    ended: S | None = None
    upcoming: S | None = None
    for card in cards:
        if card.state is CardState.ACTIVE and card.valid_from <= at < card.valid_until:
            if card.valid_at_lot:
                return MembershipStatus.MONTHLY, card
            elsewhere = elsewhere or card
        elif card.valid_from <= at:
            if ended is None or card.valid_until > ended.valid_until:
                ended = card
        elif upcoming is None or card.valid_from < upcoming.valid_from:
            upcoming = card
    if elsewhere is not None:
        return MembershipStatus.NOT_VALID_AT_LOT, elsewhere
    chosen = ended or upcoming
    if chosen is None:
        return MembershipStatus.NOT_MEMBER, None
    if chosen.state is CardState.CANCELLED:
        return MembershipStatus.CANCELLED, chosen
    return MembershipStatus.EXPIRED, chosen


# --- lots ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lot:
    """A parking lot (车场) connected to the platform."""

    lot_id: str
    name: str
    vendor: str
    time_zone: str
    mode: MembershipMode
    period: SettlementPeriod
    close_delay_seconds: int
    membership_deadline_ms: int
    enabled: bool
    registered_at: datetime
    updated_at: datetime


#: Lot fields an operator may replace with UpdateLot.
UPDATABLE_LOT_FIELDS = (
    "name",
    "vendor",
    "time_zone",
    "mode",
    "period",
    "close_delay_seconds",
    "membership_deadline_ms",
    "enabled",
)


def check_lot_id(lot_id: str, name: str = "lot_id") -> str:
    if not _LOT_ID.fullmatch(lot_id):
        raise InvalidArgument.field(name, f"{lot_id!r} is not a lot id (1-64 of A-Z a-z 0-9 _ . -)")
    return lot_id


def check_lot_settings(values: dict[str, object], violations: list[tuple[str, str]], prefix: str = "lot.") -> None:
    """Check the lot settings present in ``values`` (field name → value)."""
    if "name" in values:
        name = str(values["name"])
        if not name.strip() or len(name) > MAX_LOT_NAME:
            violations.append((prefix + "name", f"is required, at most {MAX_LOT_NAME} characters"))
    if "vendor" in values and len(str(values["vendor"])) > MAX_VENDOR:
        violations.append((prefix + "vendor", f"at most {MAX_VENDOR} characters"))
    if "time_zone" in values:
        try:
            time_zone(str(values["time_zone"]))
        except InvalidArgument as error:
            violations.append((prefix + "time_zone", error.violations[0][1]))
    if "mode" in values and values["mode"] is None:
        violations.append((prefix + "mode", "is required (ONLINE, CACHED or ONLINE_FALLBACK)"))
    if "period" in values and values["period"] is None:
        violations.append((prefix + "period", "is required (PER_EXIT, DAILY, WEEKLY or MONTHLY)"))
    if "close_delay_seconds" in values:
        delay = int(values["close_delay_seconds"])  # type: ignore[call-overload]
        if not 0 <= delay <= MAX_CLOSE_DELAY_SECONDS:
            violations.append((prefix + "close_delay_seconds", f"must be 0-{MAX_CLOSE_DELAY_SECONDS}"))
    if "membership_deadline_ms" in values:
        deadline = int(values["membership_deadline_ms"])  # type: ignore[call-overload]
        if not 1 <= deadline <= MAX_DEADLINE_MS:
            violations.append((prefix + "membership_deadline_ms", f"must be 1-{MAX_DEADLINE_MS}"))


def outbox_lag_seconds(oldest_unsent: datetime | None, now: datetime) -> int:
    return max(int((now - oldest_unsent).total_seconds()), 0) if oldest_unsent is not None else 0


def cancelled_until(card: Card, now: datetime) -> datetime:
    """A cancelled card's end: the cancellation instant, never before its start (a card cancelled
    before it began keeps an empty interval) nor after its end."""
    return min(card.valid_until, max(now, card.valid_from))
