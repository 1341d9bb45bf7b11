"""The vectorised tariff engine agrees with the minute-by-minute reference (DESIGN section 7)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from settlement.tariff import Band, Tariff, TariffKind, epoch_seconds, price_stay, price_stays, reference_price

ZONES = ["Asia/Shanghai", "America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kathmandu"]


@st.composite
def tariffs(draw: st.DrawFn) -> Tariff:
    starts = draw(st.lists(st.integers(0, 1439), min_size=1, max_size=6, unique=True))
    fees = draw(st.lists(st.integers(0, 5000), min_size=len(starts), max_size=len(starts)))
    return Tariff(
        TariffKind.PER_TIME,
        time_zone=draw(st.sampled_from(ZONES)),
        unit_minutes=draw(st.one_of(st.sampled_from([1, 15, 30, 60, 90, 120, 1440]), st.integers(1, 1440))),
        bands=tuple(Band(s, f) for s, f in zip(starts, fees, strict=True)),
        free_minutes=draw(st.sampled_from([0, 0, 15, 30, 120])),
        cap_per_24h_fen=draw(st.sampled_from([0, 0, 2000, 10000, 40000])),
        max_per_stay_fen=draw(st.sampled_from([0, 0, 5000, 100000])),
    )


# Around DST changes in the northern and southern hemispheres, and ordinary days.
BASE = [
    datetime(2026, 3, 7, tzinfo=UTC),
    datetime(2026, 10, 3, tzinfo=UTC),
    datetime(2026, 11, 1, tzinfo=UTC),
    datetime(2026, 3, 28, tzinfo=UTC),
    datetime(2026, 7, 15, tzinfo=UTC),
]


@st.composite
def stays(draw: st.DrawFn) -> tuple[datetime, datetime]:
    entry = draw(st.sampled_from(BASE)) + timedelta(seconds=draw(st.integers(0, 3 * 86400)))
    length = draw(st.one_of(st.just(0), st.integers(0, 7200), st.integers(0, 4 * 86400)))
    return entry, entry + timedelta(seconds=length)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tariffs(), stays())
def test_fast_path_agrees_with_reference(tariff: Tariff, stay: tuple[datetime, datetime]) -> None:
    assert price_stay(tariff, *stay) == reference_price(tariff, *stay)


@settings(max_examples=100, deadline=None)
@given(tariffs(), st.sampled_from(BASE), st.integers(0, 3), st.integers(0, 5))
def test_stays_starting_on_band_edge_agree_with_reference(tariff: Tariff, base: datetime, day: int, units: int) -> None:
    from zoneinfo import ZoneInfo

    edge = tariff.bands[0].start_minute
    local = base.astimezone(ZoneInfo(tariff.time_zone)).replace(hour=edge // 60, minute=edge % 60, second=0)
    # The edge's wall-clock time ``day`` days on, as an instant; on a spring-forward day it may not
    # exist (zoneinfo then reads it with the offset before the change). The stay's length is added
    # to the instant: added to the wall clock, a stay across the change could end before it began.
    entry = (local + timedelta(days=day)).astimezone(UTC)
    exit_ = entry + timedelta(minutes=units * tariff.unit_minutes)
    assert price_stay(tariff, entry, exit_) == reference_price(tariff, entry, exit_)


@settings(max_examples=30, deadline=None)
@given(tariffs(), st.lists(stays(), min_size=1, max_size=40))
def test_bulk_path_agrees_with_reference(tariff: Tariff, many: list[tuple[datetime, datetime]]) -> None:
    entries = np.array([epoch_seconds(e) for e, _ in many])
    exits = np.array([epoch_seconds(x) for _, x in many])
    fee, units, visits = price_stays(tariff, entries, exits)
    expected = [reference_price(tariff, e, x) for e, x in many]
    assert fee.tolist() == [p.fee_fen for p in expected]
    assert units.tolist() == [p.units for p in expected]
    assert visits.tolist() == [p.visits for p in expected]
