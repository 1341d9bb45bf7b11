"""Between protobuf messages of ``crosspark.v1`` and the lot node's domain values."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from google.protobuf.timestamp_pb2 import Timestamp

from crosspark.identity import IdentitySource, PlateColor, VehicleIdentity
from crosspark.v1 import cards_pb2, common_pb2, settlement_pb2
from lot_node.gate import Decision, Direction, Flag, Membership, MembershipAnswer

# Enum numbers (typed Any: the generated stubs type enum fields by their enum class).
_COLOR_TO_PB: dict[PlateColor, Any] = {c: common_pb2.PlateColor.Value(f"PLATE_COLOR_{c.name}") for c in PlateColor}
_COLOR_FROM_PB = {v: k for k, v in _COLOR_TO_PB.items()}
_SOURCE_TO_PB: dict[IdentitySource, Any] = {
    s: common_pb2.IdentitySource.Value(f"IDENTITY_SOURCE_{s.name}") for s in IdentitySource
}
_SOURCE_FROM_PB = {v: k for k, v in _SOURCE_TO_PB.items()}
_FLAG_TO_PB = {f: settlement_pb2.PassageFlag.Value(f"PASSAGE_FLAG_{f.name}") for f in Flag}
_MEMBERSHIP_TO_PB: dict[Membership, Any] = {
    m: cards_pb2.MembershipStatus.Value(f"MEMBERSHIP_STATUS_{m.name}")
    for m in Membership
    if m is not Membership.UNKNOWN
}
_MEMBERSHIP_FROM_PB = {v: k for k, v in _MEMBERSHIP_TO_PB.items()}
DIRECTION_TO_PB = {Direction.ENTRY: settlement_pb2.DIRECTION_ENTRY, Direction.EXIT: settlement_pb2.DIRECTION_EXIT}
DIRECTION_FROM_PB = {v: k for k, v in DIRECTION_TO_PB.items()}


def timestamp(instant: datetime | None) -> Timestamp | None:
    if instant is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(instant.astimezone(UTC))
    return ts


def instant(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


def color_to_pb(color: PlateColor) -> Any:
    return _COLOR_TO_PB[color]


def color_from_pb(value: int) -> PlateColor | None:
    return _COLOR_FROM_PB.get(value)


def identity_to_pb(identity: VehicleIdentity) -> common_pb2.VehicleIdentity:
    return common_pb2.VehicleIdentity(
        plate=identity.plate, color=_COLOR_TO_PB[identity.color], source=_SOURCE_TO_PB[identity.source],
        confidence=identity.confidence, obu_serial=identity.obu_serial, obu_issuer=identity.obu_issuer,
        vehicle_class=identity.vehicle_class,
    )


def identity_from_pb(message: common_pb2.VehicleIdentity, field: str = "identity") -> VehicleIdentity:
    """A device's identity; the colour is required, the source defaults to MANUAL."""
    from crosspark.errors import InvalidArgument

    color = _COLOR_FROM_PB.get(message.color)
    if color is None:
        raise InvalidArgument.field(f"{field}.color", "a plate colour is required")
    if len(message.plate) > 32 or len(message.obu_serial) > 16 or len(message.obu_issuer) > 16:
        raise InvalidArgument.field(field, "plate at most 16 characters, OBU serial and issuer at most 16 hex digits")
    return VehicleIdentity(
        plate=message.plate,
        color=color,
        source=_SOURCE_FROM_PB.get(message.source, IdentitySource.MANUAL),
        # proto3 has no presence on a float: 0 means "not given", which devices mean as certain.
        confidence=message.confidence or 1.0,
        obu_serial=message.obu_serial,
        obu_issuer=message.obu_issuer,
        vehicle_class=message.vehicle_class,
    )


def membership_to_pb(status: Membership) -> Any:
    return _MEMBERSHIP_TO_PB.get(status, cards_pb2.MEMBERSHIP_STATUS_UNSPECIFIED)


def answer_from_pb(message: cards_pb2.MembershipAnswer) -> MembershipAnswer:
    status = _MEMBERSHIP_FROM_PB.get(message.status)
    if status is None:
        raise ValueError(f"platform answered membership status {message.status}")
    return MembershipAnswer(
        status=status,
        card_id=message.card_id,
        valid_until=instant(message.valid_until) if message.HasField("valid_until") else None,
        answer_id=message.answer_id,
    )


def flags_to_pb(flags: frozenset[Flag] | set[Flag]) -> list[Any]:
    return sorted(_FLAG_TO_PB[f] for f in flags)


def decision_to_pb(decision: Decision, candidates: tuple[VehicleIdentity, ...] = ()) -> object:
    from crosspark.v1 import gate_pb2

    return gate_pb2.PassDecision(
        open=decision.open,
        kind=cast(Any, gate_pb2.VehicleKind.Value(f"VEHICLE_KIND_{decision.kind.name}")),
        card_id=decision.card_id,
        stay_id=decision.stay_id,
        passage_id=decision.passage_id,
        fee_due_fen=decision.fee_due_fen,
        identity=identity_to_pb(decision.identity),
        # The gate hears of a stay this entry abandoned; the flag itself is on the closing record.
        flags=flags_to_pb(decision.flags | {Flag.ABANDONED for c in decision.closures if c.state == "ABANDONED"}),
        membership=membership_to_pb(decision.membership.status),
        display=decision.display,
        candidates=[identity_to_pb(c) for c in candidates],
    )
