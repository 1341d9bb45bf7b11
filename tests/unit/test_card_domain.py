"""Card rules without I/O: validity, membership answers, keyed hashes, application checks, ids."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from card_service.domain import (
    Card,
    CardStanding,
    CardState,
    MembershipStatus,
    add_months,
    cancelled_until,
    check_application,
    decide_membership,
    keyed_hasher,
    monotonic_ulids,
    ulid,
    validity,
    vehicle_hash,
)
from crosspark.errors import InvalidArgument
from crosspark.identity import PlateColor

SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 24, tzinfo=UTC)


def standing(
    card_id: str, start: datetime, end: datetime, *, state: CardState = CardState.ACTIVE, here: bool = True
) -> CardStanding:
    return CardStanding(card_id, state, start, end, here)


def test_validity_runs_from_local_midnight_to_the_same_day_months_later() -> None:
    valid_from, valid_until = validity(date(2026, 11, 24), 1, SHANGHAI)
    assert valid_from == datetime(2026, 11, 24, tzinfo=SHANGHAI)
    assert valid_until == datetime(2026, 12, 24, tzinfo=SHANGHAI)


def test_validity_instants_are_utc() -> None:
    valid_from, _ = validity(date(2026, 11, 24), 1, SHANGHAI)
    assert valid_from == datetime(2026, 11, 23, 16, tzinfo=UTC)


def test_a_month_from_the_31st_ends_on_the_last_day_of_a_shorter_month() -> None:
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)


def test_renewed_months_count_from_the_start_date_so_the_end_never_drifts() -> None:
    assert add_months(date(2026, 1, 31), 2) == date(2026, 3, 31)


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1)), st.integers(1, 120))
def test_add_months_moves_the_month_by_exactly_that_many(day: date, months: int) -> None:
    later = add_months(day, months)
    assert (later.year * 12 + later.month) - (day.year * 12 + day.month) == months
    assert later.day <= day.day


def test_no_cards_is_not_member() -> None:
    assert decide_membership([], T0) == (MembershipStatus.NOT_MEMBER, None)


def test_card_in_force_here_is_monthly() -> None:
    card = standing("c1", T0 - timedelta(days=1), T0 + timedelta(days=1))
    assert decide_membership([card], T0) == (MembershipStatus.MONTHLY, card)


def test_validity_is_half_open() -> None:
    card = standing("c1", T0 - timedelta(days=30), T0)
    assert decide_membership([card], T0)[0] is MembershipStatus.EXPIRED
    assert decide_membership([card], T0 - timedelta(microseconds=1))[0] is MembershipStatus.MONTHLY


def test_card_out_of_scope_is_not_valid_at_lot() -> None:
    card = standing("c1", T0 - timedelta(days=1), T0 + timedelta(days=1), here=False)
    assert decide_membership([card], T0) == (MembershipStatus.NOT_VALID_AT_LOT, card)


def test_card_not_yet_begun_is_expired() -> None:
    card = standing("c1", T0 + timedelta(days=1), T0 + timedelta(days=31))
    assert decide_membership([card], T0) == (MembershipStatus.EXPIRED, card)


def test_cancelled_card_is_cancelled() -> None:
    card = standing("c1", T0 - timedelta(days=3), T0 - timedelta(days=1), state=CardState.CANCELLED)
    assert decide_membership([card], T0) == (MembershipStatus.CANCELLED, card)


def test_card_in_force_beats_a_cancelled_one() -> None:
    old = standing("old", T0 - timedelta(days=9), T0 - timedelta(days=5), state=CardState.CANCELLED)
    new = standing("new", T0 - timedelta(days=1), T0 + timedelta(days=29))
    assert decide_membership([old, new], T0) == (MembershipStatus.MONTHLY, new)


def test_card_in_force_here_beats_one_in_force_elsewhere() -> None:
    elsewhere = standing("a", T0 - timedelta(days=1), T0 + timedelta(days=1), here=False)
    here = standing("b", T0 - timedelta(days=1), T0 + timedelta(days=1))
    assert decide_membership([elsewhere, here], T0) == (MembershipStatus.MONTHLY, here)


def test_of_ended_cards_the_last_to_end_answers() -> None:
    expired = standing("expired", T0 - timedelta(days=60), T0 - timedelta(days=2))
    cancelled = standing("cancelled", T0 - timedelta(days=9), T0 - timedelta(days=5), state=CardState.CANCELLED)
    assert decide_membership([cancelled, expired], T0) == (MembershipStatus.EXPIRED, expired)


def test_vehicle_hash_is_hmac_sha256_of_plate_bar_colour_name() -> None:
    key = bytes(range(32))
    expected = hmac.new(key, "粤B12345|yellow_green".encode(), hashlib.sha256).digest()
    assert vehicle_hash(key, "粤B12345", PlateColor.YELLOW_GREEN) == expected


def test_the_same_plate_in_two_colours_hashes_differently() -> None:
    key = bytes(32)
    assert vehicle_hash(key, "粤B12345", PlateColor.BLUE) != vehicle_hash(key, "粤B12345", PlateColor.YELLOW)


def _application(**changes: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "request_id": "r1",
        "plate": "粤B 12345",
        "color": PlateColor.BLUE,
        "holder_name": "张三",
        "holder_phone": "138-0000-0000",
        "start_date": "2026-11-24",
        "months": 1,
        "scope": [],
        "today": date(2026, 11, 24),
    }
    fields.update(changes)
    return fields


def test_application_normalises_plate_and_phone() -> None:
    application = check_application(**_application())  # type: ignore[arg-type]
    assert (application.plate, application.holder_phone) == ("粤B12345", "13800000000")


def test_application_without_start_date_starts_today() -> None:
    assert check_application(**_application(start_date="")).start_date == date(2026, 11, 24)  # type: ignore[arg-type]


def test_application_lists_every_broken_field() -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_application(
            **_application(
                request_id="",
                plate="粤B1234",
                color=None,
                holder_name=" ",  # type: ignore[arg-type]
                holder_phone="x",
                start_date="24/11/2026",
                months=13,
                scope=["bad id"],
            )
        )
    fields = [f for f, _ in caught.value.violations]
    assert fields == [
        "request_id",
        "vehicle.plate",
        "vehicle.color",
        "holder_name",
        "holder_phone",
        "start_date",
        "months",
        "scope_lot_ids[0]",
    ]


def test_plate_violation_names_the_grammar_rule() -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_application(**_application(plate="京A1234港"))  # type: ignore[arg-type]
    assert "rule: cross_border" in caught.value.violations[0][1]


def test_scope_is_deduplicated_in_order() -> None:
    assert check_application(**_application(scope=["b", "a", "b"])).scope == ("b", "a")  # type: ignore[arg-type]


def _card(valid_from: datetime, valid_until: datetime) -> Card:
    return Card(
        "c1",
        "粤B12345",
        PlateColor.BLUE,
        "张三",
        "13800000000",
        date(2026, 11, 24),
        1,
        "Asia/Shanghai",
        valid_from,
        valid_until,
        (),
        CardState.ACTIVE,
        1,
        T0,
        T0,
    )


def test_cancelling_ends_validity_at_the_cancellation_instant() -> None:
    card = _card(T0 - timedelta(days=1), T0 + timedelta(days=29))
    assert cancelled_until(card, T0) == T0


def test_cancelling_a_card_before_its_start_leaves_an_empty_interval() -> None:
    card = _card(T0 + timedelta(days=1), T0 + timedelta(days=31))
    assert cancelled_until(card, T0) == card.valid_from


def test_ulids_sort_by_time() -> None:
    assert ulid(T0, b"\xff" * 10) < ulid(T0 + timedelta(milliseconds=1), bytes(10))


def test_ulid_is_26_crockford_characters() -> None:
    value = ulid(T0)
    assert len(value) == 26 and set(value) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def test_monotonic_ulids_increase() -> None:
    source = monotonic_ulids(T0)
    values = [next(source) for _ in range(2000)]
    assert values == sorted(values) and len(set(values)) == 2000


@given(st.binary(max_size=100), st.binary(max_size=200))
def test_keyed_hasher_is_hmac_sha256(key: bytes, message: bytes) -> None:
    assert keyed_hasher(key)(message) == hmac.new(key, message, hashlib.sha256).digest()
