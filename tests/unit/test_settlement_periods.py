"""Settlement periods in the lot's time zone (DESIGN section 8)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from settlement.periods import SettlementPeriod, period_after, period_containing

SH = ZoneInfo("Asia/Shanghai")


def test_daily_period_runs_from_local_midnight() -> None:
    start, end = period_containing(SettlementPeriod.DAILY, datetime(2026, 11, 3, 16, 30, tzinfo=UTC), "Asia/Shanghai")
    assert (start, end) == (datetime(2026, 11, 4, tzinfo=SH), datetime(2026, 11, 5, tzinfo=SH))


def test_weekly_period_starts_monday() -> None:
    start, end = period_containing(SettlementPeriod.WEEKLY, datetime(2026, 11, 5, 12, tzinfo=SH), "Asia/Shanghai")
    assert (start, end) == (datetime(2026, 11, 2, tzinfo=SH), datetime(2026, 11, 9, tzinfo=SH))


def test_monthly_period_wraps_the_year() -> None:
    start, end = period_containing(SettlementPeriod.MONTHLY, datetime(2026, 12, 31, 23, tzinfo=SH), "Asia/Shanghai")
    assert (start, end) == (datetime(2026, 12, 1, tzinfo=SH), datetime(2027, 1, 1, tzinfo=SH))


def test_day_with_dst_change_is_23_hours() -> None:
    start, end = period_containing(SettlementPeriod.DAILY, datetime(2026, 3, 8, 12, tzinfo=UTC), "America/New_York")
    assert (end - start).total_seconds() == 23 * 3600


def test_period_after_follows_without_gap() -> None:
    first = period_containing(SettlementPeriod.MONTHLY, datetime(2026, 1, 15, tzinfo=SH), "Asia/Shanghai")
    assert period_after(SettlementPeriod.MONTHLY, first[1], "Asia/Shanghai")[0] == first[1]


@pytest.mark.parametrize("text", ["DAILY", "daily", "SETTLEMENT_PERIOD_DAILY"])
def test_period_names_parse(text: str) -> None:
    assert SettlementPeriod.parse(text) is SettlementPeriod.DAILY
