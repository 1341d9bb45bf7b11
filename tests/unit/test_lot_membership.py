"""Membership modes at the gate (DESIGN section 4): deadline and fallback rules."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from crosspark.identity import PlateColor, VehicleIdentity
from lot_node.gate import Membership, MembershipAnswer
from lot_node.membership import MembershipDecider, Mode

CAR = VehicleIdentity("粤B12345", PlateColor.BLUE)
AT = datetime(2026, 11, 24, tzinfo=UTC)
CACHED = MembershipAnswer(Membership.MONTHLY, "card_c")
ONLINE = MembershipAnswer(Membership.MONTHLY, "card_o", answer_id="ans_1")


def cache(_identity: VehicleIdentity, _at: datetime) -> MembershipAnswer:
    return CACHED


def failing(_identity: VehicleIdentity, _at: datetime, _timeout: float) -> MembershipAnswer:
    raise ConnectionError("platform down")


def answering(_identity: VehicleIdentity, _at: datetime, timeout: float) -> MembershipAnswer:
    assert 0 < timeout <= 0.3
    return ONLINE


def test_cached_mode_never_calls_the_platform() -> None:
    decider = MembershipDecider(Mode.CACHED, cached=cache, online=failing)
    assert decider.answer(CAR, AT) == CACHED


def test_online_answer_in_time_is_used() -> None:
    assert MembershipDecider(Mode.ONLINE, online=answering).answer(CAR, AT) == ONLINE


def test_online_failure_is_an_unknown_offline_answer() -> None:
    answer = MembershipDecider(Mode.ONLINE, online=failing).answer(CAR, AT)
    assert answer.status is Membership.UNKNOWN and answer.offline


def test_fallback_failure_uses_the_cache_flagged_offline() -> None:
    answer = MembershipDecider(Mode.ONLINE_FALLBACK, cached=cache, online=failing).answer(CAR, AT)
    assert answer.card_id == "card_c" and answer.offline


def test_deadline_already_spent_does_not_call_the_platform() -> None:
    calls = []

    def online(identity: VehicleIdentity, at: datetime, timeout: float) -> MembershipAnswer:
        calls.append(timeout)
        return ONLINE

    decider = MembershipDecider(Mode.ONLINE_FALLBACK, deadline_s=0.3, cached=cache, online=online)
    answer = decider.answer(CAR, AT, started=time.monotonic() - 1.0)
    assert calls == [] and answer.offline


def test_reachability_is_reported() -> None:
    seen: list[bool] = []
    MembershipDecider(Mode.ONLINE, online=failing, reachability=seen.append).answer(CAR, AT)
    MembershipDecider(Mode.ONLINE, online=answering, reachability=seen.append).answer(CAR, AT)
    assert seen == [False, True]


def test_cached_modes_need_the_cache() -> None:
    with pytest.raises(ValueError, match="card cache"):
        MembershipDecider(Mode.ONLINE_FALLBACK, online=answering)
