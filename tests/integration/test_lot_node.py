"""The lot node against a fake platform on a loopback port: the gate API, the card list, the
outbox and the membership modes, with a real SQLite store (and PostgreSQL when configured)."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from card_service.domain import vehicle_hash
from crosspark.auth import TokenAuthenticator
from crosspark.client import open_channel
from crosspark.clock import ManualClock
from crosspark.identity import PlateColor
from crosspark.server import GrpcServer, Registration, ServerOptions
from crosspark.v1 import (
    cards_pb2,
    cards_pb2_grpc,
    common_pb2,
    gate_pb2,
    gate_pb2_grpc,
    settlement_pb2,
    settlement_pb2_grpc,
)
from lot_node.membership import Mode
from lot_node.node import LotNode, LotSettings

LOT = "lot-a"
LOT_TOKEN = "lot-token-" + "x" * 32
KEY = hashlib.sha256(b"card-hash-key").digest()
T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
MEMBER = "粤B12345"
STRANGER = "粤C54321"


def ts(instant: datetime):  # type: ignore[no-untyped-def]
    from google.protobuf.timestamp_pb2 import Timestamp

    t = Timestamp()
    t.FromDatetime(instant)
    return t


def card_entry(plate: str, card_id: str, until: datetime, version: int, *, state: int = cards_pb2.CARD_STATE_ACTIVE,
               at_lot: bool = True) -> cards_pb2.CardListEntry:
    return cards_pb2.CardListEntry(
        vehicle_hash=vehicle_hash(KEY, plate, PlateColor.BLUE), card_id=card_id, valid_from=ts(T0 - timedelta(days=10)),
        valid_until=ts(until), state=state, valid_at_lot=at_lot, version=version,
    )


class FakeCards(cards_pb2_grpc.CardServiceServicer):
    """Answers CheckMembership from a dict and streams a fixed card list."""

    def __init__(self) -> None:
        self.members: dict[str, tuple[str, datetime]] = {MEMBER: ("card_1", T0 + timedelta(days=30))}
        self.delay_s = 0.0
        self.fail = False
        self.entries = [card_entry(MEMBER, "card_1", T0 + timedelta(days=30), 1)]
        self.watch_requests: list[int] = []
        self.deltas: list[cards_pb2.CardListMessage] = []

    def CheckMembership(self, request, context):  # type: ignore[no-untyped-def]
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail:
            context.abort(grpc.StatusCode.UNAVAILABLE, "down for the test")
        card = self.members.get(request.vehicle.plate)
        if card is None:
            return cards_pb2.MembershipAnswer(status=cards_pb2.MEMBERSHIP_STATUS_NOT_MEMBER, answer_id="ans_x")
        return cards_pb2.MembershipAnswer(
            status=cards_pb2.MEMBERSHIP_STATUS_MONTHLY, card_id=card[0], valid_until=ts(card[1]), answer_id="ans_1"
        )

    def WatchCards(self, request, context):  # type: ignore[no-untyped-def]
        self.watch_requests.append(request.since_version)
        version = max(e.version for e in self.entries)
        if request.since_version == 0:
            yield cards_pb2.CardListMessage(
                snapshot_begin=cards_pb2.SnapshotBegin(version=version, entry_count=len(self.entries))
            )
            yield cards_pb2.CardListMessage(chunk=cards_pb2.CardListChunk(entries=self.entries, version=version))
            yield cards_pb2.CardListMessage(snapshot_end=cards_pb2.SnapshotEnd(version=version))
        yield from self.deltas
        while context.is_active():
            yield cards_pb2.CardListMessage(heartbeat=cards_pb2.Heartbeat(version=version))
            time.sleep(0.05)


class FakeSettlement(settlement_pb2_grpc.SettlementServiceServicer):
    """Holds reported passages by id; acknowledges each batch (DUPLICATE when already held)."""

    def __init__(self) -> None:
        self.passages: dict[str, settlement_pb2.Passage] = {}
        self.deliveries = 0
        self.reject_plates: set[str] = set()
        self.lock = threading.Lock()

    def ReportPassages(self, request_iterator, context):  # type: ignore[no-untyped-def]
        for batch in request_iterator:
            acks = []
            with self.lock:
                for p in batch.passages:
                    self.deliveries += 1
                    if p.vehicle.plate in self.reject_plates:
                        acks.append(settlement_pb2.PassageAck(
                            passage_id=p.passage_id, result=settlement_pb2.ACK_RESULT_REJECTED, reason="test rejects"
                        ))
                    elif p.passage_id in self.passages:
                        acks.append(settlement_pb2.PassageAck(
                            passage_id=p.passage_id, result=settlement_pb2.ACK_RESULT_DUPLICATE
                        ))
                    else:
                        self.passages[p.passage_id] = p
                        acks.append(settlement_pb2.PassageAck(
                            passage_id=p.passage_id, result=settlement_pb2.ACK_RESULT_ACCEPTED
                        ))
            yield settlement_pb2.PassageAckBatch(batch_seq=batch.batch_seq, acks=acks)


class FakePlatform:
    def __init__(self, port: int = 0, cards: FakeCards | None = None, settlement=None) -> None:  # type: ignore[no-untyped-def]
        self.cards = cards or FakeCards()
        self.settlement = settlement or FakeSettlement()
        auth = TokenAuthenticator(admin_token="admin-" + "y" * 32, lot_lookup=lambda t: LOT if t == LOT_TOKEN else None)
        self.server = GrpcServer(
            ServerOptions(listen=f"127.0.0.1:{port}", insecure=True, grace_seconds=0),
            auth,
            [
                Registration(cards_pb2_grpc.add_CardServiceServicer_to_server, self.cards, "crosspark.v1.CardService"),
                Registration(settlement_pb2_grpc.add_SettlementServiceServicer_to_server, self.settlement,
                             "crosspark.v1.SettlementService"),
            ],
        ).start()
        self.address = self.server.address
        self.port = self.server.port

    def stop(self) -> None:
        self.server.stop(0)


@contextmanager
def fake_platform(**kwargs) -> Iterator[FakePlatform]:  # type: ignore[no-untyped-def]
    platform = FakePlatform(**kwargs)
    try:
        yield platform
    finally:
        platform.stop()


@contextmanager
def lot_node(tmp_path: Path, platform_address: str, *, db_url: str | None = None, clock=None,  # type: ignore[no-untyped-def]
             **settings) -> Iterator[LotNode]:
    tariff = tmp_path / "tariff.toml"
    tariff.write_text('kind = "per_time"\nunit_minutes = 60\nbands = [{ start = "00:00", unit_fee_fen = 500 }]\n')
    values = {
        "mode": Mode.CACHED, "card_hash_key": KEY, "temp_tariff": tariff, "statements": False,
        **settings,
    }
    node = LotNode(
        LotSettings(lot_id=LOT, platform=platform_address, token=LOT_TOKEN, listen="127.0.0.1:0", db_url=db_url,
                    data_dir=tmp_path / "lot", insecure=True, **values),  # type: ignore[arg-type]
        clock or ManualClock(T0),
    ).start()
    try:
        yield node
    finally:
        node.stop(grace=0)


def gate(node: LotNode) -> gate_pb2_grpc.GateServiceStub:
    return gate_pb2_grpc.GateServiceStub(open_channel(node.address, insecure=True))


def identity(plate: str, color: int = common_pb2.PLATE_COLOR_BLUE) -> common_pb2.VehicleIdentity:
    return common_pb2.VehicleIdentity(plate=plate, color=color, source=common_pb2.IDENTITY_SOURCE_CAMERA,
                                      confidence=0.95)


def pass_request(plate: str, direction: int, at: datetime | None = None, **kw) -> gate_pb2.PassRequest:  # type: ignore[no-untyped-def]
    request = gate_pb2.PassRequest(gate_id="g1", direction=direction, identity=identity(plate), **kw)
    if at is not None:
        request.occurred_at.CopyFrom(ts(at))
    return request


ENTRY, EXIT = settlement_pb2.DIRECTION_ENTRY, settlement_pb2.DIRECTION_EXIT


def wait_until(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture
def platform() -> Iterator[FakePlatform]:
    with fake_platform() as p:
        yield p


def synced(node: LotNode) -> bool:
    return node.cards.version >= 1


# --- tests -------------------------------------------------------------------------------------------


def test_member_from_the_pushed_card_list_enters_as_monthly(tmp_path: Path, platform: FakePlatform) -> None:
    with lot_node(tmp_path, platform.address) as node:
        assert wait_until(lambda: synced(node))
        decision = gate(node).Pass(pass_request(MEMBER, ENTRY))
    assert decision.open and decision.kind == gate_pb2.VEHICLE_KIND_MONTHLY and decision.card_id == "card_1"


def test_stranger_pays_the_temporary_tariff_then_pay_opens(tmp_path: Path, platform: FakePlatform) -> None:
    clock = ManualClock(T0)
    with lot_node(tmp_path, platform.address, clock=clock) as node:
        stub = gate(node)
        stub.Pass(pass_request(STRANGER, ENTRY))
        clock.advance(timedelta(minutes=90))
        decision = stub.Pass(pass_request(STRANGER, EXIT))
        receipt = stub.Pay(gate_pb2.PayRequest(passage_id=decision.passage_id, amount_fen=1000, method="cash"))
    assert (decision.open, decision.fee_due_fen, receipt.open) == (False, 1000, True)


def test_monthly_passages_reach_the_platform_and_temporary_ones_do_not(tmp_path: Path, platform: FakePlatform) -> None:
    with lot_node(tmp_path, platform.address) as node:
        assert wait_until(lambda: synced(node))
        stub = gate(node)
        entry = stub.Pass(pass_request(MEMBER, ENTRY))
        stub.Pass(pass_request(STRANGER, ENTRY))
        assert wait_until(lambda: node.status().outbox_depth == 0 and entry.passage_id in platform.settlement.passages)
    assert set(platform.settlement.passages) == {entry.passage_id}


def test_retried_request_id_gets_the_same_decision(tmp_path: Path, platform: FakePlatform) -> None:
    with lot_node(tmp_path, platform.address) as node:
        stub = gate(node)
        first = stub.Pass(pass_request(STRANGER, ENTRY, request_id="r-1"))
        second = stub.Pass(pass_request(STRANGER, ENTRY, request_id="r-1"))
        assert node.status().open_stays == 1
    assert first.passage_id == second.passage_id


def test_fuzzy_exit_closes_the_confusable_stay(tmp_path: Path, platform: FakePlatform) -> None:
    with lot_node(tmp_path, platform.address) as node:
        stub = gate(node)
        entry = stub.Pass(pass_request("粤C12345", ENTRY))
        exit_ = stub.Pass(pass_request("粤C1234S", EXIT))
    assert exit_.stay_id == entry.stay_id and settlement_pb2.PASSAGE_FLAG_FUZZY_MATCHED in exit_.flags


def test_rejected_passage_is_kept_for_an_operator_and_not_resent(tmp_path: Path, platform: FakePlatform) -> None:
    platform.settlement.reject_plates.add(MEMBER)
    with lot_node(tmp_path, platform.address) as node:
        assert wait_until(lambda: synced(node))
        gate(node).Pass(pass_request(MEMBER, ENTRY))
        assert wait_until(lambda: node.status().rejected_count == 1)
        deliveries = platform.settlement.deliveries
        node.outbox.wake()
        time.sleep(0.2)
        status = node.status()
    assert (status.outbox_depth, platform.settlement.deliveries) == (0, deliveries)


def test_card_list_is_resumed_at_its_version_after_a_restart(tmp_path: Path, platform: FakePlatform) -> None:
    with lot_node(tmp_path, platform.address) as node:
        assert wait_until(lambda: synced(node))
    with lot_node(tmp_path, platform.address) as node:
        assert len(node.cards.cache) == 1 and node.cards.version == 1
        assert wait_until(lambda: len(platform.cards.watch_requests) == 2)
    assert platform.cards.watch_requests == [0, 1]


def test_card_delta_reaches_the_gate(tmp_path: Path, platform: FakePlatform) -> None:
    platform.cards.deltas = [cards_pb2.CardListMessage(chunk=cards_pb2.CardListChunk(
        entries=[card_entry(STRANGER, "card_2", T0 + timedelta(days=5), 2)], version=2))]
    with lot_node(tmp_path, platform.address) as node:
        assert wait_until(lambda: node.cards.version == 2)
        decision = gate(node).Pass(pass_request(STRANGER, ENTRY))
    assert decision.kind == gate_pb2.VEHICLE_KIND_MONTHLY and decision.card_id == "card_2"


def test_online_mode_times_out_to_a_temporary_offline_decision(tmp_path: Path, platform: FakePlatform) -> None:
    platform.cards.delay_s = 0.5
    with lot_node(tmp_path, platform.address, mode=Mode.ONLINE, deadline_ms=100) as node:
        decision = gate(node).Pass(pass_request(MEMBER, ENTRY))
    assert decision.kind == gate_pb2.VEHICLE_KIND_TEMPORARY
    assert settlement_pb2.PASSAGE_FLAG_OFFLINE_DECISION in decision.flags


def test_online_fallback_uses_the_cache_when_the_platform_errs(tmp_path: Path, platform: FakePlatform) -> None:
    platform.cards.fail = True
    with lot_node(tmp_path, platform.address, mode=Mode.ONLINE_FALLBACK) as node:
        assert wait_until(lambda: synced(node))
        decision = gate(node).Pass(pass_request(MEMBER, ENTRY))
    assert decision.kind == gate_pb2.VEHICLE_KIND_MONTHLY
    assert settlement_pb2.PASSAGE_FLAG_OFFLINE_DECISION in decision.flags


def test_online_answer_is_used_when_in_time(tmp_path: Path, platform: FakePlatform) -> None:
    with lot_node(tmp_path, platform.address, mode=Mode.ONLINE) as node:
        decision = gate(node).Pass(pass_request(MEMBER, ENTRY))
    assert decision.kind == gate_pb2.VEHICLE_KIND_MONTHLY
    assert settlement_pb2.PASSAGE_FLAG_OFFLINE_DECISION not in decision.flags


def test_gate_token_is_required_when_configured(tmp_path: Path, platform: FakePlatform) -> None:
    with lot_node(tmp_path, platform.address, gate_token="gate-" + secrets.token_hex(16)) as node, \
            pytest.raises(grpc.RpcError) as error:
        gate(node).Status(gate_pb2.GateStatusRequest())
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_bad_plate_is_invalid_argument_and_records_nothing(tmp_path: Path, platform: FakePlatform) -> None:
    with lot_node(tmp_path, platform.address) as node:
        with pytest.raises(grpc.RpcError) as error:
            gate(node).Pass(pass_request("XX12345", ENTRY))
        assert node.status().open_stays == 0
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_pass_stream_answers_each_request_in_order(tmp_path: Path, platform: FakePlatform) -> None:
    with lot_node(tmp_path, platform.address) as node:
        requests = [pass_request(p, ENTRY) for p in ("粤C00001", "粤C00002", "粤C00003")]
        decisions = list(gate(node).PassStream(iter(requests)))
    assert [d.identity.plate for d in decisions] == ["粤C00001", "粤C00002", "粤C00003"]


def test_status_reports_outbox_cards_and_stays(tmp_path: Path, platform: FakePlatform) -> None:
    with lot_node(tmp_path, platform.address) as node:
        assert wait_until(lambda: synced(node))
        stub = gate(node)
        stub.Pass(pass_request(STRANGER, ENTRY))
        status = stub.Status(gate_pb2.GateStatusRequest())
    assert (status.lot_id, status.card_version, status.cards_cached, status.open_stays) == (LOT, 1, 1, 1)
    assert status.mode == common_pb2.MEMBERSHIP_MODE_CACHED


def test_lot_node_runs_on_postgresql_too(tmp_path: Path, platform: FakePlatform, db_url: str) -> None:
    with lot_node(tmp_path, platform.address, db_url=db_url) as node:
        assert wait_until(lambda: synced(node))
        stub = gate(node)
        entry = stub.Pass(pass_request(MEMBER, ENTRY))
        exit_ = stub.Pass(pass_request(MEMBER, EXIT))
        assert wait_until(lambda: node.status().outbox_depth == 0)
    assert {entry.passage_id, exit_.passage_id} <= set(platform.settlement.passages)


def test_second_entry_abandons_the_open_stay_and_reports_its_close(tmp_path: Path, platform: FakePlatform) -> None:
    with lot_node(tmp_path, platform.address) as node:
        assert wait_until(lambda: synced(node))
        stub = gate(node)
        first = stub.Pass(pass_request(MEMBER, ENTRY))
        second = stub.Pass(pass_request(MEMBER, ENTRY))
        assert wait_until(lambda: node.status().outbox_depth == 0)
        closing = [p for p in platform.settlement.passages.values() if p.entry_passage_id == first.passage_id]
        open_stays = node.status().open_stays
    assert settlement_pb2.PASSAGE_FLAG_ABANDONED in second.flags and open_stays == 1
    assert len(closing) == 1 and settlement_pb2.PASSAGE_FLAG_ABANDONED in closing[0].flags


def test_camera_and_etc_disagreeing_use_the_camera_and_flag_it(tmp_path: Path, platform: FakePlatform) -> None:
    etc_frame = bytes.fromhex("ffff28b3a1b2c3d400d4c14231323334350000000000010100f9ff")  # 粤B12345 yellow (DESIGN §14)
    with lot_node(tmp_path, platform.address) as node:
        decision = gate(node).Pass(pass_request("粤B54321", ENTRY, etc_frame=etc_frame, etc_framing="lane"))
    assert decision.identity.plate == "粤B54321"
    assert settlement_pb2.PASSAGE_FLAG_IDENTITY_MISMATCH in decision.flags


def test_etc_frame_alone_identifies_the_vehicle(tmp_path: Path, platform: FakePlatform) -> None:
    etc_frame = bytes.fromhex("ffff28b3a1b2c3d400d4c14231323334350000000000010100f9ff")
    with lot_node(tmp_path, platform.address) as node:
        decision = gate(node).Pass(gate_pb2.PassRequest(gate_id="g1", direction=ENTRY, etc_frame=etc_frame))
    assert (decision.identity.plate, decision.identity.color) == ("粤B12345", common_pb2.PLATE_COLOR_YELLOW)
    assert decision.identity.source == common_pb2.IDENTITY_SOURCE_ETC and not decision.flags
