"""The worked vendor client of docs/examples runs against a real platform, end to end."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta
from pathlib import Path

from crosspark.clock import ManualClock
from crosspark.v1 import admin_pb2, admin_pb2_grpc, cards_pb2, cards_pb2_grpc, common_pb2, settlement_pb2
from crosspark.v1 import settlement_pb2_grpc as settlement_grpc
from tests.support import channel_to, running_platform

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "vendor_lot_client.py"
NOW = datetime(2026, 11, 24, 4, 0, tzinfo=UTC)


def load_example():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("vendor_lot_client", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vendor_client_checks_reports_and_reconciles(tmp_path: Path) -> None:
    example = load_example()
    with running_platform(tmp_path, clock=ManualClock(NOW)) as platform:
        admin = channel_to(platform)
        credentials = admin_pb2_grpc.AdminServiceStub(admin).RegisterLot(
            admin_pb2.RegisterLotRequest(
                lot=admin_pb2.Lot(
                    lot_id="vendor-lot", name="Vendor lot", vendor="Acme", time_zone="Asia/Shanghai",
                    mode=common_pb2.MEMBERSHIP_MODE_ONLINE, period=common_pb2.SETTLEMENT_PERIOD_PER_EXIT,
                )
            )
        )  # fmt: skip
        settlement_grpc.SettlementServiceStub(admin).PutTariff(
            settlement_pb2.PutTariffRequest(
                tariff=settlement_pb2.Tariff(
                    lot_id="vendor-lot", effective_from=example.timestamp(NOW - timedelta(days=30)),
                    kind=settlement_pb2.TARIFF_KIND_PER_VISIT, visit_fee_fen=500,
                )
            )
        )  # fmt: skip
        card = cards_pb2_grpc.CardServiceStub(admin).ApplyCard(
            cards_pb2.ApplyCardRequest(
                request_id="r1",
                vehicle=common_pb2.VehicleIdentity(plate="粤B12345", color=common_pb2.PLATE_COLOR_BLUE),
                holder_name="张三", holder_phone="13800000000", start_date="2026-11-01", months=1,
            )
        )  # fmt: skip

        lot = example.VendorLot(
            channel_to(platform, token=None), "vendor-lot", credentials.token, credentials.card_hash_key
        )
        answer = lot.check("粤B12345", common_pb2.PLATE_COLOR_BLUE, NOW)
        assert answer.status == cards_pb2.MEMBERSHIP_STATUS_MONTHLY and answer.card_id == card.card_id

        entries, version = lot.card_snapshot()
        assert version >= 1
        assert entries[lot.vehicle_hash("粤B12345", "blue")].card_id == card.card_id

        entry = lot.passage(settlement_pb2.DIRECTION_ENTRY, "粤B12345", common_pb2.PLATE_COLOR_BLUE,
                            NOW - timedelta(hours=2), card.card_id)  # fmt: skip
        entry.stay_id = entry.passage_id
        exit_ = lot.passage(settlement_pb2.DIRECTION_EXIT, "粤B12345", common_pb2.PLATE_COLOR_BLUE,
                            NOW - timedelta(hours=1), card.card_id, stay_id=entry.passage_id,
                            entry_passage_id=entry.passage_id)  # fmt: skip
        acks = lot.report([entry, exit_])
        assert [a.result for a in acks] == [settlement_pb2.ACK_RESULT_ACCEPTED] * 2
        assert [a.result for a in lot.report([entry])] == [settlement_pb2.ACK_RESULT_DUPLICATE]

        statement = lot.next_statement(after_seq=0)
        meta, data = lot.fetch_verified(statement.statement_id)
        [line] = lot.lines(data)
        assert line["stay_id"] == entry.passage_id and line["fee_yuan"] == "5.00"
        receipt = lot.reconcile(meta, data, {entry.passage_id: 500})
        assert receipt.statement.status == settlement_pb2.STATEMENT_STATUS_RECONCILED
