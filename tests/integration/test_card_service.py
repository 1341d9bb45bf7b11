"""CardService on a real platform (gRPC over loopback, SQLite files and PostgreSQL schemas)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from crosspark.clock import ManualClock
from crosspark.platform import Platform
from crosspark.rpc import bad_request_violations
from crosspark.v1 import cards_pb2, cards_pb2_grpc, common_pb2
from tests.support import channel_to, register_lot, running_platform

NOW = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
BLUE, YELLOW = common_pb2.PLATE_COLOR_BLUE, common_pb2.PLATE_COLOR_YELLOW


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def platform(tmp_path: Path, clock: ManualClock) -> Iterator[Platform]:
    with running_platform(tmp_path, clock=clock, scheduler=False) as running:
        yield running


@pytest.fixture
def cards(platform: Platform) -> cards_pb2_grpc.CardServiceStub:
    return cards_pb2_grpc.CardServiceStub(channel_to(platform))


def apply(
    cards: cards_pb2_grpc.CardServiceStub,
    request_id: str = "r1",
    plate: str = "粤B12345",
    color: int = BLUE,
    start_date: str = "2026-11-24",
    months: int = 1,
    scope: tuple[str, ...] = (),
) -> cards_pb2.Card:
    return cards.ApplyCard(
        cards_pb2.ApplyCardRequest(
            request_id=request_id,
            vehicle=common_pb2.VehicleIdentity(plate=plate, color=color),  # type: ignore[arg-type]
            holder_name="张三",
            holder_phone="13800000000",
            start_date=start_date,
            months=months,
            scope_lot_ids=list(scope),
        )
    )


def check(
    stub: cards_pb2_grpc.CardServiceStub,
    lot_id: str,
    plate: str = "粤B12345",
    color: int = BLUE,
    at: datetime | None = None,
) -> cards_pb2.MembershipAnswer:
    request = cards_pb2.CheckMembershipRequest(
        lot_id=lot_id, vehicle=common_pb2.VehicleIdentity(plate=plate, color=color)
    )  # type: ignore[arg-type]
    if at is not None:
        request.at.FromDatetime(at)
    return stub.CheckMembership(request)


def lot_stub(platform: Platform, lot_id: str) -> cards_pb2_grpc.CardServiceStub:
    token, _ = register_lot(platform, lot_id)
    return cards_pb2_grpc.CardServiceStub(channel_to(platform, token))


def code_of(call, *args) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as caught:
        call(*args)
    return caught.value.code()


# --- ApplyCard -----------------------------------------------------------------------------------


def test_apply_card_normalises_the_plate_and_sets_local_validity(cards: cards_pb2_grpc.CardServiceStub) -> None:
    card = apply(cards, plate="粤b 1234o")
    assert card.vehicle.plate == "粤B12340"
    assert card.valid_from.ToDatetime(tzinfo=UTC) == datetime(2026, 11, 23, 16, tzinfo=UTC)
    assert card.valid_until.ToDatetime(tzinfo=UTC) == datetime(2026, 12, 23, 16, tzinfo=UTC)
    assert (card.state, card.version, card.time_zone) == (cards_pb2.CARD_STATE_ACTIVE, 1, "Asia/Shanghai")


def test_apply_card_twice_with_one_request_id_gives_the_same_card(cards: cards_pb2_grpc.CardServiceStub) -> None:
    first, second = apply(cards), apply(cards)
    assert first == second
    assert second.version == 1


def test_reusing_a_request_id_for_another_vehicle_is_invalid(cards: cards_pb2_grpc.CardServiceStub) -> None:
    apply(cards)
    with pytest.raises(grpc.RpcError) as caught:
        apply(cards, plate="粤B99999")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_violations(caught.value)[0][0] == "request_id"


def test_overlapping_card_for_the_same_vehicle_already_exists(cards: cards_pb2_grpc.CardServiceStub) -> None:
    apply(cards, months=2)
    assert code_of(apply, cards, "r2", "粤B12345", BLUE, "2026-12-01") == grpc.StatusCode.ALREADY_EXISTS


def test_a_card_starting_when_the_last_ends_does_not_overlap(cards: cards_pb2_grpc.CardServiceStub) -> None:
    apply(cards)
    assert apply(cards, "r2", start_date="2026-12-24").version == 2


def test_same_plate_in_another_colour_is_another_vehicle(cards: cards_pb2_grpc.CardServiceStub) -> None:
    apply(cards)
    assert apply(cards, "r2", color=YELLOW).vehicle.color == YELLOW


def test_bad_application_is_invalid_with_field_violations(cards: cards_pb2_grpc.CardServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        apply(cards, plate="粤B1234", color=common_pb2.PLATE_COLOR_UNSPECIFIED, months=0)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in bad_request_violations(caught.value)] == ["vehicle.plate", "vehicle.color", "months"]


def test_scope_lots_must_be_registered(platform: Platform, cards: cards_pb2_grpc.CardServiceStub) -> None:
    register_lot(platform, "lot-a")
    with pytest.raises(grpc.RpcError) as caught:
        apply(cards, scope=("lot-a", "lot-x"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_violations(caught.value) == [("scope_lot_ids[1]", "lot 'lot-x' is not registered")]


def test_a_card_that_would_already_have_ended_is_refused(cards: cards_pb2_grpc.CardServiceStub) -> None:
    assert code_of(apply, cards, "r1", "粤B12345", BLUE, "2026-01-01", 1) == grpc.StatusCode.INVALID_ARGUMENT


# --- RenewCard, CancelCard, GetCard, ListCards ---------------------------------------------------


def test_renewal_extends_valid_until_and_bumps_the_version(cards: cards_pb2_grpc.CardServiceStub) -> None:
    card = apply(cards)
    renewed = cards.RenewCard(cards_pb2.RenewCardRequest(card_id=card.card_id, months=2, request_id="n1"))
    assert renewed.valid_until.ToDatetime(tzinfo=UTC) == datetime(2027, 2, 23, 16, tzinfo=UTC)
    assert (renewed.months, renewed.version) == (3, 2)


def test_renewal_is_idempotent_on_request_id(cards: cards_pb2_grpc.CardServiceStub) -> None:
    card = apply(cards)
    request = cards_pb2.RenewCardRequest(card_id=card.card_id, months=1, request_id="n1")
    assert cards.RenewCard(request) == cards.RenewCard(request)


def test_renewing_into_the_next_card_of_the_vehicle_is_refused(cards: cards_pb2_grpc.CardServiceStub) -> None:
    card = apply(cards)
    apply(cards, "r2", start_date="2026-12-24")
    renew = cards_pb2.RenewCardRequest(card_id=card.card_id, months=1, request_id="n1")
    assert code_of(cards.RenewCard, renew) == grpc.StatusCode.ALREADY_EXISTS


def test_renewing_an_unknown_card_is_not_found(cards: cards_pb2_grpc.CardServiceStub) -> None:
    renew = cards_pb2.RenewCardRequest(card_id="card_nope", months=1, request_id="n1")
    assert code_of(cards.RenewCard, renew) == grpc.StatusCode.NOT_FOUND


def test_cancellation_ends_validity_now(cards: cards_pb2_grpc.CardServiceStub) -> None:
    card = apply(cards)
    cancelled = cards.CancelCard(cards_pb2.CancelCardRequest(card_id=card.card_id, reason="sold the car"))
    assert cancelled.state == cards_pb2.CARD_STATE_CANCELLED
    assert cancelled.valid_until.ToDatetime(tzinfo=UTC) == NOW
    assert cancelled.version == 2


def test_renewing_a_cancelled_card_is_a_failed_precondition(cards: cards_pb2_grpc.CardServiceStub) -> None:
    card = apply(cards)
    cards.CancelCard(cards_pb2.CancelCardRequest(card_id=card.card_id))
    renew = cards_pb2.RenewCardRequest(card_id=card.card_id, months=1, request_id="n1")
    assert code_of(cards.RenewCard, renew) == grpc.StatusCode.FAILED_PRECONDITION


def test_a_cancelled_card_frees_the_vehicle_for_a_new_one(cards: cards_pb2_grpc.CardServiceStub) -> None:
    card = apply(cards)
    cards.CancelCard(cards_pb2.CancelCardRequest(card_id=card.card_id))
    assert apply(cards, "r2").card_id != card.card_id


def test_get_card_returns_the_card_and_unknown_is_not_found(cards: cards_pb2_grpc.CardServiceStub) -> None:
    card = apply(cards)
    assert cards.GetCard(cards_pb2.GetCardRequest(card_id=card.card_id)) == card
    assert code_of(cards.GetCard, cards_pb2.GetCardRequest(card_id="card_nope")) == grpc.StatusCode.NOT_FOUND


def test_list_cards_pages_through_every_card_in_id_order(cards: cards_pb2_grpc.CardServiceStub) -> None:
    made = [apply(cards, f"r{i}", plate=f"粤B1234{i}").card_id for i in range(5)]
    seen, token = [], ""
    while True:
        reply = cards.ListCards(cards_pb2.ListCardsRequest(page=common_pb2.PageRequest(page_size=2, page_token=token)))
        seen.extend(c.card_id for c in reply.cards)
        token = reply.next_page_token
        if not token:
            break
    assert seen == sorted(made)


def test_list_cards_filters_by_normalised_plate(cards: cards_pb2_grpc.CardServiceStub) -> None:
    apply(cards, "r1", plate="粤B12345")
    apply(cards, "r2", plate="粤B12345", color=YELLOW)
    apply(cards, "r3", plate="粤B54321")
    reply = cards.ListCards(cards_pb2.ListCardsRequest(plate="粤b·12345"))
    assert {(c.vehicle.plate, c.vehicle.color) for c in reply.cards} == {("粤B12345", BLUE), ("粤B12345", YELLOW)}


def test_a_forged_page_token_is_invalid(cards: cards_pb2_grpc.CardServiceStub) -> None:
    request = cards_pb2.ListCardsRequest(page=common_pb2.PageRequest(page_token="%%%"))
    assert code_of(cards.ListCards, request) == grpc.StatusCode.INVALID_ARGUMENT


# --- CheckMembership -----------------------------------------------------------------------------


def test_membership_answers_monthly_with_card_and_answer_id(
    platform: Platform, cards: cards_pb2_grpc.CardServiceStub
) -> None:
    lot = lot_stub(platform, "lot-a")
    card = apply(cards)
    answer = check(lot, "lot-a")
    assert (answer.status, answer.card_id, answer.card_version) == (
        cards_pb2.MEMBERSHIP_STATUS_MONTHLY,
        card.card_id,
        1,
    )
    assert answer.valid_until == card.valid_until
    assert answer.answer_id.startswith("ans_")


def test_every_answer_has_its_own_id(platform: Platform, cards: cards_pb2_grpc.CardServiceStub) -> None:
    lot = lot_stub(platform, "lot-a")
    assert check(lot, "lot-a").answer_id != check(lot, "lot-a").answer_id


def test_membership_of_an_unknown_vehicle_is_not_member(platform: Platform) -> None:
    answer = check(lot_stub(platform, "lot-a"), "lot-a")
    assert (answer.status, answer.card_id) == (cards_pb2.MEMBERSHIP_STATUS_NOT_MEMBER, "")


def test_membership_after_validity_is_expired(platform: Platform, cards: cards_pb2_grpc.CardServiceStub) -> None:
    lot = lot_stub(platform, "lot-a")
    apply(cards)
    assert check(lot, "lot-a", at=datetime(2026, 12, 23, 16, tzinfo=UTC)).status == cards_pb2.MEMBERSHIP_STATUS_EXPIRED


def test_membership_out_of_scope_is_not_valid_at_lot(platform: Platform, cards: cards_pb2_grpc.CardServiceStub) -> None:
    lot_b = lot_stub(platform, "lot-b")
    register_lot(platform, "lot-a")
    apply(cards, scope=("lot-a",))
    assert check(lot_b, "lot-b").status == cards_pb2.MEMBERSHIP_STATUS_NOT_VALID_AT_LOT


def test_membership_of_a_cancelled_card_is_cancelled(platform: Platform, cards: cards_pb2_grpc.CardServiceStub) -> None:
    lot = lot_stub(platform, "lot-a")
    card = apply(cards)
    cards.CancelCard(cards_pb2.CancelCardRequest(card_id=card.card_id))
    assert check(lot, "lot-a").status == cards_pb2.MEMBERSHIP_STATUS_CANCELLED


def test_membership_normalises_the_plate_read_at_the_gate(
    platform: Platform, cards: cards_pb2_grpc.CardServiceStub
) -> None:
    lot = lot_stub(platform, "lot-a")
    apply(cards)
    assert check(lot, "lot-a", plate="粤B·1234５").status == cards_pb2.MEMBERSHIP_STATUS_MONTHLY


def test_a_lot_may_check_only_as_itself(platform: Platform) -> None:
    lot = lot_stub(platform, "lot-a")
    register_lot(platform, "lot-b")
    assert code_of(check, lot, "lot-b") == grpc.StatusCode.PERMISSION_DENIED


def test_a_lot_may_not_apply_for_cards(platform: Platform) -> None:
    assert code_of(apply, lot_stub(platform, "lot-a")) == grpc.StatusCode.PERMISSION_DENIED


def test_checking_an_invalid_plate_is_invalid_argument(platform: Platform) -> None:
    assert code_of(check, lot_stub(platform, "lot-a"), "lot-a", "测A12345") == grpc.StatusCode.INVALID_ARGUMENT


# --- versions ------------------------------------------------------------------------------------


def test_versions_count_every_change_without_gaps(cards: cards_pb2_grpc.CardServiceStub) -> None:
    card = apply(cards)
    code_of(apply, cards, "r2", "粤B12345", BLUE)  # refused: takes no version
    cards.RenewCard(cards_pb2.RenewCardRequest(card_id=card.card_id, months=1, request_id="n1"))
    other = apply(cards, "r3", plate="粤B54321")
    assert other.version == 3


@pytest.mark.postgres
def test_parallel_applications_on_postgresql_get_versions_1_to_n(tmp_path: Path, pg_schema_url: str) -> None:
    threads, per_thread = 8, 10
    with running_platform(tmp_path, db_url=pg_schema_url, scheduler=False) as running:
        errors: list[BaseException] = []
        made: list[cards_pb2.Card] = []

        def worker(index: int) -> None:
            stub = cards_pb2_grpc.CardServiceStub(channel_to(running))
            try:
                for i in range(per_thread):
                    made.append(apply(stub, f"t{index}-{i}", plate=f"粤B{index}{i:04d}"))
                    # A refused application rolls back between the others: it must leave no gap.
                    assert code_of(apply, stub, f"x{index}-{i}", f"粤B{index}{i:04d}") == grpc.StatusCode.ALREADY_EXISTS
            except BaseException as error:  # surfaced below
                errors.append(error)

        workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert not errors
        assert sorted(c.version for c in made) == list(range(1, threads * per_thread + 1))


def test_the_same_request_raced_from_many_threads_makes_one_card(db_url: str, tmp_path: Path) -> None:
    with running_platform(tmp_path, db_url=db_url, scheduler=False) as running:
        results: list[str] = []

        def worker() -> None:
            results.append(apply(cards_pb2_grpc.CardServiceStub(channel_to(running))).card_id)

        workers = [threading.Thread(target=worker) for _ in range(6)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert len(results) == 6 and len(set(results)) == 1


def test_overlap_is_refused_on_every_backend(db_url: str, tmp_path: Path) -> None:
    with running_platform(tmp_path, db_url=db_url, scheduler=False) as running:
        stub = cards_pb2_grpc.CardServiceStub(channel_to(running))
        apply(stub)
        assert code_of(apply, stub, "r2", "粤B12345", BLUE, "2026-12-01") == grpc.StatusCode.ALREADY_EXISTS


def test_now_moves_with_the_platform_clock(clock: ManualClock, cards: cards_pb2_grpc.CardServiceStub) -> None:
    clock.advance(timedelta(days=2))
    assert apply(cards, start_date="").start_date == "2026-11-26"


def test_a_check_far_from_the_platform_clock_is_invalid(platform: Platform) -> None:
    lot = lot_stub(platform, "lot-a")
    assert code_of(check, lot, "lot-a", "粤B12345", BLUE, NOW + timedelta(days=400)) == grpc.StatusCode.INVALID_ARGUMENT


def test_an_overlong_card_id_is_invalid(cards: cards_pb2_grpc.CardServiceStub) -> None:
    assert code_of(cards.GetCard, cards_pb2.GetCardRequest(card_id="c" * 41)) == grpc.StatusCode.INVALID_ARGUMENT
