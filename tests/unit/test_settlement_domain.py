"""Passage rules of DESIGN section 6, decided without a database."""

from __future__ import annotations

import uuid

from settlement.domain import ENTRY, EXIT, FLAG_CARD_ENDED_IN_STAY, Ack, HeldEntry, Passage, check_passage, decide

NOW = 1_790_000_000 * 1_000_000
HOUR = 3600 * 1_000_000


def entry(at: int = NOW - 2 * HOUR, **kw: object) -> Passage:
    pid = str(uuid.uuid4())
    fields: dict[str, object] = dict(
        passage_id=pid,
        lot_id="lot-a",
        gate_id="g",
        direction=ENTRY,
        plate="粤B12345",
        color="blue",
        source="camera",
        occurred_us=at,
        card_id="card_1",
        stay_id=pid,
    )
    fields.update(kw)
    return Passage(**fields)  # type: ignore[arg-type]


def exit_of(e: Passage, at: int = NOW - HOUR, **kw: object) -> Passage:
    fields: dict[str, object] = dict(
        passage_id=str(uuid.uuid4()),
        lot_id=e.lot_id,
        gate_id="g",
        direction=EXIT,
        plate=e.plate,
        color=e.color,
        source="camera",
        occurred_us=at,
        card_id=e.card_id,
        stay_id=e.passage_id,
        entry_passage_id=e.passage_id,
    )
    fields.update(kw)
    return Passage(**fields)  # type: ignore[arg-type]


def test_exit_joins_entry_of_same_batch_in_any_order() -> None:
    e = entry()
    decisions = decide([exit_of(e), e], "lot-a", NOW, {}, set())
    assert [d.ack for d in decisions] == [Ack.ACCEPTED, Ack.ACCEPTED]
    assert decisions[0].stay is not None and decisions[0].stay.entry_us == e.occurred_us


def test_exit_joins_entry_already_held() -> None:
    e = entry()
    held = {e.passage_id: HeldEntry("lot-a", ENTRY, e.occurred_us, "card_1", e.plate, e.color)}
    [decision] = decide([exit_of(e)], "lot-a", NOW, held, set())
    assert decision.stay is not None and decision.stay.card_id == "card_1"


def test_uppercase_passage_id_is_not_canonical() -> None:
    e = entry()
    e.passage_id = e.passage_id.upper()
    assert "canonical" in check_passage(e, "lot-a", NOW)


def test_unspecified_colour_is_malformed_identity() -> None:
    assert "malformed identity" in check_passage(entry(color=""), "lot-a", NOW)


def test_card_ended_in_stay_settles_until_card_end() -> None:
    e = entry(at=NOW - 3 * HOUR)
    x = exit_of(e, at=NOW, flags=1 << FLAG_CARD_ENDED_IN_STAY, card_valid_until_us=NOW - 2 * HOUR)
    [_, decision] = decide([e, x], "lot-a", NOW, {}, set())
    assert decision.stay is not None and decision.stay.settle_to_us == NOW - 2 * HOUR


def test_card_ended_flag_without_instant_is_rejected() -> None:
    e = entry()
    x = exit_of(e, flags=1 << FLAG_CARD_ENDED_IN_STAY)
    assert decide([e, x], "lot-a", NOW, {}, set())[1].ack is Ack.REJECTED


def test_temporary_stay_leaves_no_settled_stay() -> None:
    e = entry(card_id="")
    assert decide([e, exit_of(e, card_id="")], "lot-a", NOW, {}, set())[1].stay is None


def test_entry_named_by_exit_must_be_an_entry() -> None:
    e = entry()
    held = {e.passage_id: HeldEntry("lot-a", EXIT, e.occurred_us, "", e.plate, e.color)}
    assert decide([exit_of(e)], "lot-a", NOW, held, set())[0].ack is Ack.REJECTED


def test_rejected_passage_is_not_remembered_as_held() -> None:
    held: dict[str, HeldEntry] = {}
    bad = entry(plate="nonsense")
    decide([bad], "lot-a", NOW, held, set())
    assert bad.passage_id not in held


def test_passage_from_a_broken_clock_is_rejected() -> None:
    assert "2000-01-01" in check_passage(entry(at=5), "lot-a", NOW)
