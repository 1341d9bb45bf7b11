"""Settlement periods (DESIGN section 8): ``PER_EXIT``, ``DAILY``, ``WEEKLY`` (from Monday 00:00) and
``MONTHLY`` (from the 1st 00:00), laid out in the lot's time zone. A stay belongs to the period that
contains its exit instant. Pure: no I/O."""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo


class SettlementPeriod(enum.Enum):
    PER_EXIT = "PER_EXIT"  # 每次驶离
    DAILY = "DAILY"
    WEEKLY = "WEEKLY"
    MONTHLY = "MONTHLY"

    @classmethod
    def parse(cls, text: str) -> SettlementPeriod:
        """``DAILY``, ``daily``, ``per-exit`` or the proto name ``SETTLEMENT_PERIOD_DAILY``."""
        name = text.strip().upper().replace("-", "_").removeprefix("SETTLEMENT_PERIOD_")
        try:
            return cls[name]
        except KeyError:
            raise ValueError(f"unknown settlement period {text!r}: use per_exit, daily, weekly or monthly") from None


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def _first_day(period: SettlementPeriod, day: date) -> date:
    if period is SettlementPeriod.DAILY:
        return day
    if period is SettlementPeriod.WEEKLY:
        return day - timedelta(days=day.weekday())
    if period is SettlementPeriod.MONTHLY:
        return day.replace(day=1)
    raise ValueError("PER_EXIT periods are single instants")


def _following_first_day(period: SettlementPeriod, first: date) -> date:
    if period is SettlementPeriod.DAILY:
        return first + timedelta(days=1)
    if period is SettlementPeriod.WEEKLY:
        return first + timedelta(days=7)
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


def period_containing(period: SettlementPeriod, instant: datetime, time_zone: str) -> tuple[datetime, datetime]:
    """The period ``[from, to)`` (UTC instants) that contains ``instant``."""
    zone = ZoneInfo(time_zone)
    first = _first_day(period, instant.astimezone(zone).date())
    start = _midnight(first, zone)
    if start > instant:  # a zone whose midnight is skipped or repeated: step back one period
        first = _first_day(period, first - timedelta(days=1))
        start = _midnight(first, zone)
    return start, _midnight(_following_first_day(period, first), zone)


def period_after(period: SettlementPeriod, period_to: datetime, time_zone: str) -> tuple[datetime, datetime]:
    """The period that starts where one ending at ``period_to`` ends."""
    return period_containing(period, period_to, time_zone)
