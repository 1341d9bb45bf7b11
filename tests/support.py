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
