"""Encoding records into frames, for tests and the simulated RSU: the inverse of ``decode``.

``encode(framing, record)`` writes the layout ``decode`` reads, choosing the variant from the record
(lane ``B2`` with contract fields is the national variant; a record without its files is the
error-only form). ``vehicle_file_for`` and ``card_file_for`` build files from a plate and colour.
"""

from __future__ import annotations

from crosspark.identity import PlateColor
from recognition_core.etc.files import CARD_FILE_SIZES, PLATE_BYTES, VEHICLE_FILE_SIZES
from recognition_core.etc.framing import wrap
from recognition_core.etc.records import (
    CardFile,
    CardInfo,
    Frame,
    FrameType,
    Framing,
    Heartbeat,
    ObuInfo,
    Record,
    RsuStatus,
    TransactionResult,
    VehicleFile,
    VehicleInfo,
)

_HEARTBEAT_B2 = b"\x00\x00\x00\x00\x80"


def encode(framing: Framing | str, record: Record, seq: int = 0, frame_type: FrameType | None = None) -> bytes:
    """One frame carrying ``record``. ``frame_type`` defaults from the record: a ``Heartbeat`` is a
    ``B1`` frame unless ``B2`` is asked for; a genvict ``RsuStatus`` with an RSU switch is ``B2``."""
    framing = Framing(framing)
    if frame_type is None:
        frame_type = default_frame_type(framing, record)
    return wrap(framing, frame_type, payload_of(framing, FrameType(frame_type), record), seq)


def encode_frame(frame: Frame) -> bytes:
    """Re-encode a decoded frame (same framing, type and sequence byte)."""
    return encode(frame.framing, frame.record, frame.seq, frame.frame_type)


def default_frame_type(framing: Framing, record: Record) -> FrameType:
    if isinstance(record, RsuStatus):
        if framing is Framing.GENVICT and record.rsu_switch is not None:
            return FrameType.OBU_INFO
        return FrameType.RSU_STATUS
    if isinstance(record, Heartbeat):
        return FrameType.HEARTBEAT
    return _TYPE_OF[type(record)]


_TYPE_OF: dict[type, FrameType] = {
    ObuInfo: FrameType.OBU_INFO,
    VehicleInfo: FrameType.VEHICLE_INFO,
    CardInfo: FrameType.CARD_INFO,
    TransactionResult: FrameType.TRANSACTION_RESULT,
}


def _fixed(value: bytes | None, size: int, name: str) -> bytes:
    if value is None or len(value) != size:
        raise ValueError(f"{name} must be {size} bytes, got {None if value is None else len(value)}")
    return bytes(value)


def _u8(value: int | None) -> bytes:
    return (value or 0).to_bytes(1, "big")


def _int(value: int | None, size: int) -> bytes:
    return (value or 0).to_bytes(size, "big")


def vehicle_file_bytes(vehicle_file: VehicleFile) -> bytes:
    return (
        _fixed(vehicle_file.plate_raw, PLATE_BYTES, "plate")
        + vehicle_file.color_code.to_bytes(2, "big")
        + bytes((vehicle_file.vehicle_class, vehicle_file.user_type))
        + vehicle_file.rest
    )


def card_file_bytes(card_file: CardFile) -> bytes:
    return (
        _fixed(card_file.issuer, 8, "issuer")
        + bytes((card_file.card_type, card_file.version))
        + _fixed(card_file.network, 2, "network")
        + _fixed(card_file.card_number, 8, "card number")
        + _fixed(card_file.start, 4, "start")
        + _fixed(card_file.expiry, 4, "expiry")
        + _fixed(card_file.plate_raw, PLATE_BYTES, "plate")
        + bytes((card_file.user_type, card_file.color_code, card_file.vehicle_class))
        + card_file.rest
    )


def payload_of(framing: Framing, frame_type: FrameType, record: Record) -> bytes:
    """The DATA (after TYPE) of a frame of ``frame_type`` carrying ``record`` in ``framing``."""
    if isinstance(record, RsuStatus):
        if framing is Framing.GENVICT and frame_type is FrameType.OBU_INFO:
            return bytes((record.status, record.rsu_switch or 0, record.psam_auth or 0))
        if record.raw and record.raw[0] != record.status:
            raise ValueError("RsuStatus.raw must start with the status byte")
        return record.raw or bytes((record.status,))
    if isinstance(record, Heartbeat):
        return record.raw or (_HEARTBEAT_B2 if frame_type is FrameType.OBU_INFO else b"")
    head = _fixed(record.obu_id, 4, "OBUID")
    if isinstance(record, ObuInfo):
        return head + _obu_info(framing, record)
    if isinstance(record, VehicleInfo):
        tail = b"" if record.vehicle_file is None else vehicle_file_bytes(record.vehicle_file)
        return head + _u8(record.error) + tail
    if isinstance(record, CardInfo):
        return head + _card_info(framing, record)
    if framing is Framing.GENVICT:
        return head + _u8(record.obu_type) + _u8(record.error) + record.rest
    if framing is Framing.ITS and record.psam_id is not None:
        psam, time = _fixed(record.psam_id, 6, "PSAM id"), _fixed(record.time_bcd, 7, "time")
        return head + _u8(record.error) + psam + time + record.rest
    return head + _u8(record.error) + record.rest


def _obu_info(framing: Framing, r: ObuInfo) -> bytes:
    error = _u8(r.error)
    if r.issuer is None:
        return error
    issuer, serial = _fixed(r.issuer, 8, "issuer"), _fixed(r.serial, 8, "serial")
    dates = _fixed(r.issued, 4, "issued") + _fixed(r.expires, 4, "expires")
    if framing is Framing.ITS:
        return (
            error + _u8(r.antenna) + _u8(r.device_type) + issuer + _u8(r.contract_type) + _u8(r.contract_version)
            + serial + dates + _u8(r.equipment) + _u8(r.obu_status) + _u8(r.tamper)
        )  # fmt: skip
    contract = b"" if r.contract_type is None else _u8(r.contract_type) + _u8(r.contract_version)
    return error + issuer + contract + serial + dates + _u8(r.equipment) + _int(r.obu_status, 2)


def _card_info(framing: Framing, r: CardInfo) -> bytes:
    if framing is Framing.GENVICT:
        return (
            _u8(r.obu_type) + _u8(r.card_present) + _u8(r.obu_status) + _fixed(r.system_info, 26, "system info")
            + _files(r, with_vehicle=True, balance_after_card=True) + r.rest
        )  # fmt: skip
    if r.card_file is None:
        return _u8(r.error)
    if framing is Framing.ITS:
        return _u8(r.error) + _u8(r.trans_type) + _files(r, with_vehicle=True, balance_after_card=False)
    return (
        _u8(r.error) + _u8(r.card_type) + _u8(r.physical_card_type) + _u8(r.trans_type) + _int(r.balance, 4)
        + _fixed(r.card_id, 4, "card id") + card_file_bytes(r.card_file) + _fixed(r.file_0019, 43, "file 0019")
    )  # fmt: skip


def _files(r: CardInfo, *, with_vehicle: bool, balance_after_card: bool) -> bytes:
    if r.vehicle_file is None or r.card_file is None:
        raise ValueError("this layout carries both the vehicle file and the card file")
    vehicle, card = vehicle_file_bytes(r.vehicle_file), card_file_bytes(r.card_file)
    balance, file_0019 = _int(r.balance, 4), _fixed(r.file_0019, 43, "file 0019")
    if balance_after_card:
        return vehicle + card + balance + file_0019
    return vehicle + balance + card + file_0019


def plate_field(plate: str) -> bytes:
    """A plate as the 12-byte GB2312 field, zero padded."""
    raw = plate.encode("gb2312")
    if len(raw) > PLATE_BYTES:
        raise ValueError(f"plate {plate!r} takes {len(raw)} bytes in GB2312, the field has {PLATE_BYTES}")
    return raw.ljust(PLATE_BYTES, b"\x00")


def vehicle_file_for(
    plate: str, color: PlateColor | int, vehicle_class: int = 1, user_type: int = 0, size: int = 59
) -> VehicleFile:
    """An EF01 vehicle file (``size`` 59 or 79; 16 for a lane B3 short form) naming the vehicle."""
    if size not in (16, *VEHICLE_FILE_SIZES):
        raise ValueError(f"a vehicle file has 59 or 79 bytes (16 in short form), not {size}")
    code = color.etc_code if isinstance(color, PlateColor) else color
    return VehicleFile(plate_field(plate), code, vehicle_class, user_type, bytes(size - 16))


def card_file_for(
    plate: str, color: PlateColor | int, vehicle_class: int = 1, user_type: int = 0, size: int = 43,
    card_number: bytes = b"\x44\x01\x23\x45\x67\x89\x01\x23", issuer: bytes = b"\xb9\xe3\xb6\xab\x44\x01\x00\x01",
) -> CardFile:  # fmt: skip
    """A card file 0015 (``size`` 43 or 50) naming the vehicle."""
    if size not in CARD_FILE_SIZES:
        raise ValueError(f"a card file 0015 has 43 or 50 bytes, not {size}")
    code = color.etc_code if isinstance(color, PlateColor) else color
    return CardFile(
        issuer=issuer,
        card_type=0x16,
        version=0x40,
        network=b"\x44\x01",
        card_number=card_number,
        start=b"\x20\x24\x01\x01",
        expiry=b"\x20\x34\x01\x01",
        plate_raw=plate_field(plate),
        user_type=user_type,
        color_code=code,
        vehicle_class=vehicle_class,
        rest=bytes(size - 43),
    )
