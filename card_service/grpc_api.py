"""gRPC entry points of the card side: requests to domain values, one service call, results to
messages. Errors are domain exceptions that ``crosspark.rpc`` maps to status codes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from google.protobuf.timestamp_pb2 import Timestamp

from card_service import card_list, service, store, wire
from card_service.domain import (
    Card,
    CardState,
    Lot,
    MembershipMode,
    MembershipStatus,
    SettlementPeriod,
    check_application,
    check_lot_id,
    check_plate,
)
from crosspark.auth import require_lot
from crosspark.errors import InvalidArgument
from crosspark.identity import PlateColor
from crosspark.rpc import principal_of
from crosspark.server import Registration
from crosspark.v1 import admin_pb2, admin_pb2_grpc, cards_pb2, cards_pb2_grpc, common_pb2

if TYPE_CHECKING:
    from crosspark.platform import PlatformContext

# --- conversions ---------------------------------------------------------------------------------

_COLOR_FROM_PB: dict[int, PlateColor] = {
    common_pb2.PLATE_COLOR_BLUE: PlateColor.BLUE,
    common_pb2.PLATE_COLOR_YELLOW: PlateColor.YELLOW,
    common_pb2.PLATE_COLOR_BLACK: PlateColor.BLACK,
    common_pb2.PLATE_COLOR_WHITE: PlateColor.WHITE,
    common_pb2.PLATE_COLOR_GREEN: PlateColor.GREEN,
    common_pb2.PLATE_COLOR_YELLOW_GREEN: PlateColor.YELLOW_GREEN,
    common_pb2.PLATE_COLOR_BLUE_WHITE: PlateColor.BLUE_WHITE,
}
_COLOR_TO_PB: dict[PlateColor, Any] = {color: number for number, color in _COLOR_FROM_PB.items()}
_STATE_TO_PB = {CardState.ACTIVE: cards_pb2.CARD_STATE_ACTIVE, CardState.CANCELLED: cards_pb2.CARD_STATE_CANCELLED}
_STATUS_TO_PB = {
    MembershipStatus.MONTHLY: cards_pb2.MEMBERSHIP_STATUS_MONTHLY,
    MembershipStatus.NOT_MEMBER: cards_pb2.MEMBERSHIP_STATUS_NOT_MEMBER,
    MembershipStatus.EXPIRED: cards_pb2.MEMBERSHIP_STATUS_EXPIRED,
    MembershipStatus.NOT_VALID_AT_LOT: cards_pb2.MEMBERSHIP_STATUS_NOT_VALID_AT_LOT,
    MembershipStatus.CANCELLED: cards_pb2.MEMBERSHIP_STATUS_CANCELLED,
}
_MODE_FROM_PB: dict[int, MembershipMode] = {
    common_pb2.MEMBERSHIP_MODE_ONLINE: MembershipMode.ONLINE,
    common_pb2.MEMBERSHIP_MODE_CACHED: MembershipMode.CACHED,
    common_pb2.MEMBERSHIP_MODE_ONLINE_FALLBACK: MembershipMode.ONLINE_FALLBACK,
}
_MODE_TO_PB: dict[MembershipMode, Any] = {mode: number for number, mode in _MODE_FROM_PB.items()}
_PERIOD_FROM_PB: dict[int, SettlementPeriod] = {
    common_pb2.SETTLEMENT_PERIOD_PER_EXIT: SettlementPeriod.PER_EXIT,
    common_pb2.SETTLEMENT_PERIOD_DAILY: SettlementPeriod.DAILY,
    common_pb2.SETTLEMENT_PERIOD_WEEKLY: SettlementPeriod.WEEKLY,
    common_pb2.SETTLEMENT_PERIOD_MONTHLY: SettlementPeriod.MONTHLY,
}
_PERIOD_TO_PB: dict[SettlementPeriod, Any] = {period: number for number, period in _PERIOD_FROM_PB.items()}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp(instant: datetime) -> Timestamp:
    delta = instant - _EPOCH
    return Timestamp(seconds=delta.days * 86400 + delta.seconds, nanos=delta.microseconds * 1000)


def instant(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


def color_of(number: int, field: str = "vehicle.color") -> PlateColor:
    try:
        return _COLOR_FROM_PB[number]
    except KeyError:
        raise InvalidArgument.field(field, "is required (a PlateColor other than UNSPECIFIED)") from None


def card_message(card: Card) -> cards_pb2.Card:
    return cards_pb2.Card(
        card_id=card.card_id,
        vehicle=common_pb2.VehicleIdentity(plate=card.plate, color=_COLOR_TO_PB[card.color]),
        holder_name=card.holder_name,
        holder_phone=card.holder_phone,
        start_date=card.start_date.isoformat(),
        months=card.months,
        valid_from=timestamp(card.valid_from),
        valid_until=timestamp(card.valid_until),
        scope_lot_ids=list(card.scope),
        state=_STATE_TO_PB[card.state],
        version=card.version,
        created_at=timestamp(card.created_at),
        updated_at=timestamp(card.updated_at),
        time_zone=card.time_zone,
    )


def lot_message(lot: Lot) -> admin_pb2.Lot:
    return admin_pb2.Lot(
        lot_id=lot.lot_id,
        name=lot.name,
        vendor=lot.vendor,
        time_zone=lot.time_zone,
        mode=_MODE_TO_PB[lot.mode],
        period=_PERIOD_TO_PB[lot.period],
        close_delay_seconds=lot.close_delay_seconds,
        membership_deadline_ms=lot.membership_deadline_ms,
        registered_at=timestamp(lot.registered_at),
        updated_at=timestamp(lot.updated_at),
        enabled=lot.enabled,
    )


def lot_values(lot: admin_pb2.Lot) -> dict[str, Any]:
    """Settings of a ``Lot`` message as domain values (``None`` for an unset enum)."""
    return {
        "lot_id": lot.lot_id,
        "name": lot.name,
        "vendor": lot.vendor,
        "time_zone": lot.time_zone,
        "mode": _MODE_FROM_PB.get(lot.mode),
        "period": _PERIOD_FROM_PB.get(lot.period),
        "close_delay_seconds": lot.close_delay_seconds,
        "membership_deadline_ms": lot.membership_deadline_ms,
        "enabled": lot.enabled,
    }


def credentials_message(credentials: service.LotCredentials) -> admin_pb2.LotCredentials:
    return admin_pb2.LotCredentials(
        lot=lot_message(credentials.lot), token=credentials.token, card_hash_key=credentials.card_hash_key
    )


def list_message(message: card_list.Message) -> cards_pb2.CardListMessage:
    if isinstance(message, card_list.Chunk):
        return cards_pb2.CardListMessage(chunk=chunk_message(message))
    if isinstance(message, card_list.Heartbeat):
        return cards_pb2.CardListMessage(
            heartbeat=cards_pb2.Heartbeat(version=message.version, at=timestamp(message.at))
        )
    if isinstance(message, card_list.SnapshotBegin):
        return cards_pb2.CardListMessage(
            snapshot_begin=cards_pb2.SnapshotBegin(version=message.version, entry_count=message.entry_count)
        )
    return cards_pb2.CardListMessage(snapshot_end=cards_pb2.SnapshotEnd(version=message.version))


def chunk_message(chunk: card_list.Chunk) -> cards_pb2.CardListChunk:
    return wire.chunk(chunk.entries, chunk.version)


# --- servicers -----------------------------------------------------------------------------------


class CardServicer(cards_pb2_grpc.CardServiceServicer):
    def __init__(self, ctx: PlatformContext) -> None:
        self.ctx = ctx
        self.watch = card_list.VersionWatch(ctx.db)
        self.env = service.CardEnv(ctx.db, ctx.clock.now, ctx.settings.time_zone, changed=self.watch.poke)
        self.seen = service.SeenRecorder(ctx.db)
        ctx.spawn("lot-seen-writer", self.seen.run, wake=self.seen.wake)
        self.reads = store.HotReads(ctx.db)

    def ApplyCard(self, request: cards_pb2.ApplyCardRequest, context: Any) -> cards_pb2.Card:
        application = check_application(
            request_id=request.request_id,
            plate=request.vehicle.plate,
            color=_COLOR_FROM_PB.get(request.vehicle.color),
            holder_name=request.holder_name,
            holder_phone=request.holder_phone,
            start_date=request.start_date,
            months=request.months,
            scope=list(request.scope_lot_ids),
            today=self.env.today(),
        )
        return card_message(service.apply_card(self.env, application))

    def RenewCard(self, request: cards_pb2.RenewCardRequest, context: Any) -> cards_pb2.Card:
        return card_message(service.renew_card(self.env, request.card_id, request.months, request.request_id))

    def CancelCard(self, request: cards_pb2.CancelCardRequest, context: Any) -> cards_pb2.Card:
        return card_message(service.cancel_card(self.env, request.card_id, request.reason))

    def GetCard(self, request: cards_pb2.GetCardRequest, context: Any) -> cards_pb2.Card:
        return card_message(service.get_card(self.env, request.card_id))

    def ListCards(self, request: cards_pb2.ListCardsRequest, context: Any) -> cards_pb2.ListCardsResponse:
        cards, token = service.list_cards(self.env, request.page.page_size, request.page.page_token, request.plate)
        return cards_pb2.ListCardsResponse(cards=[card_message(c) for c in cards], next_page_token=token)

    def CheckMembership(self, request: cards_pb2.CheckMembershipRequest, context: Any) -> cards_pb2.MembershipAnswer:
        require_lot(principal_of(context), check_lot_id(request.lot_id))
        violations: list[tuple[str, str]] = []
        plate = check_plate(request.vehicle.plate, violations)
        color = _COLOR_FROM_PB.get(request.vehicle.color)
        if color is None:
            violations.append(("vehicle.color", "is required (a PlateColor other than UNSPECIFIED)"))
        if violations:
            raise InvalidArgument("invalid vehicle: " + "; ".join(f"{f}: {d}" for f, d in violations), violations)
        assert color is not None
        at = None
        if request.HasField("at"):
            if not 0 <= request.at.seconds < 253402300800:  # years 1970-9999
                raise InvalidArgument.field("at", "is not an instant between 1970 and 9999")
            at = instant(request.at)
        answer = service.check_membership(self.env, self.reads, request.lot_id, plate, color, at)
        self.seen.seen(request.lot_id, self.ctx.clock.now())
        reply = cards_pb2.MembershipAnswer(
            status=_STATUS_TO_PB[answer.status], answer_id=answer.answer_id, card_version=answer.card_version
        )
        if answer.card is not None:
            reply.card_id = answer.card.card_id
            reply.valid_until.CopyFrom(timestamp(answer.card.valid_until))
        return reply

    def WatchCards(self, request: cards_pb2.WatchCardsRequest, context: Any) -> Iterator[cards_pb2.CardListMessage]:
        require_lot(principal_of(context), check_lot_id(request.lot_id))
        if request.since_version < 0:
            raise InvalidArgument.field("since_version", "must be 0 (none) or a version the lot holds")
        self.watch.start(self.ctx.spawn)
        stop = self.ctx.stop_event

        def active() -> bool:
            return context.is_active() and not stop.is_set()

        for message in card_list.watch_cards(
            self.ctx.db, self.watch, self.ctx.clock.now, request.lot_id, request.since_version, active
        ):
            yield list_message(message)


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, ctx: PlatformContext, env: service.CardEnv, seen: service.SeenRecorder) -> None:
        self.ctx = ctx
        self.env = env
        self.seen = seen

    def RegisterLot(self, request: admin_pb2.RegisterLotRequest, context: Any) -> admin_pb2.LotCredentials:
        return credentials_message(service.register_lot(self.env, lot_values(request.lot)))

    def UpdateLot(self, request: admin_pb2.UpdateLotRequest, context: Any) -> admin_pb2.Lot:
        lot = service.update_lot(self.env, request.lot.lot_id, lot_values(request.lot), list(request.update_fields))
        return lot_message(lot)

    def ListLots(self, request: admin_pb2.ListLotsRequest, context: Any) -> admin_pb2.ListLotsResponse:
        lots, token = service.list_lots(self.env, request.page.page_size, request.page.page_token)
        return admin_pb2.ListLotsResponse(lots=[lot_message(lot) for lot in lots], next_page_token=token)

    def RotateLotCredentials(
        self, request: admin_pb2.RotateLotCredentialsRequest, context: Any
    ) -> admin_pb2.LotCredentials:
        return credentials_message(service.rotate_lot_credentials(self.env, request.lot_id))

    def LotStatus(self, request: admin_pb2.LotStatusRequest, context: Any) -> admin_pb2.LotStatusResponse:
        status = service.lot_status(self.env, request.lot_id, self.seen)
        reply = admin_pb2.LotStatusResponse(
            lot=lot_message(status.lot),
            card_version_held=status.card_version_held,
            card_version_latest=status.card_version_latest,
            outbox_depth=status.outbox_depth,
            outbox_lag_seconds=status.outbox_lag_seconds,
            passages_received=status.passages_received,
            connected=status.connected,
        )
        if status.last_seen_at is not None:
            reply.last_seen_at.CopyFrom(timestamp(status.last_seen_at))
        return reply


def services(ctx: PlatformContext) -> list[Registration]:
    cards = CardServicer(ctx)
    return [
        Registration(
            cards_pb2_grpc.add_CardServiceServicer_to_server,
            cards,
            cards_pb2.DESCRIPTOR.services_by_name["CardService"].full_name,
        ),
        Registration(
            admin_pb2_grpc.add_AdminServiceServicer_to_server,
            AdminServicer(ctx, cards.env, cards.seen),
            admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
        ),
    ]
