"""Decisions at the gate (DESIGN section 5): who the vehicle is, which stay an exit closes,
whether it is a monthly-card vehicle, what it owes. Pure rules: no I/O, no clock, no gRPC.

The service layer gathers the facts (identity readings, membership answer, open stays) and
records what these functions return, in one transaction, before the barrier opens.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from crosspark.identity import PlateColor, VehicleIdentity


class Direction(enum.Enum):
    ENTRY = "ENTRY"
    EXIT = "EXIT"


class VehicleKind(enum.Enum):
    MONTHLY = "MONTHLY"
    TEMPORARY = "TEMPORARY"  # 临时车


class Membership(enum.Enum):
    """The membership answer (DESIGN section 3); ``UNKNOWN`` when nobody could answer."""

    MONTHLY = "MONTHLY"
    NOT_MEMBER = "NOT_MEMBER"
    EXPIRED = "EXPIRED"
    NOT_VALID_AT_LOT = "NOT_VALID_AT_LOT"
    CANCELLED = "CANCELLED"
    UNKNOWN = "UNKNOWN"


class Flag(enum.Enum):
    """Flags on a passage; the names are those of ``crosspark.v1.PassageFlag``."""

    OFFLINE_DECISION = "OFFLINE_DECISION"
    FUZZY_MATCHED = "FUZZY_MATCHED"
    EXIT_WITHOUT_ENTRY = "EXIT_WITHOUT_ENTRY"
    ABANDONED = "ABANDONED"
    IDENTITY_MISMATCH = "IDENTITY_MISMATCH"
    CARD_ENDED_IN_STAY = "CARD_ENDED_IN_STAY"


@dataclass(frozen=True, slots=True)
class MembershipAnswer:
    """What the gate knows of the vehicle's card at one instant.

    ``offline`` marks an answer made without the platform (timeout, error): the passage is then
    flagged ``OFFLINE_DECISION``."""

    status: Membership
    card_id: str = ""
    valid_until: datetime | None = None
    answer_id: str = ""
    offline: bool = False


UNKNOWN_OFFLINE = MembershipAnswer(Membership.UNKNOWN, offline=True)


@dataclass(frozen=True, slots=True)
class OpenStay:
    """A vehicle inside the lot."""

    stay_id: str
    plate: str
    color: PlateColor
    kind: VehicleKind
    card_id: str
    card_valid_until: datetime | None
    entered_at: datetime


# --- identity -------------------------------------------------------------------------------------


def resolve_identity(
    camera: VehicleIdentity | None, etc: VehicleIdentity | None
) -> tuple[VehicleIdentity | None, frozenset[Flag]]:
    """The identity a decision uses: the camera's when it read a plate, else the ETC's.
    Both read and the plate numbers disagree: camera wins, flagged ``IDENTITY_MISMATCH``."""
    if camera is not None and etc is not None:
        if camera.plate != etc.plate:
            return camera, frozenset({Flag.IDENTITY_MISMATCH})
        return camera, frozenset()
    return camera or etc, frozenset()


# --- exit matching ----------------------------------------------------------------------------------

#: Characters a camera confuses with one another (DESIGN section 5).
CONFUSIONS: tuple[str, ...] = ("8B", "0DQ", "17T", "2Z", "5S", "6G")
_CONFUSABLE: dict[str, str] = {ch: group.replace(ch, "") for group in CONFUSIONS for ch in group}


def confusable_variants(plate: str) -> list[str]:
    """Every plate that differs from ``plate`` in exactly one character by a known confusion.
    The province (first character) is never confused."""
    variants = []
    for i in range(1, len(plate)):
        for other in _CONFUSABLE.get(plate[i], ""):
            variants.append(plate[:i] + other + plate[i + 1 :])
    return variants


@dataclass(frozen=True, slots=True)
class ExitMatch:
    stay: OpenStay | None
    fuzzy: bool = False


def match_exit(plate: str, color: PlateColor, open_stays: Sequence[OpenStay]) -> ExitMatch:
    """The open stay an exit closes. ``open_stays`` are the open stays of the plate and of its
    confusable variants (same colour). An exact match wins (the earliest if several); otherwise
    exactly one confusable stay must fit, flagged fuzzy; otherwise none."""
    candidates = [s for s in open_stays if s.color is color]
    exact = sorted((s for s in candidates if s.plate == plate), key=lambda s: s.entered_at)
    if exact:
        return ExitMatch(exact[0])
    variants = set(confusable_variants(plate))
    fuzzy = [s for s in candidates if s.plate in variants]
    if len(fuzzy) == 1:
        return ExitMatch(fuzzy[0], fuzzy=True)
    return ExitMatch(None)


# --- decisions ----------------------------------------------------------------------------------------

#: Prices a temporary part of a stay, ``[start, end)`` → fen (the lot's own tariff).
PriceTemporary = Callable[[datetime, datetime], int]


@dataclass(frozen=True, slots=True)
class StayClosure:
    """An open stay ended by this decision (an exit, or an abandoned stay at a new entry)."""

    stay: OpenStay
    exit_passage_id: str
    exited_at: datetime
    state: str  # "CLOSED" or "ABANDONED"
    split_at: datetime | None = None
    fee_fen: int = 0
    flags: frozenset[Flag] = frozenset()
    # Whether the closing passage goes to the platform (monthly-card stays).
    report: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    """The gate's answer and the record it leaves (passage ``passage_id``)."""

    passage_id: str
    direction: Direction
    identity: VehicleIdentity
    occurred_at: datetime
    open: bool
    kind: VehicleKind
    membership: MembershipAnswer
    stay_id: str
    card_id: str = ""
    entry_passage_id: str = ""
    fee_due_fen: int = 0
    flags: frozenset[Flag] = frozenset()
    card_valid_until: datetime | None = None
    display: str = ""
    # Whether the passage goes to the platform (monthly-card records only).
    report: bool = False
    # A stay this decision opens (entries, exits without entry), or closes.
    new_stay: OpenStay | None = None
    closures: tuple[StayClosure, ...] = field(default_factory=tuple)


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def _new_stay(passage_id: str, identity: VehicleIdentity, answer: MembershipAnswer, at: datetime) -> OpenStay:
    """The stay a passage opens: monthly when the answer is, on that card; temporary otherwise."""
    monthly = answer.status is Membership.MONTHLY
    return OpenStay(
        stay_id=passage_id,
        plate=identity.plate,
        color=identity.color,
        kind=VehicleKind.MONTHLY if monthly else VehicleKind.TEMPORARY,
        card_id=answer.card_id if monthly else "",
        card_valid_until=answer.valid_until if monthly else None,
        entered_at=at,
    )


def decide_entry(
    passage_id: str,
    identity: VehicleIdentity,
    at: datetime,
    answer: MembershipAnswer,
    inside: Sequence[OpenStay],
    abandon_ids: Sequence[str],
    flags: frozenset[Flag] = frozenset(),
) -> Decision:
    """An entry: a valid card makes a monthly stay; anything else a temporary one. Open stays of
    the same vehicle (``inside``) are closed as ``ABANDONED`` by passages ``abandon_ids``."""
    monthly = answer.status is Membership.MONTHLY
    flags = flags | ({Flag.OFFLINE_DECISION} if answer.offline else set())
    closures = tuple(_abandon(stay, closing_id, at) for stay, closing_id in zip(inside, abandon_ids, strict=True))
    stay = _new_stay(passage_id, identity, answer, at)
    kind = stay.kind
    return Decision(
        passage_id=passage_id,
        direction=Direction.ENTRY,
        identity=identity,
        occurred_at=at,
        open=True,
        kind=kind,
        membership=answer,
        stay_id=passage_id,
        card_id=stay.card_id,
        flags=frozenset(flags),
        card_valid_until=stay.card_valid_until,
        display=f"{identity.plate} {'月卡车' if monthly else '临时车'} 欢迎光临",
        report=monthly,
        new_stay=stay,
        closures=closures,
    )


def _abandon(stay: OpenStay, closing_id: str, at: datetime) -> StayClosure:
    """A stay whose vehicle entered again: closed at the new entry, nothing collected. A monthly
    stay is still reported (its card's end splits it as at an exit)."""
    monthly = stay.kind is VehicleKind.MONTHLY
    split_at = None
    flags = {Flag.ABANDONED}
    if monthly and stay.card_valid_until is not None and stay.card_valid_until < at:
        split_at = max(stay.card_valid_until, stay.entered_at)
        flags.add(Flag.CARD_ENDED_IN_STAY)
    return StayClosure(stay, closing_id, at, "ABANDONED", split_at, 0, frozenset(flags), report=monthly)


def card_end_in_stay(stay: OpenStay, at: datetime, answer: MembershipAnswer) -> datetime | None:
    """Where a monthly stay stops being the platform's: None when the card covers it to the exit.

    A card still valid at the exit covers the stay. Otherwise the card ended at the answer's
    ``valid_until`` (or, with no answer at all, at what was known at entry); a card with no end
    inside the stay (e.g. its scope changed) is given the benefit of the doubt."""
    if answer.status is Membership.MONTHLY:
        return None
    if answer.status is Membership.UNKNOWN:
        end = stay.card_valid_until
    else:
        end = answer.valid_until if answer.valid_until is not None else stay.card_valid_until
    if end is None or end >= at:
        return None
    return max(end, stay.entered_at)


def decide_exit(
    passage_id: str,
    identity: VehicleIdentity,
    at: datetime,
    match: ExitMatch,
    answer: MembershipAnswer | None,
    price_temporary: PriceTemporary,
    exit_without_entry_fee_fen: int,
    read_flags: frozenset[Flag] = frozenset(),
) -> Decision:
    """An exit: close the matched stay. Monthly stays are re-checked against ``answer`` and split
    when the card ended inside them; temporary stays pay the lot's tariff; an exit with no open
    stay pays the lot's flat fee unless the vehicle holds a valid card. ``answer`` may be None
    only for a temporary stay (its membership is not asked again)."""
    flags = set(read_flags)
    if match.fuzzy:
        flags.add(Flag.FUZZY_MATCHED)
    stay = match.stay
    if stay is None:
        return _exit_without_entry(passage_id, identity, at, answer, exit_without_entry_fee_fen, flags)
    if stay.kind is VehicleKind.TEMPORARY:
        fee = price_temporary(stay.entered_at, at)
        closure = StayClosure(stay, passage_id, at, "CLOSED", fee_fen=fee, flags=frozenset(flags))
        return Decision(
            passage_id=passage_id,
            direction=Direction.EXIT,
            identity=identity,
            occurred_at=at,
            open=fee == 0,
            kind=VehicleKind.TEMPORARY,
            membership=answer or MembershipAnswer(Membership.NOT_MEMBER),
            stay_id=stay.stay_id,
            entry_passage_id=stay.stay_id,
            fee_due_fen=fee,
            flags=frozenset(flags),
            display=_exit_display(identity, VehicleKind.TEMPORARY, fee),
            closures=(closure,),
        )
    if answer is None:
        raise ValueError("a monthly stay's exit needs a membership answer")
    if answer.offline:
        flags.add(Flag.OFFLINE_DECISION)
    end = card_end_in_stay(stay, at, answer)
    fee = 0
    if end is not None:
        flags.add(Flag.CARD_ENDED_IN_STAY)
        fee = price_temporary(end, at)
    closure = StayClosure(
        stay, passage_id, at, "CLOSED", split_at=end, fee_fen=fee, flags=frozenset(flags), report=True
    )
    return Decision(
        passage_id=passage_id,
        direction=Direction.EXIT,
        identity=identity,
        occurred_at=at,
        open=fee == 0,
        kind=VehicleKind.MONTHLY,
        membership=answer,
        stay_id=stay.stay_id,
        card_id=stay.card_id,
        entry_passage_id=stay.stay_id,
        fee_due_fen=fee,
        flags=frozenset(flags),
        card_valid_until=end,
        display=_exit_display(identity, VehicleKind.MONTHLY, fee),
        report=True,
        closures=(closure,),
    )


def _exit_without_entry(
    passage_id: str,
    identity: VehicleIdentity,
    at: datetime,
    answer: MembershipAnswer | None,
    fee_fen: int,
    flags: set[Flag],
) -> Decision:
    """No open stay: a valid card exits free (and is reported); anyone else pays the lot's flat
    fee. The exit becomes a stay of its own, ``[at, at)``, whose id is the exit passage's."""
    answer = answer or UNKNOWN_OFFLINE
    flags.add(Flag.EXIT_WITHOUT_ENTRY)
    if answer.offline:
        flags.add(Flag.OFFLINE_DECISION)
    monthly = answer.status is Membership.MONTHLY
    fee = 0 if monthly else fee_fen
    stay = _new_stay(passage_id, identity, answer, at)
    kind = stay.kind
    closure = StayClosure(stay, passage_id, at, "CLOSED", fee_fen=fee, flags=frozenset(flags), report=monthly)
    return Decision(
        passage_id=passage_id,
        direction=Direction.EXIT,
        identity=identity,
        occurred_at=at,
        open=fee == 0,
        kind=kind,
        membership=answer,
        stay_id=passage_id,
        card_id=stay.card_id,
        fee_due_fen=fee,
        flags=frozenset(flags),
        display=_exit_display(identity, kind, fee),
        report=monthly,
        new_stay=stay,
        closures=(closure,),
    )


def _exit_display(identity: VehicleIdentity, kind: VehicleKind, fee: int) -> str:
    if fee:
        return f"{identity.plate} 请缴费 {yuan(fee)} 元"
    return f"{identity.plate} {'月卡车' if kind is VehicleKind.MONTHLY else '临时车'} 一路顺风"
