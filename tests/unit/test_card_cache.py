"""The lot's card cache fed by WatchCards messages: snapshots, deltas, lookups, persistence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from card_service.domain import CardState, MembershipStatus, vehicle_hash
from crosspark.identity import PlateColor
from crosspark.v1 import cards_pb2
from lot_node import card_cache
from lot_node.card_cache import CardCache

KEY = bytes(range(32))
T0 = datetime(2026, 11, 24, tzinfo=UTC)


def stamp(at: datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(at)
    return value


def entry(
    plate: str,
    card_id: str,
    version: int,
    *,
    start: datetime = T0 - timedelta(days=1),
    days: int = 30,
    state: int = cards_pb2.CARD_STATE_ACTIVE,
    here: bool = True,
    color: PlateColor = PlateColor.BLUE,
) -> cards_pb2.CardListEntry:
    return cards_pb2.CardListEntry(
        vehicle_hash=vehicle_hash(KEY, plate, color),
        card_id=card_id,
        valid_from=stamp(start),
        valid_until=stamp(start + timedelta(days=days)),
        state=state,
        valid_at_lot=here,
        version=version,  # type: ignore[arg-type]
    )


def snapshot(version: int, entries: list[cards_pb2.CardListEntry], chunk: int = 2) -> list[cards_pb2.CardListMessage]:
    messages = [
        cards_pb2.CardListMessage(snapshot_begin=cards_pb2.SnapshotBegin(version=version, entry_count=len(entries)))
    ]
    for i in range(0, len(entries), chunk):
        messages.append(
            cards_pb2.CardListMessage(chunk=cards_pb2.CardListChunk(entries=entries[i : i + chunk], version=version))
        )
    messages.append(cards_pb2.CardListMessage(snapshot_end=cards_pb2.SnapshotEnd(version=version)))
    return messages


def delta(version: int, *entries: cards_pb2.CardListEntry) -> cards_pb2.CardListMessage:
    return cards_pb2.CardListMessage(chunk=cards_pb2.CardListChunk(entries=list(entries), version=version))


def fed(*messages: cards_pb2.CardListMessage) -> CardCache:
    cache = CardCache(KEY)
    for message in messages:
        cache.apply(message)
    return cache


def test_snapshot_fills_the_cache_at_its_version() -> None:
    cache = fed(*snapshot(5, [entry("粤B11111", "c1", 1), entry("粤B22222", "c2", 5), entry("粤B33333", "c3", 3)]))
    assert (len(cache), cache.version) == (3, 5)


def test_lookup_by_the_hash_of_plate_and_colour_finds_the_card() -> None:
    cache = fed(*snapshot(2, [entry("粤B11111", "c1", 1), entry("粤B22222", "c2", 2)]))
    found = cache.lookup(cache.vehicle_hash("粤B22222", PlateColor.BLUE), T0)
    assert found is not None and (found.card_id, found.state, found.valid_at_lot) == ("c2", CardState.ACTIVE, True)


def test_lookup_of_another_colour_finds_nothing() -> None:
    cache = fed(*snapshot(1, [entry("粤B11111", "c1", 1)]))
    assert cache.lookup(cache.vehicle_hash("粤B11111", PlateColor.YELLOW), T0) is None


def test_lookups_answer_from_the_old_list_until_the_snapshot_ends() -> None:
    cache = fed(*snapshot(1, [entry("粤B11111", "c1", 1)]))
    begin, *chunks, end = snapshot(2, [entry("粤B22222", "c2", 2)])
    cache.apply(begin)
    for message in chunks:
        cache.apply(message)
    assert cache.lookup(cache.vehicle_hash("粤B11111", PlateColor.BLUE), T0) is not None
    cache.apply(end)
    assert cache.lookup(cache.vehicle_hash("粤B11111", PlateColor.BLUE), T0) is None
    assert cache.version == 2


def test_a_delta_updates_a_card_in_place() -> None:
    cache = fed(*snapshot(1, [entry("粤B11111", "c1", 1)]))
    applied = cache.apply(delta(2, entry("粤B11111", "c1", 2, state=cards_pb2.CARD_STATE_CANCELLED)))
    vehicle = cache.vehicle_hash("粤B11111", PlateColor.BLUE)
    assert cache.decide(vehicle, T0)[0] is MembershipStatus.CANCELLED
    assert (len(cache), cache.version, applied.kind, applied.rows[0]["state"]) == (1, 2, "delta", "CANCELLED")


def test_a_delta_adds_a_new_card() -> None:
    cache = fed(*snapshot(1, [entry("粤B11111", "c1", 1)]))
    cache.apply(delta(2, entry("粤B22222", "c2", 2)))
    assert len(cache) == 2 and cache.lookup(cache.vehicle_hash("粤B22222", PlateColor.BLUE), T0) is not None


def test_a_vehicle_with_an_expired_and_a_current_card_is_monthly() -> None:
    old = entry("粤B11111", "c1", 1, start=T0 - timedelta(days=60), days=30)
    cache = fed(*snapshot(1, [old]), delta(2, entry("粤B11111", "c2", 2)))
    status, card = cache.decide(cache.vehicle_hash("粤B11111", PlateColor.BLUE), T0)
    assert (status, card and card.card_id) == (MembershipStatus.MONTHLY, "c2")


def test_cache_answers_not_valid_at_lot_for_out_of_scope_cards() -> None:
    cache = fed(*snapshot(1, [entry("粤B11111", "c1", 1, here=False)]))
    assert cache.decide(cache.vehicle_hash("粤B11111", PlateColor.BLUE), T0)[0] is MembershipStatus.NOT_VALID_AT_LOT


def test_heartbeat_moves_the_version_held() -> None:
    cache = fed(*snapshot(1, []), cards_pb2.CardListMessage(heartbeat=cards_pb2.Heartbeat(version=4)))
    assert cache.version == 4


def test_deltas_merge_into_the_arrays_when_the_overlay_grows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(card_cache, "MERGE_AT", 3)
    cache = fed(*snapshot(1, [entry("粤B00000", "c0", 1)]))
    for i in range(1, 6):
        cache.apply(delta(1 + i, entry(f"粤B0000{i}", f"c{i}", 1 + i)))
    assert len(cache) == 6
    assert all(cache.lookup(cache.vehicle_hash(f"粤B0000{i}", PlateColor.BLUE), T0) is not None for i in range(6))


def test_export_and_load_give_the_same_answers() -> None:
    cache = fed(
        *snapshot(3, [entry("粤B11111", "c1", 1), entry("粤B22222", "c2", 3)]), delta(4, entry("粤B33333", "c3", 4))
    )
    loaded = CardCache.load(cache.export(), KEY)
    vehicle = cache.vehicle_hash("粤B33333", PlateColor.BLUE)
    assert (len(loaded), loaded.version, loaded.lookup(vehicle, T0)) == (3, 4, cache.lookup(vehicle, T0))


def test_bytes_round_trip_keeps_every_card() -> None:
    cache = fed(*snapshot(2, [entry("粤B11111", "c1", 1), entry("粤B22222", "card_long_id_2", 2)]))
    loaded = CardCache.from_bytes(cache.to_bytes(), KEY)
    assert sorted(r["card_id"] for r in loaded.rows()) == ["c1", "card_long_id_2"] and loaded.version == 2


def test_rows_round_trip_through_the_lot_store_format() -> None:
    cache = fed(
        *snapshot(2, [entry("粤B11111", "c1", 1), entry("粤B22222", "c2", 2, state=cards_pb2.CARD_STATE_CANCELLED)])
    )
    rows = list(cache.rows())
    assert {r["state"] for r in rows} == {"ACTIVE", "CANCELLED"}
    again = CardCache.from_rows(rows, 2, KEY)
    assert sorted(again.rows(), key=lambda r: r["card_id"]) == sorted(rows, key=lambda r: r["card_id"])


def test_a_hash_of_the_wrong_length_is_refused() -> None:
    bad = cards_pb2.CardListEntry(vehicle_hash=b"short", card_id="c1", version=1)
    with pytest.raises(ValueError, match="vehicle_hash"):
        fed(*snapshot(1, [bad]))


def test_a_cache_without_a_key_cannot_hash_plates() -> None:
    with pytest.raises(ValueError):
        CardCache().vehicle_hash("粤B11111", PlateColor.BLUE)


def test_platform_card_ids_take_under_fifty_bytes_a_card() -> None:
    entries = [entry(f"粤B{i:05d}", f"card_01M861TQV14XPMPD4T{i:08d}", i + 1) for i in range(2000)]
    cache = fed(*snapshot(2000, entries, chunk=500))
    assert cache.nbytes / len(cache) <= 50
    assert cache.lookup(cache.vehicle_hash("粤B01234", PlateColor.BLUE), T0).card_id == (  # type: ignore[union-attr]
        "card_01M861TQV14XPMPD4T00001234"
    )


@pytest.mark.parametrize(
    "card_id",
    [
        "card_7ZZZZZZZZZZZZZZZZZZZZZZZZZ",
        "card_00000000000000000000000000",
        "card_8ZZZZZZZZZZZZZZZZZZZZZZZZZ",
        "card_01m861tqv14xpmpd4t00001234",
        "card_01M861TQV14XPMPD4T0000123",
        "card_01M861TQV14XPMPD4T000012345",
        "CARD_01M861TQV14XPMPD4T00001234",
        "c1",
        "卡_01",
    ],
)
def test_every_card_id_comes_back_as_given(card_id: str) -> None:
    cache = fed(*snapshot(2, [entry("粤B11111", card_id, 1), entry("粤B22222", "card_01M861TQV14XPMPD4T00000001", 2)]))
    found = cache.lookup(cache.vehicle_hash("粤B11111", PlateColor.BLUE), T0)
    assert found is not None and found.card_id == card_id
    again = CardCache.load(cache.export(), KEY).lookup(cache.vehicle_hash("粤B11111", PlateColor.BLUE), T0)
    assert again is not None and again.card_id == card_id


def test_instants_and_versions_that_do_not_fit_the_compact_columns_are_kept_exactly() -> None:
    cache = fed(*snapshot(2, [entry("粤B11111", "c1", 1), entry("粤B22222", "c2", 2)]))
    vehicle = cache.vehicle_hash("粤B11111", PlateColor.BLUE)
    odd_start = T0 - timedelta(days=1, microseconds=7)
    cache.apply(delta(2**40, entry("粤B11111", "c1", 2**40, start=odd_start)))
    found = cache.lookup(vehicle, T0)
    assert found is not None and (found.valid_from, found.version) == (odd_start, 2**40)
    other = cache.lookup(cache.vehicle_hash("粤B22222", PlateColor.BLUE), T0)
    assert other is not None and (other.valid_from, other.version) == (T0 - timedelta(days=1), 2)


def test_a_vehicle_is_told_apart_by_the_first_sixteen_bytes_of_its_hash() -> None:
    cache = fed(*snapshot(1, [entry("粤B11111", "c1", 1)]))
    vehicle = cache.vehicle_hash("粤B11111", PlateColor.BLUE)
    assert cache.lookup(vehicle[:16] + bytes(16), T0) is not None
    assert cache.lookup(vehicle[:15] + bytes([vehicle[15] ^ 1]) + vehicle[16:], T0) is None


def test_a_snapshot_larger_than_announced_is_still_taken_whole() -> None:
    begin, *rest = snapshot(3, [entry(f"粤B{i:05d}", "x" * (20 + 10 * i), i + 1) for i in range(3000)], chunk=700)
    begin.snapshot_begin.entry_count = 1
    cache = fed(begin, *rest)
    assert len(cache) == 3000
    assert {len(r["card_id"]) for r in cache.rows()} == {20 + 10 * i for i in range(3000)}
