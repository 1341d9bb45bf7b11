"""Statements (DESIGN sections 8, 9, 13): issuing, files, signatures, delivery, reconciliation."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import grpc
import pytest

from crosspark.clock import ManualClock
from crosspark.platform import Platform
from crosspark.v1 import settlement_pb2 as pb
from settlement import statement_file
from tests.support import add_settlement_lot as add_lot
from tests.support import entry_passage as entry
from tests.support import exit_passage as exit_of
from tests.support import report_passages as report
from tests.support import running_platform
from tests.support import settlement_stub as stub
from tests.support import timestamp as ts

SH = ZoneInfo("Asia/Shanghai")
DAY = datetime(2026, 11, 3, tzinfo=SH)  # a local day of lot-a (DAILY)
NOW = DAY + timedelta(days=1, hours=2)  # that day has closed, with its close delay


@pytest.fixture
def platform(tmp_path: Path, db_url: str) -> Iterator[Platform]:
    with running_platform(tmp_path, db_url=db_url, clock=ManualClock(NOW), scheduler=False) as running:
        yield running


@pytest.fixture
def lot_a(platform: Platform) -> str:
    token = add_lot(platform, "lot-a", registered_at=DAY)
    stub(platform).PutTariff(
        pb.PutTariffRequest(
            tariff=pb.Tariff(
                lot_id="lot-a",
                effective_from=ts(DAY - timedelta(days=1)),
                kind=pb.TARIFF_KIND_PER_TIME,
                unit_minutes=60,
                bands=[
                    pb.TariffBand(start="08:00", unit_fee_fen=1500),
                    pb.TariffBand(start="20:00", unit_fee_fen=1000),
                ],
            )
        )
    )
    return token


def stay(platform: Platform, token: str, start: datetime, end: datetime) -> pb.Passage:
    e = entry("lot-a", start)
    report(platform, token, "lot-a", [e, exit_of(e, end)])
    return e


def issue(platform: Platform, as_of: datetime | None = None) -> list[pb.Statement]:
    request = pb.IssueStatementsRequest(as_of=ts(as_of)) if as_of else pb.IssueStatementsRequest()
    return list(stub(platform).IssueStatements(request).statements)


def fetch(platform: Platform, token: str, statement_id: str) -> tuple[pb.Statement, bytes]:
    chunks = list(stub(platform, token).FetchStatement(pb.FetchStatementRequest(statement_id=statement_id)))
    return chunks[0].statement, b"".join(c.data for c in chunks[1:])


def public_key(platform: Platform, token: str, key_id: str) -> bytes:
    keys = stub(platform, token).GetSigningKeys(pb.GetSigningKeysRequest()).keys
    return next(k.public_key for k in keys if k.key_id == key_id)


def test_closed_day_is_issued_with_its_stays_priced(platform: Platform, lot_a: str) -> None:
    stay(platform, lot_a, DAY.replace(hour=19, minute=30), DAY.replace(hour=21, minute=10))
    [statement] = issue(platform)
    assert (statement.seq, statement.line_count, statement.total_fee_fen) == (1, 1, 2500)
    assert statement.period_from.ToDatetime(tzinfo=UTC) == DAY


def test_day_is_not_issued_before_close_delay(platform: Platform, lot_a: str) -> None:
    assert issue(platform, as_of=DAY + timedelta(days=1, minutes=59)) == []


def test_issuing_twice_gives_no_second_statement(platform: Platform, lot_a: str) -> None:
    issue(platform)
    assert issue(platform) == []


def test_fetched_file_verifies_against_published_key(platform: Platform, lot_a: str) -> None:
    stay(platform, lot_a, DAY.replace(hour=9), DAY.replace(hour=10))
    [issued] = issue(platform)
    meta, data = fetch(platform, lot_a, issued.statement_id)
    statement_file.verify(data, meta.signature, public_key(platform, lot_a, meta.key_id), meta.sha256)
    assert statement_file.parse(data).lines[0].fee_fen == 1500


def test_fetch_is_recorded(platform: Platform, lot_a: str) -> None:
    [issued] = issue(platform)
    fetch(platform, lot_a, issued.statement_id)
    [listed] = stub(platform, lot_a).ListStatements(pb.ListStatementsRequest(lot_id="lot-a")).statements
    assert listed.status == pb.STATEMENT_STATUS_FETCHED and listed.HasField("fetched_at")


def test_large_file_is_streamed_in_stored_chunks(
    platform: Platform, lot_a: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from settlement import issuing

    monkeypatch.setattr(issuing, "CHUNK_BYTES", 20_000)
    passages = []
    for i in range(300):
        e = entry("lot-a", DAY + timedelta(seconds=i))
        passages += [e, exit_of(e, DAY + timedelta(hours=1, seconds=i))]
    report(platform, lot_a, "lot-a", passages[:600])
    [issued] = issue(platform)
    chunks = list(stub(platform, lot_a).FetchStatement(pb.FetchStatementRequest(statement_id=issued.statement_id)))
    sizes = [len(c.data) for c in chunks[1:]]
    assert len(sizes) > 1 and max(sizes) <= 20_000 and sum(sizes) == issued.file_size


def test_stored_chunks_are_at_most_1_mib() -> None:
    from settlement.issuing import CHUNK_BYTES

    assert CHUNK_BYTES <= 1 << 20


def test_late_stay_goes_into_next_statement_marked_late(platform: Platform, lot_a: str) -> None:
    issue(platform)  # day 1 issued, empty
    stay(platform, lot_a, DAY.replace(hour=9), DAY.replace(hour=10))  # belongs to day 1, arrives late
    [second] = issue(platform, as_of=NOW + timedelta(days=1))
    _, data = fetch(platform, lot_a, second.statement_id)
    assert [line.late for line in statement_file.parse(data).lines] == [True]


def test_lot_may_not_fetch_another_lots_statement(platform: Platform, lot_a: str) -> None:
    token_b = add_lot(platform, "lot-b", registered_at=DAY)
    [issued] = issue(platform, as_of=NOW)[:1]
    with pytest.raises(grpc.RpcError) as caught:
        fetch(platform, token_b, issued.statement_id if issued.lot_id == "lot-a" else "stmt_lot-a_1")
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_watch_sends_issued_statements_after_seq(platform: Platform, lot_a: str) -> None:
    issue(platform, as_of=NOW + timedelta(days=2))  # three days
    call = stub(platform, lot_a).WatchStatements(pb.WatchStatementsRequest(lot_id="lot-a", after_seq=1))
    seqs = [next(call).seq, next(call).seq]
    call.cancel()
    assert seqs == [2, 3]


def test_watch_delivers_statement_issued_while_watching(platform: Platform, lot_a: str) -> None:
    call = stub(platform, lot_a).WatchStatements(pb.WatchStatementsRequest(lot_id="lot-a"))
    threading.Timer(0.2, lambda: issue(platform)).start()
    first = next(call)
    call.cancel()
    assert first.seq == 1


def test_per_exit_lot_gets_a_statement_per_exit(platform: Platform) -> None:
    token = add_lot(platform, "lot-x", period="PER_EXIT", registered_at=DAY)
    for hour in (9, 11):
        e = entry("lot-x", DAY.replace(hour=hour))
        report(platform, token, "lot-x", [e, exit_of(e, DAY.replace(hour=hour + 1))])
    statements = issue(platform)
    assert [(s.line_count, s.period_from == s.period_to) for s in statements] == [(1, True), (1, True)]


def reconcile(
    platform: Platform, token: str, statement: pb.Statement, data: bytes, lot_fee: int
) -> pb.ReconciliationReceipt:
    line = statement_file.parse(data).lines[0]
    item = pb.ReconciliationItem(
        stay_id=line.stay_id,
        result=pb.LINE_RESULT_FEE_MISMATCH,
        line_no=line.line_no,
        platform_fee_fen=line.fee_fen,
        lot_fee_fen=lot_fee,
        note="our meter says 10 yuan",
    )
    return stub(platform, token).SubmitReconciliation(
        pb.Reconciliation(lot_id="lot-a", statement_id=statement.statement_id, sha256=statement.sha256, items=[item])
    )


def test_all_matched_reconciliation_marks_statement_reconciled(platform: Platform, lot_a: str) -> None:
    stay(platform, lot_a, DAY.replace(hour=9), DAY.replace(hour=10))
    [issued] = issue(platform)
    receipt = stub(platform, lot_a).SubmitReconciliation(
        pb.Reconciliation(lot_id="lot-a", statement_id=issued.statement_id, sha256=issued.sha256, matched_count=1)
    )
    assert receipt.statement.status == pb.STATEMENT_STATUS_RECONCILED and not receipt.disputes


def test_fee_mismatch_opens_dispute_and_marks_disputed(platform: Platform, lot_a: str) -> None:
    stay(platform, lot_a, DAY.replace(hour=9), DAY.replace(hour=10))
    [issued] = issue(platform)
    meta, data = fetch(platform, lot_a, issued.statement_id)
    receipt = reconcile(platform, lot_a, meta, data, 1000)
    assert receipt.statement.status == pb.STATEMENT_STATUS_DISPUTED
    assert receipt.disputes[0].state == pb.DISPUTE_STATE_OPEN


def test_reconciliation_with_wrong_digest_is_refused(platform: Platform, lot_a: str) -> None:
    [issued] = issue(platform)
    with pytest.raises(grpc.RpcError) as caught:
        stub(platform, lot_a).SubmitReconciliation(
            pb.Reconciliation(lot_id="lot-a", statement_id=issued.statement_id, sha256="0" * 64)
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_accepted_dispute_becomes_adjustment_in_next_statement(platform: Platform, lot_a: str) -> None:
    stay(platform, lot_a, DAY.replace(hour=9), DAY.replace(hour=10))
    [issued] = issue(platform)
    meta, data = fetch(platform, lot_a, issued.statement_id)
    dispute = reconcile(platform, lot_a, meta, data, 1000).disputes[0]
    resolved = stub(platform).ResolveDispute(
        pb.ResolveDisputeRequest(
            dispute_id=dispute.dispute_id, decision=pb.DISPUTE_DECISION_ACCEPT_LOT, note="lot is right"
        )
    )
    assert resolved.state == pb.DISPUTE_STATE_ACCEPTED
    [second] = issue(platform, as_of=NOW + timedelta(days=1))
    _, data2 = fetch(platform, lot_a, second.statement_id)
    [adjustment] = statement_file.parse(data2).lines
    assert (adjustment.kind, adjustment.fee_fen, adjustment.adjusts) == ("ADJUSTMENT", -500, f"{issued.statement_id}#1")


def test_resolving_last_dispute_marks_statement_resolved(platform: Platform, lot_a: str) -> None:
    stay(platform, lot_a, DAY.replace(hour=9), DAY.replace(hour=10))
    [issued] = issue(platform)
    meta, data = fetch(platform, lot_a, issued.statement_id)
    dispute = reconcile(platform, lot_a, meta, data, 1000).disputes[0]
    stub(platform).ResolveDispute(
        pb.ResolveDisputeRequest(dispute_id=dispute.dispute_id, decision=pb.DISPUTE_DECISION_KEEP_PLATFORM)
    )
    [listed] = stub(platform).ListStatements(pb.ListStatementsRequest(lot_id="lot-a")).statements
    assert listed.status == pb.STATEMENT_STATUS_RESOLVED


def test_list_disputes_filters_by_state(platform: Platform, lot_a: str) -> None:
    stay(platform, lot_a, DAY.replace(hour=9), DAY.replace(hour=10))
    [issued] = issue(platform)
    meta, data = fetch(platform, lot_a, issued.statement_id)
    reconcile(platform, lot_a, meta, data, 1000)
    listed = stub(platform).ListDisputes(pb.ListDisputesRequest(state=pb.DISPUTE_STATE_OPEN)).disputes
    assert len(listed) == 1


def test_lot_reads_its_tariff_in_force(platform: Platform, lot_a: str) -> None:
    [tariff] = stub(platform, lot_a).GetTariff(pb.GetTariffRequest(lot_id="lot-a", at=ts(DAY))).tariffs
    assert (tariff.version, [b.start for b in tariff.bands]) == (1, ["08:00", "20:00"])


def test_invalid_tariff_is_refused_with_field_violation(platform: Platform, lot_a: str) -> None:
    from crosspark.rpc import bad_request_violations

    with pytest.raises(grpc.RpcError) as caught:
        stub(platform).PutTariff(
            pb.PutTariffRequest(
                tariff=pb.Tariff(
                    lot_id="lot-a",
                    effective_from=ts(DAY),
                    kind=pb.TARIFF_KIND_PER_TIME,
                    unit_minutes=2000,
                    bands=[pb.TariffBand(start="08:00", unit_fee_fen=1)],
                )
            )
        )
    assert bad_request_violations(caught.value)[0][0] == "tariff.unit_minutes"


def test_lot_may_not_put_tariff(platform: Platform, lot_a: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub(platform, lot_a).PutTariff(pb.PutTariffRequest(tariff=pb.Tariff(lot_id="lot-a")))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_scheduler_issues_per_exit_statement_after_ingest(tmp_path: Path, db_url: str) -> None:
    with running_platform(tmp_path, db_url=db_url, clock=ManualClock(NOW), scheduler_interval_seconds=0.1) as running:
        token = add_lot(running, "lot-x", period="PER_EXIT", registered_at=DAY)
        call = stub(running, token).WatchStatements(pb.WatchStatementsRequest(lot_id="lot-x"))
        e = entry("lot-x", DAY.replace(hour=9))
        report(running, token, "lot-x", [e, exit_of(e, DAY.replace(hour=10))])
        first = next(call)
        call.cancel()
    assert first.line_count == 1
