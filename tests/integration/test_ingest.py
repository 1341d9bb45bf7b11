"""ReportPassages (DESIGN section 6): acks, idempotence, rejections, joining stays."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from sqlalchemy import func, select

from crosspark.clock import ManualClock
from crosspark.platform import Platform
from crosspark.v1 import settlement_pb2 as pb
from settlement.store import PassageRow, StayRow
from tests.support import ack_results as results
from tests.support import add_settlement_lot as add_lot
from tests.support import entry_passage as entry
from tests.support import exit_passage as exit_of
from tests.support import report_passages as report
from tests.support import running_platform
from tests.support import settlement_stub as stub
from tests.support import timestamp as ts

NOW = datetime(2026, 11, 3, 4, 0, tzinfo=UTC)


@pytest.fixture
def platform(tmp_path: Path, db_url: str) -> Iterator[Platform]:
    with running_platform(tmp_path, db_url=db_url, clock=ManualClock(NOW), scheduler=False) as running:
        yield running


@pytest.fixture
def lot_a(platform: Platform) -> str:
    return add_lot(platform, "lot-a", registered_at=NOW - timedelta(days=30))


def count(platform: Platform, table: type) -> int:
    with platform.ctx.db.read_session() as session:
        return session.scalar(select(func.count()).select_from(table)) or 0


def test_entry_and_exit_are_accepted_and_joined_into_a_stay(platform: Platform, lot_a: str) -> None:
    e = entry("lot-a", NOW - timedelta(hours=2))
    acks = report(platform, lot_a, "lot-a", [e, exit_of(e, NOW - timedelta(hours=1))])
    assert results(acks) == ["ACCEPTED", "ACCEPTED"]
    with platform.ctx.db.read_session() as session:
        stay = session.get(StayRow, e.passage_id)
    assert stay is not None and stay.exit_us - stay.entry_us == 3600 * 10**6


def test_exit_before_its_entry_in_the_same_batch_is_joined(platform: Platform, lot_a: str) -> None:
    e = entry("lot-a", NOW - timedelta(hours=2))
    assert results(report(platform, lot_a, "lot-a", [exit_of(e, NOW - timedelta(hours=1)), e])) == ["ACCEPTED"] * 2
    assert count(platform, StayRow) == 1


def test_acks_echo_batch_seq_and_passage_ids(platform: Platform, lot_a: str) -> None:
    e = entry("lot-a", NOW)
    acks = report(platform, lot_a, "lot-a", [e])
    assert (acks[0].batch_seq, acks[0].acks[0].passage_id) == (1, e.passage_id)


def test_reporting_a_passage_twice_is_duplicate_and_stored_once(platform: Platform, lot_a: str) -> None:
    e = entry("lot-a", NOW)
    report(platform, lot_a, "lot-a", [e])
    assert results(report(platform, lot_a, "lot-a", [e])) == ["DUPLICATE"]
    assert count(platform, PassageRow) == 1


def test_same_passage_twice_in_one_batch_is_stored_once(platform: Platform, lot_a: str) -> None:
    e = entry("lot-a", NOW)
    assert results(report(platform, lot_a, "lot-a", [e, e])) == ["ACCEPTED", "DUPLICATE"]


def test_future_passage_is_rejected_with_reason(platform: Platform, lot_a: str) -> None:
    acks = report(platform, lot_a, "lot-a", [entry("lot-a", NOW + timedelta(seconds=301))])
    assert acks[0].acks[0].result == pb.ACK_RESULT_REJECTED
    assert "future" in acks[0].acks[0].reason
    assert count(platform, PassageRow) == 0


def test_passage_five_minutes_ahead_is_accepted(platform: Platform, lot_a: str) -> None:
    assert results(report(platform, lot_a, "lot-a", [entry("lot-a", NOW + timedelta(seconds=300))])) == ["ACCEPTED"]


def test_exit_before_entry_instant_is_rejected(platform: Platform, lot_a: str) -> None:
    e = entry("lot-a", NOW - timedelta(hours=1))
    acks = report(platform, lot_a, "lot-a", [e, exit_of(e, NOW - timedelta(hours=2))])
    assert results(acks) == ["ACCEPTED", "REJECTED"]
    assert "before its entry" in acks[0].acks[1].reason
    assert count(platform, StayRow) == 0


def test_exit_naming_unknown_entry_is_rejected(platform: Platform, lot_a: str) -> None:
    ghost = entry("lot-a", NOW - timedelta(hours=1))
    acks = report(platform, lot_a, "lot-a", [exit_of(ghost, NOW)])
    assert results(acks) == ["REJECTED"]
    assert "unknown" in acks[0].acks[0].reason


def test_malformed_plate_is_rejected_naming_the_rule(platform: Platform, lot_a: str) -> None:
    acks = report(platform, lot_a, "lot-a", [entry("lot-a", NOW, plate="XX12345")])
    assert results(acks) == ["REJECTED"]
    assert "malformed identity" in acks[0].acks[0].reason


def test_second_exit_of_a_stay_is_rejected(platform: Platform, lot_a: str) -> None:
    e = entry("lot-a", NOW - timedelta(hours=2))
    report(platform, lot_a, "lot-a", [e, exit_of(e, NOW - timedelta(hours=1))])
    assert results(report(platform, lot_a, "lot-a", [exit_of(e, NOW)])) == ["REJECTED"]


def test_card_ended_in_stay_is_settled_until_card_end(platform: Platform, lot_a: str) -> None:
    e = entry("lot-a", NOW - timedelta(hours=3))
    x = exit_of(e, NOW, flags=[pb.PASSAGE_FLAG_CARD_ENDED_IN_STAY], card_valid_until=ts(NOW - timedelta(hours=2)))
    report(platform, lot_a, "lot-a", [e, x])
    with platform.ctx.db.read_session() as session:
        stay = session.get(StayRow, e.passage_id)
    assert stay is not None and stay.settle_to_us - stay.entry_us == 3600 * 10**6


def test_lot_may_not_report_for_another_lot(platform: Platform, lot_a: str) -> None:
    add_lot(platform, "lot-b", registered_at=NOW)
    with pytest.raises(grpc.RpcError) as caught:
        report(platform, lot_a, "lot-b", [entry("lot-b", NOW)])
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_passage_of_another_lot_inside_own_batch_is_rejected(platform: Platform, lot_a: str) -> None:
    assert results(report(platform, lot_a, "lot-a", [entry("lot-b", NOW)])) == ["REJECTED"]


def test_empty_batch_is_invalid(platform: Platform, lot_a: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        list(stub(platform, lot_a).ReportPassages(iter([pb.PassageBatch(lot_id="lot-a", batch_seq=1)])))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_outbox_figures_are_recorded_for_lot_status(platform: Platform, lot_a: str) -> None:
    from card_service.store import LotRow

    batch = pb.PassageBatch(lot_id="lot-a", batch_seq=1, passages=[entry("lot-a", NOW)], outbox_depth=42)
    list(stub(platform, lot_a).ReportPassages(iter([batch])))
    with platform.ctx.db.read_session() as session:
        assert session.get(LotRow, "lot-a").outbox_depth == 42  # type: ignore[union-attr]


def test_accepted_passages_are_counted_per_lot(platform: Platform, lot_a: str) -> None:
    from settlement.store import passages_received

    e = entry("lot-a", NOW)
    report(platform, lot_a, "lot-a", [e, entry("lot-a", NOW)], [e])
    with platform.ctx.db.read_session() as session:
        assert passages_received(session, "lot-a") == 2


def test_resent_passage_beside_new_ones_is_duplicate_and_only_new_ones_are_stored(
    platform: Platform, lot_a: str
) -> None:
    e = entry("lot-a", NOW - timedelta(hours=2))
    report(platform, lot_a, "lot-a", [e])
    fresh = entry("lot-a", NOW - timedelta(hours=1))
    acks = report(platform, lot_a, "lot-a", [fresh, e, exit_of(e, NOW)])
    assert results(acks) == ["ACCEPTED", "DUPLICATE", "ACCEPTED"]
    assert (count(platform, PassageRow), count(platform, StayRow)) == (3, 1)
