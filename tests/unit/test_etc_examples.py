"""ETC frame decoding against DESIGN section 14: worked examples and layouts built by hand."""

from __future__ import annotations

import pytest

from crosspark.identity import IdentitySource, PlateColor
from recognition_core.etc import (
    CardInfo,
    FrameError,
    FrameType,
    Framing,
    Heartbeat,
    ObuInfo,
    RsuStatus,
    StreamReader,
    TransactionResult,
    VehicleSource,
    decode,
    decode_reference,
    encode,
    to_identity,
    wrap,
)
from recognition_core.etc.checks import bcc, crc16_x25, escape, unescape

EXAMPLE_YELLOW = "ffff28b3a1b2c3d400d4c14231323334350000000000010100f9ff"
EXAMPLE_ESCAPED = "ffff38b312fe0134fe0000bea941443132333435000000000401008aff"

OBU = bytes.fromhex("a1b2c3d4")
YUE_B12345 = "粤B12345".encode("gb2312").ljust(12, b"\0")
JING_AD12345 = "京AD12345".encode("gb2312").ljust(12, b"\0")
TEST_PLATE = "测A12345".encode("gb2312").ljust(12, b"\0")


def ef01(plate: bytes = YUE_B12345, color: int = 1, vehicle_class: int = 1, size: int = 59) -> bytes:
    return plate + color.to_bytes(2, "big") + bytes((vehicle_class, 0)) + bytes(range(1, size - 15))[: size - 16]


def file_0015(plate: bytes = YUE_B12345, color: int = 1, vehicle_class: int = 1, size: int = 43) -> bytes:
    head = bytes.fromhex("b9e3b6ab44010001") + b"\x16\x40" + b"\x44\x01" + bytes.fromhex("4401234567890123")
    dates = bytes.fromhex("20240101") + bytes.fromhex("20340101")
    return head + dates + plate + bytes((0, color, vehicle_class)) + b"\x07" * (size - 43)


FILE_0019 = bytes(range(43))


# -- checks ---------------------------------------------------------------------------------------


def test_crc16_x25_matches_the_catalogue_check_value():
    assert crc16_x25(b"123456789") == 0x906E


def test_bcc_is_the_xor_of_the_bytes():
    assert bcc(bytes.fromhex("28b3a1")) == 0x28 ^ 0xB3 ^ 0xA1


def test_escape_replaces_ff_and_fe_and_unescape_undoes_it():
    assert escape(b"\x12\xff\x34\xfe") == bytes.fromhex("12fe0134fe00")
    assert unescape(bytes.fromhex("12fe0134fe00")) == b"\x12\xff\x34\xfe"


@pytest.mark.parametrize("bad", ["fe02", "fe", "12ff"])
def test_unescape_refuses_broken_escapes(bad):
    with pytest.raises(ValueError):
        unescape(bytes.fromhex(bad))


# -- worked examples ------------------------------------------------------------------------------


def test_worked_example_yellow_decodes_exactly():
    frame = decode(bytes.fromhex(EXAMPLE_YELLOW), "lane")
    assert frame.to_json() == {
        "ok": True,
        "framing": "lane",
        "frame_type": "B3",
        "obu_id": "a1b2c3d4",
        "vehicle": {"plate": "粤B12345", "color": "yellow", "vehicle_class": 1, "plate_valid": True},
    }


def test_worked_example_with_escaping_decodes_exactly():
    frame = decode(bytes.fromhex(EXAMPLE_ESCAPED), "lane")
    assert frame.obu_id == "12ff34fe"
    assert frame.vehicle is not None
    assert (frame.vehicle.plate, frame.vehicle.color, frame.vehicle.vehicle_class) == ("京AD12345", PlateColor.GREEN, 1)


@pytest.mark.parametrize("example", [EXAMPLE_YELLOW, EXAMPLE_ESCAPED])
def test_reference_decoder_gives_the_same_worked_examples(example):
    assert decode_reference(bytes.fromhex(example), "lane") == decode(bytes.fromhex(example), "lane")


@pytest.mark.parametrize("example", [EXAMPLE_YELLOW, EXAMPLE_ESCAPED])
def test_worked_examples_are_found_by_auto(example):
    assert decode(bytes.fromhex(example)).framing is Framing.LANE


@pytest.mark.parametrize("example", [EXAMPLE_YELLOW, EXAMPLE_ESCAPED])
def test_encoder_reproduces_the_worked_examples(example):
    frame = decode(bytes.fromhex(example), "lane")
    assert encode(frame.framing, frame.record, frame.seq).hex() == example


def test_a_flipped_bit_in_the_worked_example_fails_the_bcc():
    data = bytearray.fromhex(EXAMPLE_YELLOW)
    data[10] ^= 0x01
    with pytest.raises(FrameError) as err:
        decode(bytes(data), "lane")
    assert err.value.reason == "bcc"


# -- lane layouts ---------------------------------------------------------------------------------


def lane(frame_type: int, payload: bytes) -> bytes:
    return wrap(Framing.LANE, frame_type, payload, seq=0x10)


def test_lane_b2_short_layout_fields():
    payload = OBU + b"\x00" + b"I" * 8 + b"S" * 8 + b"\x20\x24\x01\x01" + b"\x20\x30\x01\x01" + b"\x01" + b"\x12\x34"
    info = decode(lane(0xB2, payload), "lane").record
    assert isinstance(info, ObuInfo)
    assert (info.issuer, info.serial, info.contract_type, info.obu_status) == (b"I" * 8, b"S" * 8, None, 0x1234)


def test_lane_b2_national_variant_has_contract_type_and_version():
    payload = OBU + b"\x00" + b"I" * 8 + b"\x05\x06" + b"S" * 8 + bytes(8) + b"\x01" + b"\x00\x02"
    info = decode(lane(0xB2, payload), "lane").record
    assert isinstance(info, ObuInfo)
    assert (info.contract_type, info.contract_version, info.serial, info.obu_status) == (5, 6, b"S" * 8, 2)


def test_lane_b2_of_an_unknown_length_is_refused():
    with pytest.raises(FrameError, match="33 bytes"):
        decode(lane(0xB2, OBU + bytes(29)), "lane")


def test_lane_b2_with_zero_obu_and_error_80_is_a_heartbeat():
    frame = decode(lane(0xB2, bytes(4) + b"\x80" + bytes(27)), "lane")
    assert frame.is_heartbeat and frame.vehicle is None


def test_b1_is_a_heartbeat():
    assert isinstance(decode(lane(0xB1, b"\x00"), "lane").record, Heartbeat)


def test_b0_is_the_rsu_status_with_no_obu():
    frame = decode(lane(0xB0, b"\x00\x01\x02"), "lane")
    assert isinstance(frame.record, RsuStatus) and frame.obu_id is None and frame.record.status == 0


@pytest.mark.parametrize("size", [59, 79])
def test_lane_b3_full_form_reads_the_vehicle_file(size):
    frame = decode(lane(0xB3, OBU + b"\x00" + ef01(JING_AD12345, 4, 2, size)), "lane")
    assert frame.vehicle is not None
    assert (frame.vehicle.plate, frame.vehicle.color, frame.vehicle.vehicle_class) == ("京AD12345", PlateColor.GREEN, 2)
    assert frame.vehicle.source is VehicleSource.VEHICLE_FILE


@pytest.mark.parametrize("data_size", [20, 22, 63, 65, 83, 85])
def test_lane_b3_of_a_length_no_variant_explains_is_refused(data_size):
    with pytest.raises(FrameError) as err:
        decode(lane(0xB3, (OBU + b"\x00" + ef01(size=79) + bytes(10))[:data_size]), "lane")
    assert err.value.reason == "length"


def test_b3_with_an_error_code_places_no_vehicle():
    frame = decode(lane(0xB3, OBU + b"\x01" + ef01()), "lane")
    assert frame.vehicle is None and frame.record.error == 1


def test_error_only_b3_decodes_with_no_vehicle_file():
    frame = decode(lane(0xB3, OBU + b"\x05"), "lane")
    assert frame.record.vehicle_file is None and frame.vehicle is None


def test_five_byte_b3_without_an_error_code_is_refused():
    with pytest.raises(FrameError, match="5 bytes"):
        decode(lane(0xB3, OBU + b"\x00"), "lane")


def test_all_zero_vehicle_file_in_b3_places_no_vehicle():
    assert decode(lane(0xB3, OBU + b"\x00" + bytes(59)), "lane").vehicle is None


@pytest.mark.parametrize("card_size", [43, 50])
def test_lane_b4_reads_the_card_file(card_size):
    head = OBU + b"\x00" + b"\x16\x01\x06" + (1234).to_bytes(4, "big") + b"\xca\xfe\xba\xbe"
    frame = decode(lane(0xB4, head + file_0015(JING_AD12345, 4, 1, card_size) + FILE_0019), "lane")
    info = frame.record
    assert isinstance(info, CardInfo)
    assert (info.balance, info.card_id, info.trans_type, info.file_0019) == (1234, b"\xca\xfe\xba\xbe", 6, FILE_0019)
    assert frame.vehicle is not None and frame.vehicle.plate == "京AD12345"
    assert frame.vehicle.source is VehicleSource.CARD_FILE


def test_lane_b5_keeps_the_unpublished_tail():
    frame = decode(lane(0xB5, OBU + b"\x00" + b"tail"), "lane")
    assert isinstance(frame.record, TransactionResult) and frame.record.rest == b"tail"


def test_unknown_frame_type_is_refused():
    with pytest.raises(FrameError, match="unknown frame type C0"):
        decode(lane(0xC0, OBU), "lane")


# -- plates and colours ---------------------------------------------------------------------------


def test_test_obu_plate_decodes_with_plate_valid_false():
    frame = decode(lane(0xB3, OBU + b"\x00" + TEST_PLATE + b"\x00\x00\x01\x00"), "lane")
    expected = {"plate": "测A12345", "color": "blue", "vehicle_class": 1, "plate_valid": False}
    assert frame.to_json()["vehicle"] == expected


def test_bytes_that_are_not_gb2312_never_make_a_valid_plate():
    frame = decode(lane(0xB3, OBU + b"\x00" + b"\xd4\xc1B1\x80\x81345\0\0\0" + b"\x00\x00\x01\x00"), "lane")
    assert frame.vehicle is not None and not frame.vehicle.plate_valid


def test_blue_white_code_9_maps_to_blue_white_and_keeps_the_code():
    frame = decode(lane(0xB3, OBU + b"\x00" + YUE_B12345 + b"\x00\x09\x01\x00"), "lane")
    assert frame.vehicle is not None
    assert (frame.vehicle.color, frame.vehicle.color_code) == (PlateColor.BLUE_WHITE, 9)


def test_unknown_colour_code_is_refused():
    with pytest.raises(FrameError) as err:
        decode(lane(0xB3, OBU + b"\x00" + YUE_B12345 + b"\x00\x07\x01\x00"), "lane")
    assert err.value.reason == "color"


# -- its and genvict ------------------------------------------------------------------------------


def its(frame_type: int, payload: bytes) -> bytes:
    return wrap(Framing.ITS, frame_type, payload, seq=7)


def genvict(frame_type: int, payload: bytes) -> bytes:
    return wrap(Framing.GENVICT, frame_type, payload)


def test_its_header_and_crc_by_hand():
    payload = OBU + b"\x00" + ef01()
    body = b"\x00\x07" + (1 + len(payload)).to_bytes(4, "big") + b"\xb3" + payload
    frame = b"\xff\xff" + body + crc16_x25(body).to_bytes(2, "big")
    decoded = decode(frame, "its")
    assert (decoded.seq, decoded.obu_id, decoded.vehicle.plate) == (7, "a1b2c3d4", "粤B12345")


def test_its_len_counting_data_only_is_accepted():
    payload = OBU + b"\x00" + ef01()
    body = b"\x00\x07" + len(payload).to_bytes(4, "big") + b"\xb3" + payload
    frame = b"\xff\xff" + body + crc16_x25(body).to_bytes(2, "big")
    assert decode(frame, "its").vehicle.plate == "粤B12345"


def test_its_len_that_fits_neither_reading_is_refused():
    payload = OBU + b"\x00" + ef01()
    body = b"\x00\x07" + (len(payload) + 3).to_bytes(4, "big") + b"\xb3" + payload
    with pytest.raises(FrameError) as err:
        decode(b"\xff\xff" + body + crc16_x25(body).to_bytes(2, "big"), "its")
    assert err.value.reason == "length"


def test_its_crc_mismatch_is_refused():
    data = bytearray(its(0xB3, OBU + b"\x00" + ef01()))
    data[-1] ^= 0xFF
    with pytest.raises(FrameError) as err:
        decode(bytes(data), "its")
    assert err.value.reason == "crc"


def test_its_b2_layout_fields():
    payload = OBU + b"\x00" + b"\x02\x03" + b"I" * 8 + b"\x05\x06" + b"S" * 8 + bytes(8) + b"\x01\x04\x09"
    info = decode(its(0xB2, payload), "its").record
    assert isinstance(info, ObuInfo)
    assert (info.antenna, info.device_type, info.issuer) == (2, 3, b"I" * 8)
    assert (info.contract_type, info.serial) == (5, b"S" * 8)
    assert (info.equipment, info.obu_status, info.tamper) == (1, 4, 9)


def test_its_b3_short_form_is_not_in_its_layout():
    with pytest.raises(FrameError, match="21 bytes"):
        decode(its(0xB3, OBU + b"\x00" + YUE_B12345 + b"\x00\x01\x01\x00"), "its")


@pytest.mark.parametrize("vehicle_size", [59, 79])
@pytest.mark.parametrize("card_size", [43, 50])
def test_its_b4_variants_are_told_apart_by_length(vehicle_size, card_size):
    payload = (
        OBU
        + b"\x00"
        + b"\x06"
        + ef01(JING_AD12345, 4, 1, vehicle_size)
        + (500).to_bytes(4, "big")
        + file_0015(YUE_B12345, 1, 1, card_size)
        + FILE_0019
    )
    frame = decode(its(0xB4, payload), "its")
    assert frame.record.balance == 500 and frame.record.card_file.size == card_size
    assert frame.vehicle.plate == "京AD12345" and frame.vehicle.source is VehicleSource.VEHICLE_FILE


def test_all_zero_vehicle_file_takes_plate_and_colour_from_0015():
    payload = OBU + b"\x00\x06" + bytes(79) + (500).to_bytes(4, "big") + file_0015(YUE_B12345, 1, 2, 50) + FILE_0019
    vehicle = decode(its(0xB4, payload), "its").vehicle
    assert vehicle is not None
    assert (vehicle.plate, vehicle.color, vehicle.vehicle_class, vehicle.source) == (
        "粤B12345",
        PlateColor.YELLOW,
        2,
        VehicleSource.CARD_FILE,
    )


def test_its_b5_reads_psam_and_bcd_time():
    payload = OBU + b"\x00" + b"P" * 6 + bytes.fromhex("20261124103000") + b"more"
    result = decode(its(0xB5, payload), "its").record
    assert (result.psam_id, result.time_bcd.hex(), result.rest) == (b"P" * 6, "20261124103000", b"more")


def test_genvict_b2_is_the_rsu_status():
    frame = decode(genvict(0xB2, b"\x00\x01\x01"), "genvict")
    assert frame.record == RsuStatus(0, 1, 1, b"\x00\x01\x01") and frame.obu_id is None


def test_genvict_b4_layout_with_trailing_bytes():
    payload = (
        OBU
        + b"\x01\x01\x00"
        + b"\x5a" * 26
        + ef01(YUE_B12345, 1, 1, 79)
        + file_0015(JING_AD12345, 4, 1, 50)
        + (99).to_bytes(4, "big")
        + FILE_0019
        + b"trailing"
    )
    frame = decode(genvict(0xB4, payload), "genvict")
    info = frame.record
    assert (info.balance, info.system_info, info.rest, info.error) == (99, b"\x5a" * 26, b"trailing", None)
    assert frame.vehicle.plate == "粤B12345"


def test_genvict_b4_shorter_than_its_layout_is_refused():
    with pytest.raises(FrameError, match="at least 209"):
        decode(genvict(0xB4, OBU + bytes(200)), "genvict")


def test_genvict_has_no_b3():
    with pytest.raises(FrameError, match="not in its layout"):
        decode(genvict(0xB3, OBU + b"\x00" + ef01()), "genvict")


def test_genvict_b5_reads_obu_type_then_error():
    result = decode(genvict(0xB5, OBU + b"\x02\x00record"), "genvict").record
    assert (result.obu_type, result.error, result.rest) == (2, 0, b"record")


@pytest.mark.parametrize("framing", list(Framing))
def test_auto_finds_each_framing(framing):
    data = wrap(framing, 0xB5, OBU + b"\x00\x00" + bytes(20))
    assert decode(data).framing is framing


def test_auto_refuses_bytes_no_framing_checks():
    with pytest.raises(FrameError, match="no framing"):
        decode(bytes.fromhex("ffff0102030405"))


def test_frame_over_the_length_bound_is_refused():
    with pytest.raises(FrameError) as err:
        decode(b"\xff\xff" + bytes(5000), "genvict")
    assert err.value.reason == "too_long"


# -- identity -------------------------------------------------------------------------------------


def test_identity_carries_source_serial_issuer_and_class():
    frame = decode(bytes.fromhex(EXAMPLE_YELLOW), "lane")
    obu = ObuInfo(OBU, 0, b"\xb9\xe3\xb6\xab\x44\x01\x00\x01", None, None, b"\x01" * 8, bytes(4), bytes(4), 0, 0)
    identity = to_identity(frame, obu)
    assert (identity.plate, identity.color, identity.source) == ("粤B12345", PlateColor.YELLOW, IdentitySource.ETC)
    assert (identity.obu_serial, identity.obu_issuer, identity.vehicle_class) == ("01" * 8, "b9e3b6ab44010001", 1)


def test_identity_is_never_made_from_a_test_plate():
    frame = decode(lane(0xB3, OBU + b"\x00" + TEST_PLATE + b"\x00\x00\x01\x00"), "lane")
    with pytest.raises(FrameError, match="not a valid"):
        to_identity(frame)


# -- stream ---------------------------------------------------------------------------------------


def test_stream_splits_frames_across_garbage_and_chunk_boundaries():
    frames = bytes.fromhex(EXAMPLE_YELLOW) + b"\x01\x02\xff garbage" + bytes.fromhex(EXAMPLE_ESCAPED)
    reader = StreamReader("lane")
    out = [item for i in range(0, len(frames), 5) for item in reader.feed(frames[i : i + 5])]
    assert [f.obu_id for f in out] == ["a1b2c3d4", "12ff34fe"]


def test_stream_resynchronises_after_a_torn_lane_frame():
    torn = bytes.fromhex(EXAMPLE_YELLOW)[:12]
    out = StreamReader("lane").feed(torn + bytes.fromhex(EXAMPLE_ESCAPED))
    assert [type(item).__name__ for item in out] == ["FrameError", "Frame"]
    assert out[1].obu_id == "12ff34fe"


@pytest.mark.parametrize("framing", [Framing.ITS, Framing.GENVICT])
def test_stream_resynchronises_after_a_torn_length_framed_frame(framing):
    good = wrap(framing, 0xB5, OBU + b"\x00\x00" + bytes(20))
    reader = StreamReader(framing)
    out = reader.feed(good[:9] + good + good)
    assert [f.frame_type for f in out if not isinstance(f, FrameError)] == [FrameType.TRANSACTION_RESULT] * 2


def test_auto_stream_locks_onto_the_first_good_framing():
    reader = StreamReader()
    reader.feed(b"noise" + genvict(0xB2, b"\x00\x01\x01"))
    assert reader.framing is Framing.GENVICT


def test_flush_reports_a_torn_frame_at_end_of_stream():
    reader = StreamReader("lane")
    assert reader.feed(bytes.fromhex(EXAMPLE_YELLOW)[:10]) == []
    assert [e.reason for e in reader.flush()] == ["torn"]


def test_auto_reads_an_its_frame_that_also_passes_the_genvict_check_as_its():
    payload = OBU + b"\x00" + ef01()
    seq = 1 + len(payload) + 4  # genvict would read VER·SEQ as its LEN: 00·SEQ
    data = wrap(Framing.ITS, 0xB3, payload, seq=seq)
    assert len(data) - 6 == seq  # the genvict check passes too
    frame = decode(data)
    assert (frame.framing, frame.vehicle.plate) == (Framing.ITS, "粤B12345")
