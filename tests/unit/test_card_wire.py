"""The hand-encoded card-list chunk is byte for byte what the protobuf API builds."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from card_service import wire
from card_service.card_list import Entry
from card_service.domain import CardState
from crosspark.v1 import cards_pb2

MICROS = st.integers(0, 2**41)  # up to year 2039 and beyond, any microsecond

entries = st.builds(
    Entry,
    vehicle_hash=st.binary(min_size=32, max_size=32),
    card_id=st.text(min_size=1, max_size=200),
    valid_from_us=MICROS,
    valid_until_us=MICROS,
    state=st.sampled_from(CardState),
    valid_at_lot=st.booleans(),
    version=st.integers(1, 2**62),
)


def reference(items: list[Entry], version: int) -> cards_pb2.CardListChunk:
    def stamp(micros: int) -> Timestamp:
        return Timestamp(seconds=micros // 1_000_000, nanos=micros % 1_000_000 * 1000)

    return cards_pb2.CardListChunk(
        entries=[
            cards_pb2.CardListEntry(
                vehicle_hash=e.vehicle_hash,
                card_id=e.card_id,
                valid_from=stamp(e.valid_from_us),
                valid_until=stamp(e.valid_until_us),
                state=cards_pb2.CARD_STATE_ACTIVE if e.state is CardState.ACTIVE else cards_pb2.CARD_STATE_CANCELLED,
                valid_at_lot=e.valid_at_lot,
                version=e.version,
            )
            for e in items
        ],
        version=version,
    )


@given(st.lists(entries, max_size=20), st.integers(0, 2**62))
def test_hand_encoded_chunk_equals_the_protobuf_built_one(items: list[Entry], version: int) -> None:
    built = wire.chunk(items, version)
    assert built == reference(items, version)
    assert built.SerializeToString() == reference(items, version).SerializeToString()


def test_varint_matches_protobuf_encoding() -> None:
    for value in (0, 1, 127, 128, 300, 2**31, 2**63 - 1):
        assert cards_pb2.SnapshotEnd.FromString(b"\x08" + wire.varint(value)).version == value
