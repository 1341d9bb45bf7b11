"""Helpers for settlement's integration tests: lots with a chosen period, passages, stubs."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import update

from crosspark.platform import Platform
from crosspark.v1 import common_pb2, settlement_pb2, settlement_pb2_grpc
from tests.support import channel_to, insert_lot

pb = settlement_pb2


def add_lot(
    platform: Platform,
    lot_id: str,
    *,
    period: str = "DAILY",
    registered_at: datetime,
    time_zone: str = "Asia/Shanghai",
    close_delay_seconds: int = 3600,
) -> str:
    """A registered lot with its settlement period; returns its token."""
    from card_service.store import LotRow

    token = insert_lot(platform, lot_id, time_zone=time_zone)
    with platform.ctx.db.session() as session:
        session.execute(
            update(LotRow)
            .where(LotRow.lot_id == lot_id)
            .values(period=period, registered_at=registered_at, close_delay_seconds=close_delay_seconds)
        )
    return token


def ts(instant: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(instant)
    return t


def vehicle(plate: str = "粤B12345") -> common_pb2.VehicleIdentity:
    return common_pb2.VehicleIdentity(
        plate=plate, color=common_pb2.PLATE_COLOR_BLUE, source=common_pb2.IDENTITY_SOURCE_CAMERA, confidence=0.99
    )


def entry(lot_id: str, at: datetime, card_id: str = "card_1", plate: str = "粤B12345") -> pb.Passage:
    pid = str(uuid.uuid4())
    return pb.Passage(
        passage_id=pid,
        lot_id=lot_id,
        gate_id="g1",
        direction=pb.DIRECTION_ENTRY,
        vehicle=vehicle(plate),
        occurred_at=ts(at),
        card_id=card_id,
        stay_id=pid,
    )


def exit_of(entry_passage: pb.Passage, at: datetime, **extra: object) -> pb.Passage:
    return pb.Passage(
        passage_id=str(uuid.uuid4()),
        lot_id=entry_passage.lot_id,
        gate_id="g2",
        direction=pb.DIRECTION_EXIT,
        vehicle=entry_passage.vehicle,
        occurred_at=ts(at),
        card_id=entry_passage.card_id,
        stay_id=entry_passage.passage_id,
        entry_passage_id=entry_passage.passage_id,
        **extra,  # type: ignore[arg-type]
    )


def stub(platform: Platform, token: str | None = None) -> settlement_pb2_grpc.SettlementServiceStub:
    return settlement_pb2_grpc.SettlementServiceStub(channel_to(platform, token) if token else channel_to(platform))


def report(platform: Platform, token: str, lot_id: str, *batches: Iterable[pb.Passage]) -> list[pb.PassageAckBatch]:
    requests = [pb.PassageBatch(lot_id=lot_id, batch_seq=i + 1, passages=list(b)) for i, b in enumerate(batches)]
    return list(stub(platform, token).ReportPassages(iter(requests)))


def results(ack_batches: list[pb.PassageAckBatch]) -> list[str]:
    return [pb.AckResult.Name(a.result).removeprefix("ACK_RESULT_") for b in ack_batches for a in b.acks]
