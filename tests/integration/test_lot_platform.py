"""The lot node against the real platform (in process, loopback): cards pushed, passages
delivered, statements fetched, verified, reconciled and submitted, reports kept."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from crosspark.clock import ManualClock
from crosspark.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    cards_pb2,
    cards_pb2_grpc,
    common_pb2,
    gate_pb2,
    settlement_pb2,
    settlement_pb2_grpc,
)
from lot_node.membership import Mode
from lot_node.node import LotNode, LotSettings
from tests.integration.test_lot_node import ENTRY, EXIT, gate, pass_request, ts, wait_until
from tests.support import channel_to, running_platform

LOT = "lot-p"
# A Monday 10:00 in Shanghai.
T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
MEMBER = "粤B12345"


@contextmanager
def platform_with_lot(tmp_path: Path, clock: ManualClock, period: int = common_pb2.SETTLEMENT_PERIOD_DAILY):
    with running_platform(tmp_path, clock=clock, scheduler=False) as platform:
        channel = channel_to(platform)
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        credentials = admin.RegisterLot(admin_pb2.RegisterLotRequest(lot=admin_pb2.Lot(
            lot_id=LOT, name="P", time_zone="Asia/Shanghai", mode=common_pb2.MEMBERSHIP_MODE_CACHED, period=period,
            close_delay_seconds=0,
        )))
        settlement = settlement_pb2_grpc.SettlementServiceStub(channel)
        settlement.PutTariff(settlement_pb2.PutTariffRequest(tariff=settlement_pb2.Tariff(
            lot_id=LOT, effective_from=ts(T0 - timedelta(days=30)), kind=settlement_pb2.TARIFF_KIND_PER_TIME,
            unit_minutes=60, bands=[settlement_pb2.TariffBand(start="00:00", unit_fee_fen=300)],
        )))
        cards = cards_pb2_grpc.CardServiceStub(channel)
        cards.ApplyCard(cards_pb2.ApplyCardRequest(
            request_id="r1", vehicle=common_pb2.VehicleIdentity(plate=MEMBER, color=common_pb2.PLATE_COLOR_BLUE),
            holder_name="Li", holder_phone="13800000000", start_date="2026-11-01", months=1,
        ))
        yield platform, credentials, settlement


@contextmanager
def node_for(tmp_path: Path, platform, credentials, clock, **settings) -> Iterator[LotNode]:  # type: ignore[no-untyped-def]
    node = LotNode(
        LotSettings(lot_id=LOT, platform=platform.address, token=credentials.token, listen="127.0.0.1:0",
                    data_dir=tmp_path / "lot", insecure=True, mode=Mode.CACHED,
                    card_hash_key=credentials.card_hash_key, **settings),
        clock,
    ).start()
    try:
        yield node
    finally:
        node.stop(grace=0)


def test_monthly_stay_is_delivered_settled_and_reconciled(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    with platform_with_lot(tmp_path, clock) as (platform, credentials, settlement), \
            node_for(tmp_path, platform, credentials, clock) as node:
        assert wait_until(lambda: node.cards.version >= 1)
        stub = gate(node)
        entry = stub.Pass(pass_request(MEMBER, ENTRY))
        assert entry.kind == gate_pb2.VEHICLE_KIND_MONTHLY
        clock.advance(timedelta(hours=2, minutes=30))
        stub.Pass(pass_request(MEMBER, EXIT))
        assert wait_until(lambda: node.status().outbox_depth == 0)
        clock.advance(timedelta(days=1))
        issued = settlement.IssueStatements(settlement_pb2.IssueStatementsRequest(lot_id=LOT)).statements
        assert issued
        assert wait_until(lambda: node.statements is not None and node.statements.handled_count >= len(issued), 20)
        listed = settlement.ListStatements(settlement_pb2.ListStatementsRequest(lot_id=LOT)).statements
        reports = sorted(p.name for p in (tmp_path / "lot" / "statements").glob("*.report.*"))
    with_line = [s for s in listed if s.line_count]
    assert with_line and all(s.status == settlement_pb2.STATEMENT_STATUS_RECONCILED for s in with_line)
    assert len(reports) == 2 * len(issued)


def test_tampered_statement_is_refused_and_reported(tmp_path: Path) -> None:
    import sqlalchemy as sa

    clock = ManualClock(T0)
    with platform_with_lot(tmp_path, clock) as (platform, credentials, settlement):
        with node_for(tmp_path, platform, credentials, clock, statements=False) as node:
            assert wait_until(lambda: node.cards.version >= 1)
            stub = gate(node)
            stub.Pass(pass_request(MEMBER, ENTRY))
            clock.advance(timedelta(hours=1))
            stub.Pass(pass_request(MEMBER, EXIT))
            assert wait_until(lambda: node.status().outbox_depth == 0)
        clock.advance(timedelta(days=1))
        (statement, *_) = [s for s in settlement.IssueStatements(
            settlement_pb2.IssueStatementsRequest(lot_id=LOT)).statements if s.line_count]
        with platform.ctx.db.session() as session:  # one byte changed where the platform keeps the file
            data = session.execute(sa.text("SELECT data FROM statement_chunks WHERE statement_id = :s"),
                                   {"s": statement.statement_id}).scalar()
            session.execute(sa.text("UPDATE statement_chunks SET data = :d WHERE statement_id = :s"),
                            {"d": data.replace(b",STAY,", b",STAX,", 1), "s": statement.statement_id})
        with node_for(tmp_path, platform, credentials, clock) as node:
            assert node.statements is not None
            assert wait_until(lambda: node.statements.handled_count >= 1, 20)
            report = next((tmp_path / "lot" / "statements").glob(f"{statement.statement_id}.report.html")).read_text()
        listed = {s.statement_id: s for s in settlement.ListStatements(
            settlement_pb2.ListStatementsRequest(lot_id=LOT)).statements}
    assert 'class="REFUSED">REFUSED' in report and "SHA-256" in report
    assert listed[statement.statement_id].status != settlement_pb2.STATEMENT_STATUS_RECONCILED


def test_fee_the_lot_disagrees_with_is_disputed(tmp_path: Path) -> None:
    """A tariff version put after the statement was issued, in force at the stay's entry: the lot
    prices with it (4.00 an hour), the statement was priced with the old one (3.00): FEE_MISMATCH."""
    from lot_node import store

    clock = ManualClock(T0)
    with platform_with_lot(tmp_path, clock) as (platform, credentials, settlement):
        with node_for(tmp_path, platform, credentials, clock, statements=False) as node:
            assert wait_until(lambda: node.cards.version >= 1)
            stub = gate(node)
            stub.Pass(pass_request(MEMBER, ENTRY))
            clock.advance(timedelta(hours=1))
            stub.Pass(pass_request(MEMBER, EXIT))
            assert wait_until(lambda: node.status().outbox_depth == 0)
        clock.advance(timedelta(days=1))
        assert any(s.line_count for s in settlement.IssueStatements(
            settlement_pb2.IssueStatementsRequest(lot_id=LOT)).statements)
        settlement.PutTariff(settlement_pb2.PutTariffRequest(tariff=settlement_pb2.Tariff(
            lot_id=LOT, effective_from=ts(T0 - timedelta(days=1)), kind=settlement_pb2.TARIFF_KIND_PER_TIME,
            unit_minutes=60, bands=[settlement_pb2.TariffBand(start="00:00", unit_fee_fen=400)],
        )))
        with node_for(tmp_path, platform, credentials, clock) as node:
            assert node.statements is not None
            assert wait_until(lambda: node.statements.handled_count >= 1, 20)
            with node.db.read_session() as session:
                items = [(i.result, i.platform_fee_fen, i.lot_fee_fen)
                         for i in session.query(store.ReconciliationItemRow).all()]
        disputes = settlement.ListDisputes(settlement_pb2.ListDisputesRequest(lot_id=LOT)).disputes
    assert items == [("FEE_MISMATCH", 300, 400)]
    assert [(d.item.platform_fee_fen, d.item.lot_fee_fen) for d in disputes] == [(300, 400)]
