"""Reconciliation of a statement against the lot's records (DESIGN section 9), and its report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lot_node.reconcile import LineResult, LotStay, reconcile
from lot_node.report import ReportHeader, render_csv, render_html
from settlement.statement_file import StatementLine
from settlement.tariff import Band, Tariff, TariffKind

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
ISSUED = T0 + timedelta(days=1)
TARIFF = Tariff(
    TariffKind.PER_TIME, unit_minutes=60, bands=(Band(0, 300),), version=1, effective_from=T0 - timedelta(days=30)
)


def stay(stay_id: str, hours: float = 2, split_after: float | None = None, delivered: bool = True) -> LotStay:
    exit_at = T0 + timedelta(hours=hours)
    return LotStay(
        stay_id,
        "card_1",
        "粤B12345",
        "blue",
        T0,
        exit_at,
        T0 + timedelta(hours=split_after) if split_after is not None else None,
        T0 + timedelta(hours=3) if delivered else None,
    )


def line(stay_id: str, fee: int, no: int = 1, kind: str = "STAY") -> StatementLine:
    return StatementLine(
        no,
        kind,
        stay_id,
        "card_1",
        "粤B12345",
        "blue",
        T0,
        T0 + timedelta(hours=2),
        7200,
        2,
        0,
        1,
        fee,
        stay_id,
        "x",
        adjusts="stmt#1" if kind == "ADJUSTMENT" else "",
    )


def results(outcome) -> dict[str, LineResult]:  # type: ignore[no-untyped-def]
    return {i.stay_id: i.result for i in outcome.items}


def test_same_fee_matches() -> None:
    outcome = reconcile([line("s1", 600)], {"s1": stay("s1")}, [stay("s1")], [TARIFF], ISSUED)
    assert results(outcome) == {"s1": LineResult.MATCHED} and outcome.all_matched


def test_other_fee_is_a_mismatch_with_both_figures() -> None:
    (item,) = reconcile([line("s1", 900)], {"s1": stay("s1")}, [], [TARIFF], ISSUED).items
    assert (item.result, item.platform_fee_fen, item.lot_fee_fen) == (LineResult.FEE_MISMATCH, 900, 600)


def test_stay_the_lot_never_saw_is_unknown() -> None:
    assert results(reconcile([line("ghost", 300)], {}, [], [TARIFF], ISSUED)) == {"ghost": LineResult.UNKNOWN_TO_LOT}


def test_delivered_stay_absent_from_the_statement_is_missing() -> None:
    outcome = reconcile([], {}, [stay("s2")], [TARIFF], ISSUED)
    assert results(outcome) == {"s2": LineResult.MISSING_IN_STATEMENT} and outcome.items[0].lot_fee_fen == 600


def test_stay_delivered_after_issue_is_not_claimed_missing() -> None:
    assert reconcile([], {}, [stay("s2", delivered=False)], [TARIFF], ISSUED).items == []


def test_card_end_inside_the_stay_bills_only_the_platforms_part() -> None:
    s = stay("s1", hours=3, split_after=1)
    assert results(reconcile([line("s1", 300)], {"s1": s}, [], [TARIFF], ISSUED)) == {"s1": LineResult.MATCHED}


def test_adjustment_lines_count_as_matched_and_are_not_compared() -> None:
    outcome = reconcile([line("s1", 600), line("s1", -300, 2, "ADJUSTMENT")], {"s1": stay("s1")}, [], [TARIFF], ISSUED)
    assert outcome.matched_count == 2 and len(outcome.adjustments) == 1


def test_reports_name_every_disputed_stay() -> None:
    outcome = reconcile([line("s1", 900)], {"s1": stay("s1")}, [], [TARIFF], ISSUED)
    header = ReportHeader("lot-a", "stmt_lot-a_1", T0, ISSUED, "Asia/Shanghai", ISSUED, ISSUED, "ab" * 32, "DISPUTED")
    csv_text = render_csv(header, outcome).decode("utf-8")
    page = render_html(header, outcome)
    assert "s1,FEE_MISMATCH,1" in csv_text and "9.00" in csv_text and "6.00" in csv_text
    assert "FEE_MISMATCH" in page and "<script" not in page


def test_refused_report_says_why() -> None:
    header = ReportHeader(
        "lot-a",
        "stmt_lot-a_1",
        T0,
        ISSUED,
        "Asia/Shanghai",
        ISSUED,
        ISSUED,
        "",
        "REFUSED",
        "SHA-256 of the file does not match the published digest",
    )
    assert "does not match" in render_html(header, None) and b"# verdict: REFUSED" in render_csv(header, None)
