"""The raw reads on every lot call (token → lot, vehicle → cards), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from card_service import service, store
from card_service.domain import CardApplication, CardState, MembershipMode, SettlementPeriod
from crosspark.clock import ManualClock
from crosspark.db import Database, upgrade
from crosspark.identity import PlateColor
from crosspark.v1 import cards_pb2, cards_pb2_grpc, common_pb2
from tests.support import channel_to, register_lot, running_platform

NOW = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)


@pytest.fixture
def env(db_url: str) -> Iterator[service.CardEnv]:
    db = Database(db_url)
    upgrade(db, "platform")
    yield service.CardEnv(db, lambda: NOW, "Asia/Shanghai")
    db.dispose()


@pytest.fixture
def reads(env: service.CardEnv) -> Iterator[store.HotReads]:
    reads = store.HotReads(env.db)
    yield reads
    reads.close()


def lot(env: service.CardEnv, lot_id: str) -> str:
    values = {
        "lot_id": lot_id,
        "name": lot_id,
        "time_zone": "Asia/Shanghai",
        "mode": MembershipMode.ONLINE,
        "period": SettlementPeriod.DAILY,
    }
    return service.register_lot(env, values).token


def apply(env: service.CardEnv, request_id: str, plate: str, start: date, scope: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    return service.apply_card(
        env, CardApplication(request_id, plate, PlateColor.BLUE, "张三", "13800000000", start, 1, scope)
    )


def test_a_token_finds_its_enabled_lot_and_nothing_else(env: service.CardEnv, reads: store.HotReads) -> None:
    token = lot(env, "lot-a")
    assert reads.lot_for_token(token) == "lot-a"
    assert reads.lot_for_token("not-a-token") is None
    service.update_lot(env, "lot-a", {"enabled": False}, ["enabled"])
    assert reads.lot_for_token(token) is None


def test_a_rotated_token_stops_working_at_once(env: service.CardEnv, reads: store.HotReads) -> None:
    old = lot(env, "lot-a")
    assert reads.lot_for_token(old) == "lot-a"  # the connection is kept and used again below
    new = service.rotate_lot_credentials(env, "lot-a").token
    assert (reads.lot_for_token(old), reads.lot_for_token(new)) == (None, "lot-a")


def test_a_vehicle_reads_its_cards_with_the_latest_version(env: service.CardEnv, reads: store.HotReads) -> None:
    lot(env, "lot-a")
    lot(env, "lot-b")
    first = apply(env, "r1", "粤B12345", date(2026, 12, 1), scope=("lot-b",))
    second = apply(env, "r2", "粤B12345", date(2027, 1, 1))
    apply(env, "r3", "粤B54321", date(2026, 12, 1))
    version, cards = reads.vehicle("粤B12345", PlateColor.BLUE, "lot-a")
    assert version == 3
    assert sorted((c.card_id, c.valid_from, c.valid_until, c.valid_at_lot) for c in cards) == sorted(
        [
            (first.card_id, first.valid_from, first.valid_until, False),
            (second.card_id, second.valid_from, second.valid_until, True),
        ]
    )
    assert {c.state for c in cards} == {CardState.ACTIVE}
    assert reads.vehicle("粤B99999", PlateColor.BLUE, "lot-a") == (3, [])


def test_a_connection_whose_read_failed_is_not_used_again(env: service.CardEnv, reads: store.HotReads) -> None:
    token = lot(env, "lot-a")
    reads.lot_for_token(token)
    broken = reads._idle[-1]
    broken.close()  # as a connection the database dropped
    with pytest.raises(Exception):  # noqa: B017 - each driver names a closed connection differently
        reads.lot_for_token(token)
    assert broken not in reads._idle
    assert reads.lot_for_token(token) == "lot-a"


def test_membership_answers_on_every_backend(db_url: str, tmp_path: Path) -> None:
    with running_platform(tmp_path, db_url=db_url, clock=ManualClock(NOW), scheduler=False) as platform:
        token, _ = register_lot(platform, "lot-a")
        admin = cards_pb2_grpc.CardServiceStub(channel_to(platform))
        card = admin.ApplyCard(
            cards_pb2.ApplyCardRequest(
                request_id="r1",
                vehicle=common_pb2.VehicleIdentity(plate="粤B12345", color=common_pb2.PLATE_COLOR_BLUE),
                holder_name="张三",
                holder_phone="13800000000",
                start_date="2026-11-24",
                months=1,
            )
        )
        lot_stub = cards_pb2_grpc.CardServiceStub(channel_to(platform, token))

        def check(plate: str) -> cards_pb2.MembershipAnswer:
            vehicle = common_pb2.VehicleIdentity(plate=plate, color=common_pb2.PLATE_COLOR_BLUE)
            return lot_stub.CheckMembership(cards_pb2.CheckMembershipRequest(lot_id="lot-a", vehicle=vehicle))

        answer = check("粤B12345")
        assert (answer.status, answer.card_id, answer.valid_until, answer.card_version) == (
            cards_pb2.MEMBERSHIP_STATUS_MONTHLY,
            card.card_id,
            card.valid_until,
            1,
        )
        assert check("粤B54321").status == cards_pb2.MEMBERSHIP_STATUS_NOT_MEMBER
