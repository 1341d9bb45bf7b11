"""Decoding RSU frames into typed records: the pure-Python reference decoder.

Every field is length-checked against the layout its framing publishes (DESIGN section 14). Where a
layout has variants (lane ``B2`` with or without the national contract fields, ``B3`` short or full
form, EF01 59 or 79 bytes, 0015 43 or 50 bytes) the variant is chosen by length, and a length no
variant explains is refused. A frame whose error code is not zero may be error-only (OBUID and
error, 5 bytes) and never places a vehicle.
"""

from __future__ import annotations

from collections.abc import Callable

from recognition_core.etc.files import (
    CARD_FILE_SIZES,
    SHORT_VEHICLE_BYTES,
    VEHICLE_FILE_SIZES,
    parse_card_file,
    parse_vehicle_file,
    place_vehicle,
)
from recognition_core.etc.framing import RawFrame, unwrap
from recognition_core.etc.records import (
    CardInfo,
    Frame,
    FrameError,
    FrameType,
    Framing,
    Heartbeat,
    ObuInfo,
    Record,
    RsuStatus,
    TransactionResult,
    Vehicle,
    VehicleInfo,
)

HEARTBEAT_OBU_ID = b"\x00\x00\x00\x00"
HEARTBEAT_ERROR = 0x80
ERROR_ONLY = 5  # OBUID 4, error 1

LANE_B2_SIZES = (32, 34)  # without / with contract type and version (national variant)
ITS_B2_SIZE = 36
GENVICT_B2_SIZE = 3
LANE_B3_SIZES = (5 + SHORT_VEHICLE_BYTES, *(5 + n for n in VEHICLE_FILE_SIZES))
ITS_B3_SIZES = tuple(5 + n for n in VEHICLE_FILE_SIZES)
LANE_B4_HEAD = 16  # OBUID 4, error 1, card type 1, physical card type 1, trans type 1, balance 4, card id 4
ITS_B4_FIXED = 4 + 1 + 1 + 4  # OBUID, error, trans type, balance; plus EF01, 0015 and 0019
GENVICT_B4_HEAD = 33  # OBUID 4, OBU type 1, card present 1, OBU status 1, system info 26
GENVICT_B4_MIN = GENVICT_B4_HEAD + 79 + 50 + 4 + 43
FILE_0019 = 43
ITS_B5_MIN = 5 + 6 + 7  # OBUID, error, PSAM id, time (BCD)
GENVICT_B5_MIN = 6  # OBUID, OBU type, error

AUTO = "auto"
FRAMING_NAMES = (AUTO, *(f.value for f in Framing))


def decode(data: bytes, framing: Framing | str = AUTO) -> Frame:
    """Decode one complete frame, or raise ``FrameError`` saying why it cannot be checked or placed.

    With ``"auto"`` each framing is tried and the frame is accepted only when exactly one framing's
    check passes."""
    if framing == AUTO:
        return decode_auto(data)
    return decode_raw(unwrap(bytes(data), Framing(framing)))


def decode_auto(data: bytes) -> Frame:
    data = bytes(data)
    passed: list[RawFrame] = []
    failures: list[str] = []
    for framing in Framing:
        try:
            passed.append(unwrap(data, framing))
        except FrameError as exc:
            failures.append(str(exc))
    if not passed:
        raise FrameError("check", "no framing's check passes (" + "; ".join(failures) + ")")
    if len(passed) > 1:
        # its and genvict checksum the same bytes: an its frame whose SEQ happens to equal its
        # length also passes as genvict, with type 00. Only a known frame type can be placed.
        passed = [raw for raw in passed if knows(raw.framing, raw.frame_type)] or passed
    if len(passed) > 1:
        names = " and ".join(raw.framing.value for raw in passed)
        raise FrameError("ambiguous", f"the checks of {names} all pass; set the framing explicitly")
    return decode_raw(passed[0])


def knows(framing: Framing, frame_type: int) -> bool:
    """Whether ``frame_type`` is a frame type of ``framing``'s layout."""
    return frame_type in _TYPE_CODES[framing]


def decode_raw(raw: RawFrame) -> Frame:
    """Parse the DATA of a frame whose framing check passed."""
    try:
        frame_type = FrameType(raw.frame_type)
    except ValueError:
        raise FrameError("type", f"{raw.framing.value}: unknown frame type {raw.frame_type:02X}") from None
    parser = _PARSERS[raw.framing].get(frame_type)
    if parser is None:
        raise FrameError("type", f"{raw.framing.value}: frame type {frame_type.code} is not in its layout")
    where = f"{raw.framing.value} {frame_type.code}"
    record, vehicle = parser(raw.payload, where)
    return Frame(raw.framing, frame_type, raw.seq, record, vehicle)


Parsed = tuple[Record, Vehicle | None]


def _refuse(where: str, size: int, expected: str) -> FrameError:
    return FrameError("length", f"{where}: {size} bytes of data, expected {expected}")


def _sizes(sizes: tuple[int, ...]) -> str:
    return ", ".join(str(s) for s in sizes[:-1]) + " or " + str(sizes[-1]) if len(sizes) > 1 else str(sizes[0])


def _rsu_status(p: bytes, where: str) -> Parsed:
    if not p:
        raise _refuse(where, 0, "at least 1 (the status byte)")
    return RsuStatus(p[0], None, None, p), None


def _heartbeat(p: bytes, where: str) -> Parsed:
    return Heartbeat(p), None


def _genvict_rsu_status(p: bytes, where: str) -> Parsed:
    if len(p) != GENVICT_B2_SIZE:
        raise _refuse(where, len(p), "3 (status, RSU switch, PSAM authorisation)")
    return RsuStatus(p[0], p[1], p[2], p), None


def _error_only(p: bytes, where: str, sizes: tuple[int, ...]) -> bool:
    """Whether ``p`` is an error-only frame (OBUID, error ≠ 0); refuse any size the layout lacks."""
    if len(p) == ERROR_ONLY and p[4] != 0:
        return True
    if len(p) not in sizes:
        raise _refuse(where, len(p), _sizes(sizes) + (" (or 5 with an error code)" if sizes else ""))
    return False


def _is_heartbeat(p: bytes) -> bool:
    return len(p) >= ERROR_ONLY and p[:4] == HEARTBEAT_OBU_ID and p[4] == HEARTBEAT_ERROR


def _lane_b2(p: bytes, where: str) -> Parsed:
    if _error_only(p, where, LANE_B2_SIZES):
        return (Heartbeat(p) if _is_heartbeat(p) else ObuInfo(p[:4], p[4], *(None,) * 8)), None
    if _is_heartbeat(p):
        return Heartbeat(p), None
    contract: tuple[int | None, int | None] = (None, None)
    at = 13
    if len(p) == 34:  # national variant: contract type and version after the issuer
        contract, at = (p[13], p[14]), 15
    serial, issued, expires = p[at : at + 8], p[at + 8 : at + 12], p[at + 12 : at + 16]
    status = int.from_bytes(p[at + 17 : at + 19])
    return ObuInfo(p[0:4], p[4], p[5:13], *contract, serial, issued, expires, p[at + 16], status), None


def _its_b2(p: bytes, where: str) -> Parsed:
    if _error_only(p, where, (ITS_B2_SIZE,)):
        return (Heartbeat(p) if _is_heartbeat(p) else ObuInfo(p[:4], p[4], *(None,) * 8)), None
    if _is_heartbeat(p):
        return Heartbeat(p), None
    info = ObuInfo(
        obu_id=p[0:4],
        error=p[4],
        issuer=p[7:15],
        contract_type=p[15],
        contract_version=p[16],
        serial=p[17:25],
        issued=p[25:29],
        expires=p[29:33],
        equipment=p[33],
        obu_status=p[34],
        antenna=p[5],
        device_type=p[6],
        tamper=p[35],
    )
    return info, None


def _b3(sizes: tuple[int, ...]) -> Callable[[bytes, str], Parsed]:
    def parse(p: bytes, where: str) -> Parsed:
        if _error_only(p, where, sizes):
            return VehicleInfo(p[:4], p[4], None), None
        file_sizes = (SHORT_VEHICLE_BYTES, *VEHICLE_FILE_SIZES)
        vehicle_file = parse_vehicle_file(p[5:], where, file_sizes)
        vehicle = place_vehicle(vehicle_file, None) if p[4] == 0 else None
        return VehicleInfo(p[:4], p[4], vehicle_file), vehicle

    return parse


def _lane_b4(p: bytes, where: str) -> Parsed:
    sizes = tuple(LANE_B4_HEAD + n + FILE_0019 for n in CARD_FILE_SIZES)
    if _error_only(p, where, sizes):
        return CardInfo(p[:4], p[4], None, None, None), None
    card_end = len(p) - FILE_0019
    card_file = parse_card_file(p[LANE_B4_HEAD:card_end], where)
    info = CardInfo(
        obu_id=p[0:4],
        error=p[4],
        card_file=card_file,
        file_0019=p[card_end:],
        balance=int.from_bytes(p[8:12]),
        trans_type=p[7],
        card_type=p[5],
        physical_card_type=p[6],
        card_id=p[12:16],
    )
    return info, place_vehicle(None, card_file) if p[4] == 0 else None


# its B4: the four combinations of EF01 (59/79) and 0015 (43/50) give four distinct lengths.
_ITS_B4_LAYOUTS = {ITS_B4_FIXED + v + c + FILE_0019: (v, c) for v in VEHICLE_FILE_SIZES for c in CARD_FILE_SIZES}
assert len(_ITS_B4_LAYOUTS) == 4


def _its_b4(p: bytes, where: str) -> Parsed:
    if _error_only(p, where, tuple(sorted(_ITS_B4_LAYOUTS))):
        return CardInfo(p[:4], p[4], None, None, None), None
    vehicle_size, card_size = _ITS_B4_LAYOUTS[len(p)]
    at = 6
    vehicle_file = parse_vehicle_file(p[at : at + vehicle_size], where)
    at += vehicle_size
    balance = int.from_bytes(p[at : at + 4])
    at += 4
    card_file = parse_card_file(p[at : at + card_size], where)
    at += card_size
    info = CardInfo(
        obu_id=p[0:4],
        error=p[4],
        card_file=card_file,
        file_0019=p[at:],
        balance=balance,
        trans_type=p[5],
        vehicle_file=vehicle_file,
    )
    return info, place_vehicle(vehicle_file, card_file) if p[4] == 0 else None


def _genvict_b4(p: bytes, where: str) -> Parsed:
    if len(p) < GENVICT_B4_MIN:
        raise _refuse(where, len(p), f"at least {GENVICT_B4_MIN}")
    vehicle_file = parse_vehicle_file(p[33:112], where)
    card_file = parse_card_file(p[112:162], where)
    info = CardInfo(
        obu_id=p[0:4],
        error=None,
        card_file=card_file,
        file_0019=p[166:209],
        balance=int.from_bytes(p[162:166]),
        vehicle_file=vehicle_file,
        obu_type=p[4],
        card_present=p[5],
        obu_status=p[6],
        system_info=p[7:33],
        rest=p[209:],
    )
    return info, place_vehicle(vehicle_file, card_file)


def _lane_b5(p: bytes, where: str) -> Parsed:
    if len(p) < ERROR_ONLY:
        raise _refuse(where, len(p), "at least 5 (OBUID, error)")
    return TransactionResult(p[:4], p[4], None, None, None, p[5:]), None


def _its_b5(p: bytes, where: str) -> Parsed:
    if len(p) == ERROR_ONLY and p[4] != 0:
        return TransactionResult(p[:4], p[4], None, None, None, b""), None
    if len(p) < ITS_B5_MIN:
        raise _refuse(where, len(p), f"at least {ITS_B5_MIN} (OBUID, error, PSAM id, time) or 5 with an error code")
    return TransactionResult(p[:4], p[4], None, p[5:11], p[11:18], p[18:]), None


def _genvict_b5(p: bytes, where: str) -> Parsed:
    if len(p) < GENVICT_B5_MIN:
        raise _refuse(where, len(p), f"at least {GENVICT_B5_MIN} (OBUID, OBU type, error)")
    return TransactionResult(p[:4], p[5], p[4], None, None, p[6:]), None


_PARSERS: dict[Framing, dict[FrameType, Callable[[bytes, str], Parsed]]] = {
    Framing.LANE: {
        FrameType.RSU_STATUS: _rsu_status,
        FrameType.HEARTBEAT: _heartbeat,
        FrameType.OBU_INFO: _lane_b2,
        FrameType.VEHICLE_INFO: _b3(LANE_B3_SIZES),
        FrameType.CARD_INFO: _lane_b4,
        FrameType.TRANSACTION_RESULT: _lane_b5,
    },
    Framing.ITS: {
        FrameType.RSU_STATUS: _rsu_status,
        FrameType.HEARTBEAT: _heartbeat,
        FrameType.OBU_INFO: _its_b2,
        FrameType.VEHICLE_INFO: _b3(ITS_B3_SIZES),
        FrameType.CARD_INFO: _its_b4,
        FrameType.TRANSACTION_RESULT: _its_b5,
    },
    Framing.GENVICT: {
        FrameType.RSU_STATUS: _rsu_status,
        FrameType.HEARTBEAT: _heartbeat,
        FrameType.OBU_INFO: _genvict_rsu_status,
        FrameType.CARD_INFO: _genvict_b4,
        FrameType.TRANSACTION_RESULT: _genvict_b5,
    },
}
_TYPE_CODES = {framing: frozenset(int(t) for t in parsers) for framing, parsers in _PARSERS.items()}
