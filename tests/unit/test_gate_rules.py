"""The gate's rules (DESIGN section 5), as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from crosspark.identity import IdentitySource, PlateColor, VehicleIdentity
from lot_node.gate import (
    ExitMatch,
    Flag,
    Membership,
    MembershipAnswer,
    OpenStay,
    VehicleKind,
    confusable_variants,
    decide_entry,
    decide_exit,
    match_exit,
    resolve_identity,
)

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
CAR = VehicleIdentity("粤B12345", PlateColor.BLUE, IdentitySource.CAMERA, 0.9)
MONTHLY = MembershipAnswer(Membership.MONTHLY, "card_1", T0 + timedelta(days=30), "ans_1")
NOT_MEMBER = MembershipAnswer(Membership.NOT_MEMBER)


def per_hour(start: datetime, end: datetime) -> int:
    """500 fen per started hour."""
    minutes = (end - start).total_seconds() / 60
    return 500 * -int(-minutes // 60)


def stay(
    plate: str = "粤B12345",
    kind: VehicleKind = VehicleKind.MONTHLY,
    valid_until: datetime | None = None,
    stay_id: str = "s1",
    entered_at: datetime = T0,
) -> OpenStay:
    card = "card_1" if kind is VehicleKind.MONTHLY else ""
    return OpenStay(stay_id, plate, PlateColor.BLUE, kind, card, valid_until, entered_at)


def test_variants_substitute_one_confusable_character_outside_the_province() -> None:
    variants = confusable_variants("粤B80")
    assert set(variants) == {"粤880", "粤BB0", "粤B8D", "粤B8Q"}


def test_exact_open_stay_is_matched_without_flag() -> None:
    match = match_exit("粤B12345", PlateColor.BLUE, [stay()])
    assert match.stay is not None and not match.fuzzy


def test_one_confusable_open_stay_is_matched_fuzzily() -> None:
    match = match_exit("粤B1234S", PlateColor.BLUE, [stay("粤B12345")])
    assert match.stay is not None and match.stay.plate == "粤B12345" and match.fuzzy


def test_two_confusable_open_stays_match_none() -> None:
    match = match_exit("粤B1234S", PlateColor.BLUE, [stay("粤B12345", stay_id="a"), stay("粤B1Z34S", stay_id="b")])
    assert match.stay is None


def test_other_colour_does_not_match() -> None:
    s = OpenStay("s1", "粤B12345", PlateColor.YELLOW, VehicleKind.TEMPORARY, "", None, T0)
    assert match_exit("粤B12345", PlateColor.BLUE, [s]).stay is None


def test_camera_wins_and_disagreement_is_flagged() -> None:
    etc = VehicleIdentity("粤B99999", PlateColor.BLUE, IdentitySource.ETC)
    identity, flags = resolve_identity(CAR, etc)
    assert identity == CAR and flags == {Flag.IDENTITY_MISMATCH}


def test_etc_alone_is_used_without_flag() -> None:
    etc = VehicleIdentity("粤B99999", PlateColor.BLUE, IdentitySource.ETC)
    assert resolve_identity(None, etc) == (etc, frozenset())


def test_entry_with_valid_card_is_a_reported_monthly_stay() -> None:
    decision = decide_entry("p1", CAR, T0, MONTHLY, [], [])
    assert decision.kind is VehicleKind.MONTHLY and decision.report and decision.open
    assert decision.new_stay is not None and decision.new_stay.card_id == "card_1"


def test_entry_without_card_is_a_local_temporary_stay() -> None:
    decision = decide_entry("p1", CAR, T0, NOT_MEMBER, [], [])
    assert decision.kind is VehicleKind.TEMPORARY and not decision.report and decision.open


def test_second_entry_abandons_the_open_stay_and_reports_it_when_monthly() -> None:
    decision = decide_entry("p2", CAR, T0 + timedelta(hours=3), MONTHLY, [stay()], ["x1"])
    (closure,) = decision.closures
    assert closure.state == "ABANDONED" and closure.report and Flag.ABANDONED in closure.flags
    assert closure.exit_passage_id == "x1"


def test_offline_entry_is_flagged() -> None:
    answer = MembershipAnswer(Membership.MONTHLY, "card_1", T0 + timedelta(days=1), offline=True)
    assert Flag.OFFLINE_DECISION in decide_entry("p1", CAR, T0, answer, [], []).flags


def test_temporary_exit_pays_the_lots_tariff_before_opening() -> None:
    decision = decide_exit(
        "e1", CAR, T0 + timedelta(minutes=90), ExitMatch(stay(kind=VehicleKind.TEMPORARY)), None, per_hour, 0
    )
    assert decision.fee_due_fen == 1000 and not decision.open and not decision.report


def test_monthly_exit_with_card_valid_opens_free() -> None:
    decision = decide_exit(
        "e1", CAR, T0 + timedelta(hours=5), ExitMatch(stay(valid_until=T0 + timedelta(days=30))), MONTHLY, per_hour, 0
    )
    assert decision.open and decision.fee_due_fen == 0 and decision.report and decision.card_id == "card_1"


def test_card_ending_inside_the_stay_splits_it() -> None:
    end = T0 + timedelta(hours=2)
    answer = MembershipAnswer(Membership.EXPIRED, "card_1", end)
    decision = decide_exit(
        "e1", CAR, T0 + timedelta(hours=3, minutes=30), ExitMatch(stay(valid_until=end)), answer, per_hour, 0
    )
    assert Flag.CARD_ENDED_IN_STAY in decision.flags
    assert decision.card_valid_until == end and decision.fee_due_fen == 1000 and not decision.open
    assert decision.closures[0].split_at == end and decision.report


def test_unknown_membership_at_exit_uses_the_card_end_known_at_entry() -> None:
    end = T0 + timedelta(hours=1)
    answer = MembershipAnswer(Membership.UNKNOWN, offline=True)
    decision = decide_exit("e1", CAR, T0 + timedelta(hours=2), ExitMatch(stay(valid_until=end)), answer, per_hour, 0)
    assert decision.card_valid_until == end and {Flag.OFFLINE_DECISION, Flag.CARD_ENDED_IN_STAY} <= decision.flags


def test_exit_without_entry_pays_the_flat_fee() -> None:
    decision = decide_exit("e1", CAR, T0, ExitMatch(None), NOT_MEMBER, per_hour, 2000)
    assert Flag.EXIT_WITHOUT_ENTRY in decision.flags and decision.fee_due_fen == 2000 and not decision.open
    assert decision.stay_id == "e1" and not decision.report


def test_member_exit_without_entry_leaves_free_and_is_reported() -> None:
    decision = decide_exit("e1", CAR, T0, ExitMatch(None), MONTHLY, per_hour, 2000)
    assert decision.open and decision.report and decision.kind is VehicleKind.MONTHLY


def test_fuzzy_exit_is_flagged() -> None:
    decision = decide_exit(
        "e1", CAR, T0 + timedelta(minutes=10), ExitMatch(stay(kind=VehicleKind.TEMPORARY), True), None, per_hour, 0
    )
    assert Flag.FUZZY_MATCHED in decision.flags
