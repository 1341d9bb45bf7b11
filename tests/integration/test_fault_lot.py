"""Faults with real processes: ``crosspark platform serve`` and ``crosspark lot serve`` started as
an operator would, on ports the OS chose, stopped with SIGTERM or killed with SIGKILL.

* the platform stops while 1,000 vehicles pass, then comes back: every passage arrives exactly once;
* the lot node is killed in the middle of streaming, then restarted: nothing lost, nothing doubled;
* the platform is unreachable in ONLINE_FALLBACK: every decision is made from the cache and
  flagged OFFLINE_DECISION (the timings are recorded by bench/bench_gate.py, not asserted here).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from crosspark.client import open_channel
from crosspark.demo.processes import ServiceProcess
from crosspark.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    cards_pb2,
    cards_pb2_grpc,
    common_pb2,
    gate_pb2,
    gate_pb2_grpc,
    settlement_pb2,
)
from tests.support import ADMIN_TOKEN

LOT = "lot-f"
MEMBERS = [f"粤B{i:05d}" for i in range(1, 201)]


_STARTED: list[ServiceProcess] = []


@pytest.fixture(autouse=True)
def _kill_what_was_started() -> Iterator[None]:
    """Every process a test started (restarts included) is gone after it, pass or fail."""
    yield
    while _STARTED:
        _STARTED.pop().kill()


def start(args: list[str], log: Path, env: dict[str, str] | None = None, timeout: float = 60) -> ServiceProcess:
    """Start a crosspark command and wait for its 'listening on HOST:PORT' line."""
    process = ServiceProcess(args[0], args, log_path=log, env=env)
    _STARTED.append(process)
    process.start(timeout)
    return process


def start_platform(data: Path, listen: str = "127.0.0.1:0") -> ServiceProcess:
    return start(["platform", "serve", "--listen", listen, "--insecure", "--data-dir", str(data)],
                 data.parent / "platform.log", env={"CROSSPARK_ADMIN_TOKEN": ADMIN_TOKEN})


def start_lot(data: Path, platform: str, credentials: admin_pb2.LotCredentials, mode: str = "CACHED",
              listen: str = "127.0.0.1:0", statements: bool = False) -> ServiceProcess:
    return start(
        ["lot", "serve", "--lot-id", LOT, "--platform", platform, "--token", credentials.token, "--listen", listen,
         "--insecure", "--data-dir", str(data), "--mode", mode, "--card-hash-key", credentials.card_hash_key.hex(),
         "--deadline-ms", "300", "--statements" if statements else "--no-statements"],
        data.parent / "lot.log",
    )


def register(platform: ServiceProcess, mode: int = common_pb2.MEMBERSHIP_MODE_CACHED) -> admin_pb2.LotCredentials:
    channel = open_channel(platform.address, token=ADMIN_TOKEN, insecure=True)
    credentials = admin_pb2_grpc.AdminServiceStub(channel).RegisterLot(admin_pb2.RegisterLotRequest(lot=admin_pb2.Lot(
        lot_id=LOT, name="F", time_zone="Asia/Shanghai", mode=mode, period=common_pb2.SETTLEMENT_PERIOD_DAILY,
    )))
    cards = cards_pb2_grpc.CardServiceStub(channel)
    for i, plate in enumerate(MEMBERS):
        cards.ApplyCard(cards_pb2.ApplyCardRequest(
            request_id=f"r{i}", vehicle=common_pb2.VehicleIdentity(plate=plate, color=common_pb2.PLATE_COLOR_BLUE),
            holder_name="H", holder_phone="13800000000", months=1,
        ))
    channel.close()
    return credentials


def gate_stub(lot: ServiceProcess) -> gate_pb2_grpc.GateServiceStub:
    return gate_pb2_grpc.GateServiceStub(open_channel(lot.address, insecure=True))


def wait_for(predicate, timeout: float = 60.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except grpc.RpcError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def status(lot: ServiceProcess) -> gate_pb2.GateStatus:
    return gate_stub(lot).Status(gate_pb2.GateStatusRequest(), timeout=5)


def pass_members(lot: ServiceProcess, count: int) -> list[str]:
    """``count`` passages of members (entries then exits, so every one is reported); their ids."""
    stub = gate_stub(lot)
    requests = []
    for i in range(count):
        plate = MEMBERS[(i // 2) % len(MEMBERS)]
        direction = settlement_pb2.DIRECTION_ENTRY if i % 2 == 0 else settlement_pb2.DIRECTION_EXIT
        requests.append(gate_pb2.PassRequest(
            gate_id="g1", direction=direction, request_id=f"q{i}",
            identity=common_pb2.VehicleIdentity(plate=plate, color=common_pb2.PLATE_COLOR_BLUE),
        ))
    decisions = list(stub.PassStream(iter(requests), timeout=300))
    assert all(d.kind == gate_pb2.VEHICLE_KIND_MONTHLY for d in decisions)
    return [d.passage_id for d in decisions]


def platform_passages(data: Path) -> list[str]:
    with sqlite3.connect(f"file:{data / 'platform.db'}?mode=ro", uri=True) as db:
        return [row[0] for row in db.execute("SELECT passage_id FROM passages WHERE lot_id = ?", (LOT,))]


def test_platform_stopped_while_1000_vehicles_pass_gets_each_passage_once(tmp_path: Path) -> None:
    platform = start_platform(tmp_path / "platform")
    credentials = register(platform)
    lot = start_lot(tmp_path / "lot", platform.address, credentials)
    wait_for(lambda: status(lot).cards_cached == len(MEMBERS), what="the card list")
    platform.stop()
    passed = pass_members(lot, 1000)
    assert status(lot).outbox_depth == 1000
    platform = start_platform(tmp_path / "platform", listen=platform.address)
    wait_for(lambda: status(lot).outbox_depth == 0, what="the outbox to drain")
    received = platform_passages(tmp_path / "platform")
    assert len(received) == len(set(received)) == 1000
    assert set(received) == set(passed)


def test_lot_killed_mid_stream_loses_and_doubles_nothing(tmp_path: Path) -> None:
    platform = start_platform(tmp_path / "platform")
    credentials = register(platform)
    lot = start_lot(tmp_path / "lot", platform.address, credentials)
    wait_for(lambda: status(lot).cards_cached == len(MEMBERS), what="the card list")
    platform.stop()
    passed = pass_members(lot, 1000)
    platform = start_platform(tmp_path / "platform", listen=platform.address)
    # Kill the lot node as soon as the platform holds some of the passages, not all.
    wait_for(lambda: len(platform_passages(tmp_path / "platform")) > 0, timeout=60, what="streaming to start")
    lot.kill()
    partial = len(platform_passages(tmp_path / "platform"))
    lot = start_lot(tmp_path / "lot", platform.address, credentials, listen=lot.address)
    wait_for(lambda: status(lot).outbox_depth == 0, what="the outbox to drain after the restart")
    received = platform_passages(tmp_path / "platform")
    assert 0 < partial <= 1000
    assert len(received) == len(set(received)) == 1000
    assert set(received) == set(passed)


def test_platform_unreachable_in_online_fallback_decides_from_cache_flagged_offline(tmp_path: Path) -> None:
    platform = start_platform(tmp_path / "platform")
    credentials = register(platform, mode=common_pb2.MEMBERSHIP_MODE_ONLINE_FALLBACK)
    lot = start_lot(tmp_path / "lot", platform.address, credentials, mode="ONLINE_FALLBACK")
    wait_for(lambda: status(lot).cards_cached == len(MEMBERS), what="the card list")
    platform.kill()
    stub = gate_stub(lot)
    decisions = [
        stub.Pass(gate_pb2.PassRequest(
            gate_id="g1", direction=settlement_pb2.DIRECTION_ENTRY,
            identity=common_pb2.VehicleIdentity(plate=plate, color=common_pb2.PLATE_COLOR_BLUE),
        ), timeout=10)
        for plate in MEMBERS[:20]
    ]
    stranger = stub.Pass(gate_pb2.PassRequest(
        gate_id="g1", direction=settlement_pb2.DIRECTION_ENTRY,
        identity=common_pb2.VehicleIdentity(plate="粤C99999", color=common_pb2.PLATE_COLOR_BLUE),
    ), timeout=10)
    assert all(d.kind == gate_pb2.VEHICLE_KIND_MONTHLY and d.open for d in decisions)
    assert all(settlement_pb2.PASSAGE_FLAG_OFFLINE_DECISION in d.flags for d in decisions)
    assert stranger.kind == gate_pb2.VEHICLE_KIND_TEMPORARY
    assert settlement_pb2.PASSAGE_FLAG_OFFLINE_DECISION in stranger.flags


def test_statement_with_altered_bytes_is_refused_and_reported(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from google.protobuf.timestamp_pb2 import Timestamp

    from crosspark.v1 import settlement_pb2_grpc

    platform = start_platform(tmp_path / "platform")
    credentials = register(platform)
    admin = open_channel(platform.address, token=ADMIN_TOKEN, insecure=True)
    settlement = settlement_pb2_grpc.SettlementServiceStub(admin)
    since = Timestamp()
    since.FromDatetime(datetime.now(UTC) - timedelta(days=30))
    settlement.PutTariff(settlement_pb2.PutTariffRequest(tariff=settlement_pb2.Tariff(
        lot_id=LOT, effective_from=since, kind=settlement_pb2.TARIFF_KIND_PER_VISIT, visit_fee_fen=500,
    )))
    lot = start_lot(tmp_path / "lot", platform.address, credentials)
    wait_for(lambda: status(lot).cards_cached == len(MEMBERS), what="the card list")
    pass_members(lot, 4)
    wait_for(lambda: status(lot).outbox_depth == 0, what="delivery")
    lot.stop()
    as_of = Timestamp()
    as_of.FromDatetime(datetime.now(UTC) + timedelta(days=2))
    issued = [s for s in settlement.IssueStatements(
        settlement_pb2.IssueStatementsRequest(lot_id=LOT, as_of=as_of)).statements if s.line_count]
    assert issued
    target = issued[0].statement_id
    with sqlite3.connect(tmp_path / "platform" / "platform.db") as db:  # one byte changed at rest
        (data,) = db.execute("SELECT data FROM statement_chunks WHERE statement_id = ? ORDER BY chunk_no",
                             (target,)).fetchone()
        db.execute("UPDATE statement_chunks SET data = ? WHERE statement_id = ? AND chunk_no = "
                   "(SELECT MIN(chunk_no) FROM statement_chunks WHERE statement_id = ?)",
                   (data.replace(b",STAY,", b",STAX,", 1), target, target))
    lot = start_lot(tmp_path / "lot", platform.address, credentials, statements=True)
    report = tmp_path / "lot" / "statements" / f"{target}.report.html"
    wait_for(report.exists, what="the statement report")
    listed = {s.statement_id: s for s in settlement.ListStatements(
        settlement_pb2.ListStatementsRequest(lot_id=LOT)).statements}
    assert 'class="REFUSED">REFUSED' in report.read_text(encoding="utf-8")
    assert listed[target].status not in (settlement_pb2.STATEMENT_STATUS_RECONCILED,
                                         settlement_pb2.STATEMENT_STATUS_DISPUTED)
    assert "statement.refused" in (tmp_path / "lot.log").read_text(errors="replace")


pytestmark = pytest.mark.timeout(240)
