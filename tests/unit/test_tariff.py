"""The tariff engine of DESIGN section 7 on worked cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from settlement.tariff import (
    Band,
    Price,
    Tariff,
    TariffError,
    TariffKind,
    epoch_seconds,
    price_stay,
    price_stays,
    price_stays_by_version,
    reference_price,
    tariff_in_force,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def day_night(**kw: object) -> Tariff:
    return Tariff(
        TariffKind.PER_TIME,
        unit_minutes=60,
        bands=(Band.parse("08:00", 1500), Band.parse("20:00", 1000)),
        **kw,  # type: ignore[arg-type]
    )


def at(hour: int, minute: int = 0, day: int = 3) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=SHANGHAI)


def test_design_example_prices_two_units_in_two_bands() -> None:
    assert price_stay(day_night(), at(19, 30), at(21, 10)) == Price(2500, 2, 0)


def test_started_unit_is_charged_in_full() -> None:
    assert price_stay(day_night(), at(9), at(9, 1)).fee_fen == 1500


def test_band_before_first_start_wraps_from_last_band() -> None:
    assert price_stay(day_night(), at(3), at(3, 30)).fee_fen == 1000


def test_unit_starting_exactly_on_band_edge_takes_new_band() -> None:
    assert price_stay(day_night(), at(19), at(20, 30)).fee_fen == 1500 + 1000


def test_stay_within_free_minutes_costs_nothing() -> None:
    assert price_stay(day_night(free_minutes=15), at(9), at(9, 15)) == Price(0, 0, 0)


def test_stay_longer_than_free_minutes_is_charged_from_entry() -> None:
    assert price_stay(day_night(free_minutes=15), at(9), at(9, 16)) == Price(1500, 1, 0)


def test_zero_length_stay_costs_nothing() -> None:
    assert price_stay(day_night(), at(9), at(9)) == Price(0, 0, 0)


def test_cap_per_24h_applies_to_each_window_from_entry() -> None:
    tariff = day_night(cap_per_24h_fen=20000)
    # 48 units: each 24-hour window would cost 12*1500 + 12*1000 = 30000, capped at 20000.
    assert price_stay(tariff, at(8), at(8, day=5)) == Price(40000, 48, 0)


def test_max_per_stay_caps_the_whole_stay() -> None:
    assert price_stay(day_night(max_per_stay_fen=3000), at(8), at(18)).fee_fen == 3000


def test_per_visit_charges_fixed_fee_per_stay() -> None:
    tariff = Tariff(TariffKind.PER_VISIT, visit_fee_fen=800)
    assert price_stay(tariff, at(8), at(8, day=6)) == Price(800, 0, 1)


def test_per_visit_within_free_minutes_costs_nothing() -> None:
    tariff = Tariff(TariffKind.PER_VISIT, visit_fee_fen=800, free_minutes=10)
    assert price_stay(tariff, at(8), at(8, 10)).fee_fen == 0


def test_bands_are_read_in_the_lots_time_zone() -> None:
    tariff = day_night(time_zone="America/New_York")
    entry = datetime(2026, 6, 1, 19, 30, tzinfo=ZoneInfo("America/New_York"))
    assert price_stay(tariff, entry, entry + timedelta(minutes=100)).fee_fen == 2500


def test_dst_change_moves_band_edges_in_utc() -> None:
    new_york = ZoneInfo("America/New_York")
    tariff = Tariff(
        TariffKind.PER_TIME,
        unit_minutes=60,
        bands=(Band.parse("00:00", 1), Band.parse("03:00", 100)),
        time_zone="America/New_York",
    )
    # 2026-03-08 02:00 local does not exist: 01:00 EST + 1 h is 03:00 EDT, already the 100 band.
    entry = datetime(2026, 3, 8, 1, 0, tzinfo=new_york).astimezone(UTC)
    exit_ = entry + timedelta(hours=2)
    assert price_stay(tariff, entry, exit_) == reference_price(tariff, entry, exit_) == Price(101, 2, 0)


def test_bulk_path_matches_single_stays() -> None:
    tariff = day_night(cap_per_24h_fen=18000, free_minutes=10)
    rng = np.random.default_rng(7)
    entries = epoch_seconds(at(0)) + rng.integers(0, 7 * 86400, 500)
    exits = entries + rng.integers(0, 3 * 86400, 500)
    fee, units, _ = price_stays(tariff, entries, exits)
    for i in range(0, 500, 50):
        single = price_stay(
            tariff, datetime.fromtimestamp(int(entries[i]), UTC), datetime.fromtimestamp(int(exits[i]), UTC)
        )
        assert (single.fee_fen, single.units) == (fee[i], units[i])


def test_version_is_chosen_by_entry_instant() -> None:
    v1 = Tariff(TariffKind.PER_VISIT, visit_fee_fen=100, version=1, effective_from=at(0, day=1))
    v2 = Tariff(TariffKind.PER_VISIT, visit_fee_fen=200, version=2, effective_from=at(12))
    entries = [epoch_seconds(at(11, 59)), epoch_seconds(at(12))]
    exits = [epoch_seconds(at(13)), epoch_seconds(at(13))]
    fee, _, _, version = price_stays_by_version([v2, v1], entries, exits)
    assert (fee.tolist(), version.tolist()) == ([100, 200], [1, 2])


def test_stay_entering_before_every_version_is_unpriced() -> None:
    v1 = Tariff(TariffKind.PER_VISIT, visit_fee_fen=100, version=1, effective_from=at(12))
    fee, _, _, version = price_stays_by_version([v1], [epoch_seconds(at(11))], [epoch_seconds(at(13))])
    assert (fee[0], version[0]) == (0, 0)


def test_tariff_in_force_prefers_higher_version_on_tie() -> None:
    v1 = Tariff(TariffKind.PER_VISIT, visit_fee_fen=100, version=1, effective_from=at(0))
    v2 = Tariff(TariffKind.PER_VISIT, visit_fee_fen=200, version=2, effective_from=at(0))
    assert tariff_in_force([v1, v2], at(5)) is v2


def test_exit_before_entry_is_refused() -> None:
    with pytest.raises(ValueError):
        price_stay(day_night(), at(10), at(9))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"unit_minutes": 0}, "unit_minutes"),
        ({"unit_minutes": 1441}, "unit_minutes"),
        ({"bands": ()}, "bands"),
        ({"bands": (Band(60, 1), Band(60, 2))}, "bands"),
        ({"bands": (Band(60, -1),)}, "bands[0].unit_fee_fen"),
        ({"free_minutes": -1}, "free_minutes"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
    ],
)
def test_invalid_tariff_names_its_field(kwargs: dict[str, object], field: str) -> None:
    base: dict[str, object] = {"unit_minutes": 60, "bands": (Band(0, 100),)}
    with pytest.raises(TariffError) as caught:
        Tariff(TariffKind.PER_TIME, **{**base, **kwargs})  # type: ignore[arg-type]
    assert caught.value.field == field


@pytest.mark.parametrize("text", ["8:00", "24:00", "12:60", "ab:cd", ""])
def test_band_start_must_be_hh_mm(text: str) -> None:
    with pytest.raises(TariffError):
        Band.parse(text, 100)
