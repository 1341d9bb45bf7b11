"""WatchCards: the card list pushed to a lot (snapshot, live deltas, resume, keyed hashes)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from card_service import card_list, service
from card_service.domain import CardApplication, vehicle_hash
from crosspark.clock import ManualClock
from crosspark.db import Database, upgrade
from crosspark.identity import PlateColor
from crosspark.platform import Platform
from crosspark.v1 import admin_pb2, admin_pb2_grpc, cards_pb2, cards_pb2_grpc, common_pb2
from tests.support import channel_to, register_lot, running_platform

NOW = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)


class Stream:
    """Reads a server stream on a thread, so a test waits for each message with a timeout."""

    def __init__(self, call: grpc.Call) -> None:
        self.call = call
        self.messages: queue.Queue[object] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for message in self.call:  # type: ignore[attr-defined]
                self.messages.put(message)
        except grpc.RpcError as error:
            self.messages.put(error)

    def next(self, timeout: float = 10.0) -> cards_pb2.CardListMessage:
        item = self.messages.get(timeout=timeout)
        if isinstance(item, grpc.RpcError):
            raise item
        return item  # type: ignore[return-value]

    def until(self, kind: str) -> list[cards_pb2.CardListMessage]:
        seen = []
        while True:
            message = self.next()
            seen.append(message)
            if message.WhichOneof("body") == kind:
                return seen

    def close(self) -> None:
        self.call.cancel()


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    with running_platform(tmp_path, clock=ManualClock(NOW), scheduler=False) as running:
        yield running


def apply(platform: Platform, request_id: str, plate: str, scope: tuple[str, ...] = ()) -> cards_pb2.Card:
    stub = cards_pb2_grpc.CardServiceStub(channel_to(platform))
    return stub.ApplyCard(
        cards_pb2.ApplyCardRequest(
            request_id=request_id,
            vehicle=common_pb2.VehicleIdentity(plate=plate, color=common_pb2.PLATE_COLOR_BLUE),
            holder_name="张三",
            holder_phone="13800000000",
            start_date="2026-11-24",
            months=1,
            scope_lot_ids=list(scope),
        )
    )


def watch(platform: Platform, token: str, lot_id: str, since: int = 0) -> Stream:
    stub = cards_pb2_grpc.CardServiceStub(channel_to(platform, token))
    return Stream(stub.WatchCards(cards_pb2.WatchCardsRequest(lot_id=lot_id, since_version=since)))


def entries(messages: list[cards_pb2.CardListMessage]) -> list[cards_pb2.CardListEntry]:
    return [e for m in messages if m.WhichOneof("body") == "chunk" for e in m.chunk.entries]


def test_watch_from_nothing_sends_a_snapshot_of_every_card(platform: Platform) -> None:
    token, _ = register_lot(platform, "lot-a")
    made = {apply(platform, f"r{i}", f"粤B1234{i}").card_id for i in range(3)}
    stream = watch(platform, token, "lot-a")
    messages = stream.until("snapshot_end")
    stream.close()
    assert messages[0].snapshot_begin.version == 3 and messages[0].snapshot_begin.entry_count == 3
    assert {e.card_id for e in entries(messages)} == made
    assert messages[-1].snapshot_end.version == 3


def test_entries_carry_the_keyed_hash_and_never_the_plate(platform: Platform) -> None:
    token, key = register_lot(platform, "lot-a")
    apply(platform, "r1", "粤B12345")
    stream = watch(platform, token, "lot-a")
    messages = stream.until("snapshot_end")
    stream.close()
    (entry,) = entries(messages)
    assert entry.vehicle_hash == vehicle_hash(key, "粤B12345", PlateColor.BLUE)
    assert all("粤B12345".encode() not in m.SerializeToString() for m in messages)


def test_entries_out_of_scope_are_marked_not_valid_at_lot(platform: Platform) -> None:
    token, _ = register_lot(platform, "lot-a")
    register_lot(platform, "lot-b")
    apply(platform, "r1", "粤B12345", scope=("lot-b",))
    apply(platform, "r2", "粤B54321", scope=("lot-a",))
    stream = watch(platform, token, "lot-a")
    got = {e.card_id: e.valid_at_lot for e in entries(stream.until("snapshot_end"))}
    stream.close()
    assert sorted(got.values()) == [False, True]


def test_after_the_snapshot_live_changes_arrive_as_deltas(platform: Platform) -> None:
    token, _ = register_lot(platform, "lot-a")
    apply(platform, "r1", "粤B12345")
    stream = watch(platform, token, "lot-a")
    stream.until("snapshot_end")
    card = apply(platform, "r2", "粤B54321")
    delta = stream.until("chunk")[-1]
    stream.close()
    assert [e.card_id for e in delta.chunk.entries] == [card.card_id]
    assert delta.chunk.version == 2


def test_resuming_at_a_version_sends_only_later_changes_in_version_order(platform: Platform) -> None:
    token, _ = register_lot(platform, "lot-a")
    apply(platform, "r1", "粤B11111")
    later = [apply(platform, f"r{i}", f"粤B2222{i}").card_id for i in range(2, 5)]
    stream = watch(platform, token, "lot-a", since=1)
    message = stream.next()
    stream.close()
    assert message.WhichOneof("body") == "chunk"
    assert [e.card_id for e in message.chunk.entries] == later
    assert [e.version for e in message.chunk.entries] == [2, 3, 4]


def test_a_lot_up_to_date_gets_a_heartbeat_at_once(platform: Platform) -> None:
    token, _ = register_lot(platform, "lot-a")
    apply(platform, "r1", "粤B11111")
    stream = watch(platform, token, "lot-a", since=1)
    message = stream.next()
    stream.close()
    assert message.WhichOneof("body") == "heartbeat" and message.heartbeat.version == 1


def test_a_lot_ahead_of_the_platform_gets_a_fresh_snapshot(platform: Platform) -> None:
    token, _ = register_lot(platform, "lot-a")
    apply(platform, "r1", "粤B11111")
    stream = watch(platform, token, "lot-a", since=99)
    message = stream.next()
    stream.close()
    assert message.WhichOneof("body") == "snapshot_begin"


def test_a_lot_may_watch_only_as_itself(platform: Platform) -> None:
    token, _ = register_lot(platform, "lot-a")
    register_lot(platform, "lot-b")
    stream = watch(platform, token, "lot-b")
    with pytest.raises(grpc.RpcError) as caught:
        stream.next()
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_after_rotation_the_new_key_gets_a_fresh_snapshot(platform: Platform) -> None:
    register_lot(platform, "lot-a")
    apply(platform, "r1", "粤B12345")
    admin = admin_pb2_grpc.AdminServiceStub(channel_to(platform))
    rotated = admin.RotateLotCredentials(admin_pb2.RotateLotCredentialsRequest(lot_id="lot-a"))
    stream = watch(platform, rotated.token, "lot-a", since=1)
    messages = stream.until("snapshot_end")
    stream.close()
    assert entries(messages)[0].vehicle_hash == vehicle_hash(rotated.card_hash_key, "粤B12345", PlateColor.BLUE)


def test_an_open_stream_ends_when_the_lot_credentials_are_rotated(platform: Platform) -> None:
    token, _ = register_lot(platform, "lot-a")
    stream = watch(platform, token, "lot-a")
    stream.until("snapshot_end")
    admin = admin_pb2_grpc.AdminServiceStub(channel_to(platform))
    admin.RotateLotCredentials(admin_pb2.RotateLotCredentialsRequest(lot_id="lot-a"))
    with pytest.raises(grpc.RpcError) as caught:
        while True:
            stream.next()
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_an_open_stream_shows_the_lot_connected_with_its_version(platform: Platform) -> None:
    token, _ = register_lot(platform, "lot-a")
    apply(platform, "r1", "粤B12345")
    stream = watch(platform, token, "lot-a")
    stream.until("snapshot_end")
    admin = admin_pb2_grpc.AdminServiceStub(channel_to(platform))
    status = admin.LotStatus(admin_pb2.LotStatusRequest(lot_id="lot-a"))
    stream.close()
    assert (status.connected, status.card_version_held, status.card_version_latest) == (True, 1, 1)


# --- the use case on its own: the resume floor, on both backends ------------------------------------


def _env(db_url: str, retained: int) -> service.CardEnv:
    db = Database(db_url)
    upgrade(db, "platform")
    return service.CardEnv(db, lambda: NOW, "Asia/Shanghai", retained_changes=retained)


def _application(i: int) -> CardApplication:
    from datetime import date

    return CardApplication(f"r{i}", f"粤B{i:05d}", PlateColor.BLUE, "张三", "13800000000", date(2026, 11, 24), 1)


def _first_messages(env: service.CardEnv, since: int) -> list[card_list.Message]:
    from crosspark.db import Database as _Database

    assert isinstance(env.db, _Database)
    watch_ = card_list.VersionWatch(env.db)
    stop = threading.Event()
    stream = card_list.watch_cards(env.db, watch_, env.now, "lot-a", since, lambda: not stop.is_set())
    out = []
    for message in stream:
        out.append(message)
        if isinstance(message, (card_list.Heartbeat, card_list.Chunk)) and not isinstance(
            out[0], card_list.SnapshotBegin
        ):
            break
        if isinstance(message, card_list.SnapshotEnd):
            break
    stream.close()
    return out


def _register(env: service.CardEnv) -> None:
    from card_service.domain import MembershipMode, SettlementPeriod

    service.register_lot(
        env,
        {
            "lot_id": "lot-a",
            "name": "A",
            "time_zone": "Asia/Shanghai",
            "mode": MembershipMode.CACHED,
            "period": SettlementPeriod.DAILY,
        },
    )


def test_a_lot_behind_the_retained_change_log_gets_a_snapshot(db_url: str) -> None:
    env = _env(db_url, retained=3)
    _register(env)
    for i in range(1, 20):
        service.apply_card(env, _application(i))
    try:
        first = _first_messages(env, since=2)[0]
    finally:
        env.db.dispose()
    assert isinstance(first, card_list.SnapshotBegin) and first.version == 19


def test_a_lot_within_the_retained_change_log_gets_deltas(db_url: str) -> None:
    env = _env(db_url, retained=3)
    _register(env)
    for i in range(1, 20):
        service.apply_card(env, _application(i))
    try:
        first = _first_messages(env, since=18)[0]
    finally:
        env.db.dispose()
    assert isinstance(first, card_list.Chunk) and [e.version for e in first.entries] == [19]
