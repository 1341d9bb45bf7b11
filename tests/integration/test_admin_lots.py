"""AdminService: registering lots, their credentials, settings and status, on a real platform."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from card_service import store
from card_service.service import SeenRecorder
from crosspark.clock import ManualClock
from crosspark.platform import Platform
from crosspark.rpc import bad_request_violations
from crosspark.v1 import admin_pb2, admin_pb2_grpc, cards_pb2, cards_pb2_grpc, common_pb2
from tests.support import channel_to, insert_lot, running_platform

NOW = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    with running_platform(tmp_path, clock=ManualClock(NOW), scheduler=False) as running:
        yield running


@pytest.fixture
def admin(platform: Platform) -> admin_pb2_grpc.AdminServiceStub:
    return admin_pb2_grpc.AdminServiceStub(channel_to(platform))


def register(
    admin: admin_pb2_grpc.AdminServiceStub, lot_id: str = "lot-a", **fields: object
) -> admin_pb2.LotCredentials:
    lot = admin_pb2.Lot(
        lot_id=lot_id,
        name="东门停车场",
        vendor="acme",
        time_zone="Asia/Shanghai",
        mode=common_pb2.MEMBERSHIP_MODE_ONLINE,
        period=common_pb2.SETTLEMENT_PERIOD_DAILY,
    )
    for name, value in fields.items():
        setattr(lot, name, value)
    return admin.RegisterLot(admin_pb2.RegisterLotRequest(lot=lot))


def lot_call(
    platform: Platform, token: str, lot_id: str = "lot-a", timeout: float | None = None
) -> cards_pb2.MembershipAnswer:
    stub = cards_pb2_grpc.CardServiceStub(channel_to(platform, token))
    return stub.CheckMembership(
        cards_pb2.CheckMembershipRequest(
            lot_id=lot_id, vehicle=common_pb2.VehicleIdentity(plate="粤B12345", color=common_pb2.PLATE_COLOR_BLUE)
        ),
        timeout=timeout,
    )


def test_registration_issues_a_token_and_a_32_byte_card_hash_key(admin: admin_pb2_grpc.AdminServiceStub) -> None:
    credentials = register(admin)
    assert len(credentials.token) >= 40 and len(credentials.card_hash_key) == 32
    assert credentials.lot.enabled and credentials.lot.registered_at.ToDatetime(tzinfo=UTC) == NOW


def test_registration_fills_in_the_default_delays(admin: admin_pb2_grpc.AdminServiceStub) -> None:
    lot = register(admin).lot
    assert (lot.close_delay_seconds, lot.membership_deadline_ms) == (3600, 300)


def test_the_platform_stores_only_a_hash_of_the_token(
    platform: Platform, admin: admin_pb2_grpc.AdminServiceStub
) -> None:
    credentials = register(admin)
    with platform.ctx.db.reader.connect() as connection:
        stored = connection.execute(sa.text("SELECT token_hash FROM lots")).scalar_one()
    assert credentials.token not in stored and len(stored) == 64


def test_the_issued_token_works_for_its_lot(platform: Platform, admin: admin_pb2_grpc.AdminServiceStub) -> None:
    credentials = register(admin)
    assert lot_call(platform, credentials.token).status == cards_pb2.MEMBERSHIP_STATUS_NOT_MEMBER


def test_registering_a_lot_id_twice_already_exists(admin: admin_pb2_grpc.AdminServiceStub) -> None:
    register(admin)
    with pytest.raises(grpc.RpcError) as caught:
        register(admin)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_registration_checks_every_field(admin: admin_pb2_grpc.AdminServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        register(admin, name="", time_zone="Mars/Olympus", mode=0, period=0, membership_deadline_ms=999_999)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in bad_request_violations(caught.value)] == [
        "lot.name",
        "lot.time_zone",
        "lot.mode",
        "lot.period",
        "lot.membership_deadline_ms",
    ]


def test_a_bad_lot_id_is_invalid(admin: admin_pb2_grpc.AdminServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        register(admin, lot_id="no spaces")
    assert bad_request_violations(caught.value)[0][0] == "lot.lot_id"


def test_update_replaces_only_the_named_fields(admin: admin_pb2_grpc.AdminServiceStub) -> None:
    register(admin)
    updated = admin.UpdateLot(
        admin_pb2.UpdateLotRequest(
            lot=admin_pb2.Lot(lot_id="lot-a", name="西门", mode=common_pb2.MEMBERSHIP_MODE_CACHED, vendor="ignored"),
            update_fields=["name", "mode"],
        )
    )
    assert (updated.name, updated.mode, updated.vendor) == ("西门", common_pb2.MEMBERSHIP_MODE_CACHED, "acme")


def test_update_with_an_unknown_field_is_invalid(admin: admin_pb2_grpc.AdminServiceStub) -> None:
    register(admin)
    with pytest.raises(grpc.RpcError) as caught:
        admin.UpdateLot(admin_pb2.UpdateLotRequest(lot=admin_pb2.Lot(lot_id="lot-a"), update_fields=["token_hash"]))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_update_of_an_unknown_lot_is_not_found(admin: admin_pb2_grpc.AdminServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        admin.UpdateLot(admin_pb2.UpdateLotRequest(lot=admin_pb2.Lot(lot_id="nope", name="x"), update_fields=["name"]))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_disabled_lot_is_refused(platform: Platform, admin: admin_pb2_grpc.AdminServiceStub) -> None:
    credentials = register(admin)
    admin.UpdateLot(
        admin_pb2.UpdateLotRequest(lot=admin_pb2.Lot(lot_id="lot-a", enabled=False), update_fields=["enabled"])
    )
    with pytest.raises(grpc.RpcError) as caught:
        lot_call(platform, credentials.token)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_list_lots_pages_in_id_order(admin: admin_pb2_grpc.AdminServiceStub) -> None:
    for lot_id in ("lot-c", "lot-a", "lot-b"):
        register(admin, lot_id)
    first = admin.ListLots(admin_pb2.ListLotsRequest(page=common_pb2.PageRequest(page_size=2)))
    rest = admin.ListLots(admin_pb2.ListLotsRequest(page=common_pb2.PageRequest(page_token=first.next_page_token)))
    assert [lot.lot_id for lot in [*first.lots, *rest.lots]] == ["lot-a", "lot-b", "lot-c"]
    assert rest.next_page_token == ""


def test_rotation_stops_the_old_token_at_once(platform: Platform, admin: admin_pb2_grpc.AdminServiceStub) -> None:
    old = register(admin)
    admin.RotateLotCredentials(admin_pb2.RotateLotCredentialsRequest(lot_id="lot-a"))
    with pytest.raises(grpc.RpcError) as caught:
        lot_call(platform, old.token)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_rotation_issues_a_new_token_and_key_that_work(
    platform: Platform, admin: admin_pb2_grpc.AdminServiceStub
) -> None:
    old = register(admin)
    new = admin.RotateLotCredentials(admin_pb2.RotateLotCredentialsRequest(lot_id="lot-a"))
    assert new.token != old.token and new.card_hash_key != old.card_hash_key
    assert lot_call(platform, new.token).status == cards_pb2.MEMBERSHIP_STATUS_NOT_MEMBER


def test_status_of_a_lot_never_seen(admin: admin_pb2_grpc.AdminServiceStub) -> None:
    register(admin)
    status = admin.LotStatus(admin_pb2.LotStatusRequest(lot_id="lot-a"))
    assert not status.HasField("last_seen_at") and not status.connected
    assert (status.card_version_held, status.card_version_latest, status.outbox_depth) == (0, 0, 0)


def test_status_records_when_the_lot_was_last_seen(platform: Platform, admin: admin_pb2_grpc.AdminServiceStub) -> None:
    credentials = register(admin)
    lot_call(platform, credentials.token)
    status = admin.LotStatus(admin_pb2.LotStatusRequest(lot_id="lot-a"))
    assert status.last_seen_at.ToDatetime(tzinfo=UTC) == NOW


def stored_last_seen(platform: Platform, lot_id: str = "lot-a") -> datetime | None:
    with platform.ctx.db.read_session() as session:
        row = store.get_lot(session, lot_id)
        assert row is not None
        return row.last_seen_at


def test_a_membership_check_does_not_wait_for_the_database_write_lock(
    platform: Platform, admin: admin_pb2_grpc.AdminServiceStub
) -> None:
    """The instant a lot was seen is written by a thread of its own: a check answers while another
    transaction holds the write lock (before, it waited for it, up to the 30 s busy timeout)."""
    credentials = register(admin)
    with platform.ctx.db.session() as session:  # BEGIN IMMEDIATE: the write lock, until the block ends
        session.execute(sa.text("UPDATE lots SET vendor = vendor"))
        answer = lot_call(platform, credentials.token, timeout=10)
        status = admin.LotStatus(admin_pb2.LotStatusRequest(lot_id="lot-a"))
    assert answer.status == cards_pb2.MEMBERSHIP_STATUS_NOT_MEMBER
    assert status.last_seen_at.ToDatetime(tzinfo=UTC) == NOW  # not written yet: answered from memory
    platform.stop(grace=0)  # stopping writes what is left
    assert stored_last_seen(platform) == NOW


def test_a_lot_seen_again_is_written_once_per_interval(tmp_path: Path) -> None:
    with running_platform(tmp_path, clock=ManualClock(NOW), scheduler=False) as platform:
        insert_lot(platform, "lot-a")
    recorder = SeenRecorder(platform.ctx.db, interval=3600)
    later = NOW + timedelta(minutes=5)
    recorder.seen("lot-a", NOW)
    recorder.flush()
    assert stored_last_seen(platform) == NOW  # first sight: written at once
    recorder.seen("lot-a", later)
    recorder.flush()
    assert stored_last_seen(platform) == NOW and recorder.last_seen("lot-a") == later  # within the interval
    recorder.flush(everything=True)
    assert stored_last_seen(platform) == later


def test_status_reports_the_outbox_lag_the_lot_reported(
    platform: Platform, admin: admin_pb2_grpc.AdminServiceStub
) -> None:
    register(admin)
    with platform.ctx.db.session() as session:
        session.execute(
            sa.text("UPDATE lots SET outbox_depth = 7, outbox_oldest_at = :at"),
            {
                "at": "2026-11-24 01:58:00.000000"
                if platform.ctx.db.dialect == "sqlite"
                else datetime(2026, 11, 24, 1, 58, tzinfo=UTC)
            },
        )
    status = admin.LotStatus(admin_pb2.LotStatusRequest(lot_id="lot-a"))
    assert (status.outbox_depth, status.outbox_lag_seconds) == (7, 120)


def test_status_of_an_unknown_lot_is_not_found(admin: admin_pb2_grpc.AdminServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        admin.LotStatus(admin_pb2.LotStatusRequest(lot_id="nope"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_lot_token_may_not_call_admin(platform: Platform, admin: admin_pb2_grpc.AdminServiceStub) -> None:
    credentials = register(admin)
    stub = admin_pb2_grpc.AdminServiceStub(channel_to(platform, credentials.token))
    with pytest.raises(grpc.RpcError) as caught:
        stub.ListLots(admin_pb2.ListLotsRequest())
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
