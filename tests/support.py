"""Helpers for tests that need real servers: a platform on a loopback port, lots, channels."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import grpc

from crosspark.client import open_channel
from crosspark.clock import Clock
from crosspark.platform import Platform, PlatformSettings

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"


@contextmanager
def running_platform(
    tmp_path: Path, db_url: str | None = None, clock: Clock | None = None, **settings: object
) -> Iterator[Platform]:
    """A platform serving plaintext on 127.0.0.1 (port chosen by the OS), stopped afterwards."""
    platform = Platform(
        PlatformSettings(
            admin_token=ADMIN_TOKEN,
            listen="127.0.0.1:0",
            db_url=db_url,
            data_dir=tmp_path / "platform",
            insecure=True,
            **settings,  # type: ignore[arg-type]
        ),
        clock,
    ).start()
    try:
        yield platform
    finally:
        platform.stop(grace=0)


def insert_lot(platform: Platform, lot_id: str, *, time_zone: str = "Asia/Shanghai") -> str:
    """Put a lot straight into the platform's database; returns its bearer token."""
    from card_service.store import LotRow, token_hash

    token = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    with platform.ctx.db.session() as session:
        session.add(
            LotRow(
                lot_id=lot_id, name=lot_id, vendor="test", time_zone=time_zone, mode="CACHED", period="DAILY",
                close_delay_seconds=3600, membership_deadline_ms=300, enabled=True, token_hash=token_hash(token),
                card_hash_key=secrets.token_bytes(32), registered_at=now, updated_at=now,
            )
        )
    return token


def channel_to(platform: Platform, token: str | None = ADMIN_TOKEN) -> grpc.Channel:
    return open_channel(platform.address, token=token, insecure=True)


def register_lot(platform: Platform, lot_id: str, *, mode: int = 2, period: int = 2) -> tuple[str, bytes]:
    """Register a lot through AdminService (as an operator would); returns its token and card-hash key.
    ``mode``/``period`` are the crosspark.v1 enum numbers (default CACHED, DAILY)."""
    from crosspark.v1 import admin_pb2, admin_pb2_grpc

    stub = admin_pb2_grpc.AdminServiceStub(channel_to(platform))
    reply = stub.RegisterLot(
        admin_pb2.RegisterLotRequest(
            lot=admin_pb2.Lot(lot_id=lot_id, name=lot_id, time_zone="Asia/Shanghai", mode=mode, period=period)  # type: ignore[arg-type]
        )
    )
    return reply.token, reply.card_hash_key



# --- settlement: lots with a settlement period, passages, the SettlementService stub ------------


def add_settlement_lot(
    platform: Platform,
    lot_id: str,
    *,
    period: str = "DAILY",
    registered_at: datetime,
    time_zone: str = "Asia/Shanghai",
    close_delay_seconds: int = 3600,
) -> str:
    """A lot in the platform's database with its settlement period; returns its token."""
    from sqlalchemy import update

    from card_service.store import LotRow

    token = insert_lot(platform, lot_id, time_zone=time_zone)
    with platform.ctx.db.session() as session:
        session.execute(
            update(LotRow)
            .where(LotRow.lot_id == lot_id)
            .values(period=period, registered_at=registered_at, close_delay_seconds=close_delay_seconds)
        )
    return token


def timestamp(instant: datetime):  # type: ignore[no-untyped-def]
    """A protobuf Timestamp of an aware instant."""
    from google.protobuf.timestamp_pb2 import Timestamp

    stamp = Timestamp()
    stamp.FromDatetime(instant)
    return stamp


def entry_passage(lot_id: str, at: datetime, card_id: str = "card_1", plate: str = "粤B12345"):  # type: ignore[no-untyped-def]
    """A monthly-card entry passage (its id is its stay id), blue plate, read by a camera."""
    import uuid

    from crosspark.v1 import common_pb2, settlement_pb2

    pid = str(uuid.uuid4())
    vehicle = common_pb2.VehicleIdentity(
        plate=plate, color=common_pb2.PLATE_COLOR_BLUE, source=common_pb2.IDENTITY_SOURCE_CAMERA, confidence=0.99
    )
    return settlement_pb2.Passage(
        passage_id=pid, lot_id=lot_id, gate_id="g1", direction=settlement_pb2.DIRECTION_ENTRY, vehicle=vehicle,
        occurred_at=timestamp(at), card_id=card_id, stay_id=pid,
    )


def exit_passage(entry, at: datetime, **extra: object):  # type: ignore[no-untyped-def]
    """The exit that closes ``entry``'s stay; ``extra`` sets more Passage fields (flags, …)."""
    import uuid

    from crosspark.v1 import settlement_pb2

    return settlement_pb2.Passage(
        passage_id=str(uuid.uuid4()), lot_id=entry.lot_id, gate_id="g2", direction=settlement_pb2.DIRECTION_EXIT,
        vehicle=entry.vehicle, occurred_at=timestamp(at), card_id=entry.card_id, stay_id=entry.passage_id,
        entry_passage_id=entry.passage_id, **extra,
    )


def settlement_stub(platform: Platform, token: str | None = None):  # type: ignore[no-untyped-def]
    from crosspark.v1 import settlement_pb2_grpc

    return settlement_pb2_grpc.SettlementServiceStub(channel_to(platform, token) if token else channel_to(platform))


def report_passages(platform: Platform, token: str, lot_id: str, *batches: list):  # type: ignore[no-untyped-def, type-arg]
    """Send each list of passages as one batch on one ReportPassages stream; the ack batches."""
    from crosspark.v1 import settlement_pb2

    requests = [
        settlement_pb2.PassageBatch(lot_id=lot_id, batch_seq=i + 1, passages=list(b)) for i, b in enumerate(batches)
    ]
    return list(settlement_stub(platform, token).ReportPassages(iter(requests)))


def ack_results(ack_batches: list) -> list[str]:  # type: ignore[type-arg]
    """``ACCEPTED`` / ``DUPLICATE`` / ``REJECTED`` of every ack, in order."""
    from crosspark.v1 import settlement_pb2

    return [
        settlement_pb2.AckResult.Name(a.result).removeprefix("ACK_RESULT_") for b in ack_batches for a in b.acks
    ]
