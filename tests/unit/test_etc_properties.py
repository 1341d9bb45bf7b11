"""Property tests for ETC frames: encode→decode round trips, and fuzzing of the decoder and stream."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from crosspark.identity import PlateColor
from crosspark.plate import DIGITS, LETTERS, PROVINCES, SPECIAL_SUFFIXES
from recognition_core.etc import (
    CardFile,
    CardInfo,
    Frame,
    FrameError,
    FrameType,
    Framing,
    Heartbeat,
    ObuInfo,
    RsuStatus,
    StreamReader,
    TransactionResult,
    VehicleFile,
    VehicleInfo,
    encode,
    fast,
)
from recognition_core.etc import decode_reference as decode
from recognition_core.etc.files import place_vehicle

COLOR_CODES = sorted({c.etc_code for c in PlateColor} | {9})
ALNUM = LETTERS + DIGITS


def blob(n: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=n, max_size=n)


byte = st.integers(0, 255)
obu_ids = blob(4).filter(lambda b: b != bytes(4))

valid_plates = st.one_of(
    st.builds(
        lambda p, a, s, last: p + a + s + last,
        st.sampled_from(PROVINCES),
        st.sampled_from(LETTERS),
        st.text(ALNUM, min_size=4, max_size=4),
        st.sampled_from(ALNUM + SPECIAL_SUFFIXES),
    ),
    st.builds(
        lambda p, a, m, s: p + a + m + s,
        st.sampled_from(PROVINCES),
        st.sampled_from(LETTERS),
        st.sampled_from("DF"),
        st.text(DIGITS, min_size=5, max_size=5),
    ),
)
plate_fields = st.one_of(
    valid_plates.map(lambda p: p.encode("gb2312").ljust(12, b"\0")),
    st.just("测A12345".encode("gb2312").ljust(12, b"\0")),
    blob(12),
    st.just(bytes(12)),
)


def vehicle_files(sizes: tuple[int, ...] = (59, 79)) -> st.SearchStrategy[VehicleFile]:
    return st.builds(
        lambda plate, color, cls, user, rest: VehicleFile(plate, color, cls, user, rest),
        plate_fields,
        st.sampled_from(COLOR_CODES),
        st.sampled_from([1, 2, 3, 4, 11, 12, 16, 21, 26]),
        byte,
        st.sampled_from(sizes).flatmap(lambda n: blob(n - 16)),
    )


blank_vehicle_files = st.sampled_from([59, 79]).map(lambda n: VehicleFile(bytes(12), 0, 0, 0, bytes(n - 16)))


def card_files(sizes: tuple[int, ...] = (43, 50)) -> st.SearchStrategy[CardFile]:
    return st.builds(
        CardFile,
        issuer=blob(8),
        card_type=byte,
        version=byte,
        network=blob(2),
        card_number=blob(8),
        start=blob(4),
        expiry=blob(4),
        plate_raw=plate_fields,
        user_type=byte,
        color_code=st.sampled_from(COLOR_CODES),
        vehicle_class=byte,
        rest=st.sampled_from(sizes).flatmap(lambda n: blob(n - 43)),
    )


errors = st.integers(0, 255)
nonzero_errors = st.integers(1, 255).filter(lambda e: e != 0x80)


def obu_infos(framing: Framing) -> st.SearchStrategy[ObuInfo]:
    error_only = st.builds(lambda o, e: ObuInfo(o, e, *(None,) * 8), obu_ids, nonzero_errors)
    if framing is Framing.ITS:
        full = st.builds(
            ObuInfo, obu_ids, errors, blob(8), byte, byte, blob(8), blob(4), blob(4), byte, byte, byte, byte, byte
        )
    else:
        national = st.builds(
            ObuInfo, obu_ids, errors, blob(8), byte, byte, blob(8), blob(4), blob(4), byte, st.integers(0, 0xFFFF)
        )
        plain = st.builds(
            lambda o, e, i, s, a, b, q, u: ObuInfo(o, e, i, None, None, s, a, b, q, u),
            obu_ids,
            errors,
            blob(8),
            blob(8),
            blob(4),
            blob(4),
            byte,
            st.integers(0, 0xFFFF),
        )
        full = st.one_of(national, plain)
    return st.one_of(full, error_only)


def vehicle_infos(framing: Framing) -> st.SearchStrategy[VehicleInfo]:
    sizes = (16, 59, 79) if framing is Framing.LANE else (59, 79)
    return st.one_of(
        st.builds(VehicleInfo, obu_ids, errors, st.one_of(vehicle_files(sizes), blank_vehicle_files)),
        st.builds(lambda o, e: VehicleInfo(o, e, None), obu_ids, nonzero_errors),
    )


def card_infos(framing: Framing) -> st.SearchStrategy[CardInfo]:
    vehicle = st.one_of(vehicle_files(), blank_vehicle_files)
    error_only = st.builds(lambda o, e: CardInfo(o, e, None, None, None), obu_ids, nonzero_errors)
    if framing is Framing.LANE:
        full = st.builds(
            CardInfo,
            obu_id=obu_ids,
            error=errors,
            card_file=card_files(),
            file_0019=blob(43),
            balance=st.integers(0, 2**32 - 1),
            trans_type=byte,
            card_type=byte,
            physical_card_type=byte,
            card_id=blob(4),
        )
        return st.one_of(full, error_only)
    if framing is Framing.ITS:
        full = st.builds(
            CardInfo,
            obu_id=obu_ids,
            error=errors,
            card_file=card_files(),
            file_0019=blob(43),
            balance=st.integers(0, 2**32 - 1),
            trans_type=byte,
            vehicle_file=vehicle,
        )
        return st.one_of(full, error_only)
    return st.builds(
        CardInfo,
        obu_id=obu_ids,
        error=st.none(),
        card_file=card_files((50,)),
        file_0019=blob(43),
        balance=st.integers(0, 2**32 - 1),
        vehicle_file=st.one_of(vehicle_files((79,)), blank_vehicle_files.filter(lambda v: v.size == 79)),
        obu_type=byte,
        card_present=byte,
        obu_status=byte,
        system_info=blob(26),
        rest=st.binary(max_size=20),
    )


def transaction_results(framing: Framing) -> st.SearchStrategy[TransactionResult]:
    tail = st.binary(max_size=40)
    if framing is Framing.LANE:
        return st.builds(lambda o, e, r: TransactionResult(o, e, None, None, None, r), obu_ids, errors, tail)
    if framing is Framing.ITS:
        return st.one_of(
            st.builds(
                lambda o, e, p, t, r: TransactionResult(o, e, None, p, t, r), obu_ids, errors, blob(6), blob(7), tail
            ),
            st.builds(lambda o, e: TransactionResult(o, e, None, None, None, b""), obu_ids, nonzero_errors),
        )
    return st.builds(lambda o, t, e, r: TransactionResult(o, e, t, None, None, r), obu_ids, byte, errors, tail)


def records(framing: Framing) -> st.SearchStrategy:
    options = [
        st.tuples(
            st.just(FrameType.RSU_STATUS),
            st.binary(min_size=1, max_size=30).map(lambda raw: RsuStatus(raw[0], None, None, raw)),
        ),
        st.tuples(st.just(FrameType.HEARTBEAT), st.binary(max_size=30).map(Heartbeat)),
        st.tuples(st.just(FrameType.TRANSACTION_RESULT), transaction_results(framing)),
        st.tuples(st.just(FrameType.CARD_INFO), card_infos(framing)),
    ]
    if framing is Framing.GENVICT:
        options.append(
            st.tuples(
                st.just(FrameType.OBU_INFO),
                st.builds(lambda a, b, c: RsuStatus(a, b, c, bytes((a, b, c))), byte, byte, byte),
            )
        )
    else:
        options.append(st.tuples(st.just(FrameType.OBU_INFO), obu_infos(framing)))
        options.append(st.tuples(st.just(FrameType.VEHICLE_INFO), vehicle_infos(framing)))
    return st.one_of(options)


framed_records = st.sampled_from(list(Framing)).flatmap(lambda f: st.tuples(st.just(f), records(f), byte))


def expected_vehicle(record):
    if isinstance(record, VehicleInfo):
        return place_vehicle(record.vehicle_file, None) if record.error == 0 else None
    if isinstance(record, CardInfo) and record.card_file is not None and record.error in (0, None):
        return place_vehicle(record.vehicle_file, record.card_file)
    return None


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(framed_records)
def test_encode_then_decode_gives_back_the_record(case):
    framing, (frame_type, record), seq = case
    data = encode(framing, record, seq, frame_type)
    frame = decode(data, framing)
    assert frame == Frame(
        framing, frame_type, seq if framing is not Framing.GENVICT else 0, record, expected_vehicle(record)
    )


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(framed_records)
def test_auto_decodes_what_the_configured_framing_decodes(case):
    framing, (frame_type, record), seq = case
    data = encode(framing, record, seq, frame_type)
    try:
        frame = decode(data)
    except FrameError as exc:
        assert exc.reason == "ambiguous"
        return
    assert frame == decode(data, framing)


@settings(max_examples=500)
@given(st.binary(max_size=300), st.sampled_from(["auto", "lane", "its", "genvict"]))
def test_random_bytes_raise_only_frame_error(data, framing):
    with contextlib.suppress(FrameError):
        decode(b"\xff\xff" + data, framing)


def vehicle_frames() -> st.SearchStrategy[tuple[Framing, bytes]]:
    def frames(framing: Framing):
        kinds = [card_infos(framing)] + ([vehicle_infos(framing)] if framing is not Framing.GENVICT else [])
        return st.tuples(st.just(framing), st.one_of(kinds), byte)

    cases = st.sampled_from(list(Framing)).flatmap(frames)
    encoded = cases.map(lambda c: (c[0], encode(c[0], c[1], c[2])))
    return encoded.filter(lambda c: decode(c[1], c[0]).vehicle is not None)


mutations = st.tuples(st.sampled_from(["replace", "insert", "delete", "truncate"]), st.integers(0, 10_000), byte)


def mutate(data: bytes, how: str, where: int, value: int) -> bytes:
    i = where % len(data)
    if how == "replace":
        assume(data[i] != value)
        return data[:i] + bytes((value,)) + data[i + 1 :]
    if how == "insert":
        return data[:i] + bytes((value,)) + data[i:]
    if how == "delete":
        return data[:i] + data[i + 1 :]
    return data[:i]


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(vehicle_frames(), mutations, st.booleans())
def test_a_mutated_frame_never_yields_a_different_vehicle(case, mutation, auto):
    framing, data = case
    original = decode(data, framing).vehicle
    mutated = mutate(data, *mutation)
    try:
        frame = decode(mutated, "auto" if auto else framing)
    except FrameError:
        return
    assert frame.vehicle == original


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=60), max_size=8), st.sampled_from(["auto", "lane", "its", "genvict"]))
def test_stream_reader_on_random_bytes_raises_nothing(chunks, framing):
    reader = StreamReader(framing)
    for chunk in chunks:
        for item in reader.feed(b"\xff\xff" + chunk):
            assert isinstance(item, Frame | FrameError)
    reader.flush()


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(list(Framing)).flatmap(
        lambda f: st.tuples(st.just(f), st.lists(records(f), min_size=1, max_size=5))
    ),
    st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\xff", b"")), min_size=6, max_size=6),
    st.integers(1, 64),
)
def test_stream_reader_finds_every_frame_between_garbage(case, garbage, chunk_size):
    framing, typed = case
    frames = [encode(framing, record, 3, frame_type) for frame_type, record in typed]
    stream = b"".join(g + f for g, f in zip(garbage, frames, strict=False)) + garbage[-1]
    reader = StreamReader(framing)
    out = [item for i in range(0, len(stream), chunk_size) for item in reader.feed(stream[i : i + chunk_size])]
    got = [item for item in out if isinstance(item, Frame)]
    assert got == [decode(f, framing) for f in frames]


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(list(Framing)).flatmap(lambda f: st.tuples(st.just(f), records(f), records(f))),
    st.integers(1, 10_000),
)
def test_stream_reader_recovers_the_frame_after_a_torn_one(case, cut):
    framing, (type_a, record_a), (type_b, record_b) = case
    torn = encode(framing, record_a, 1, type_a)
    torn = torn[: 2 + cut % (len(torn) - 2)]
    whole = encode(framing, record_b, 2, type_b)
    reader = StreamReader(framing)
    out = reader.feed(torn + whole + whole)
    got = [item for item in out if isinstance(item, Frame)]
    assert got[-2:] == [decode(whole, framing)] * 2 or got[-1:] == [decode(whole, framing)]


# -- the compiled decoder against the reference ---------------------------------------------------


def outcome(decoder, data: bytes, framing: str):
    try:
        return decoder(data, framing)
    except FrameError as exc:
        return ("error", exc.reason, str(exc))


def test_the_compiled_decoder_is_in_use():
    assert fast.COMPILED


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(framed_records, st.booleans())
def test_compiled_decoder_equals_the_reference_on_valid_frames(case, auto):
    framing, (frame_type, record), seq = case
    data = encode(framing, record, seq, frame_type)
    name = "auto" if auto else framing.value
    assert outcome(fast.decode, data, name) == outcome(decode, data, name)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(vehicle_frames(), mutations, st.booleans())
def test_compiled_decoder_equals_the_reference_on_mutated_frames(case, mutation, auto):
    framing, data = case
    mutated = mutate(data, *mutation)
    name = "auto" if auto else framing.value
    assert outcome(fast.decode, mutated, name) == outcome(decode, mutated, name)


@settings(max_examples=300)
@given(st.binary(max_size=300), st.sampled_from(["auto", "lane", "its", "genvict"]))
def test_compiled_decoder_equals_the_reference_on_random_bytes(data, framing):
    data = b"\xff\xff" + data
    assert outcome(fast.decode, data, framing) == outcome(decode, data, framing)


@settings(max_examples=200)
@given(plate_fields, st.sampled_from([*COLOR_CODES, 7, 8, 10, 255]), st.sampled_from([16, 59, 79]))
def test_compiled_decoder_places_the_same_vehicle_as_the_reference(plate, color, size):
    record = VehicleInfo(b"\x01\x02\x03\x04", 0, VehicleFile(plate, color, 1, 0, bytes(size - 16)))
    data = encode(Framing.LANE, record, 1)
    assert outcome(fast.decode, data, "lane") == outcome(decode, data, "lane")
