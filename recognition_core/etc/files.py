"""The OBU's vehicle file EF01 and the card's file 0015, and placing the vehicle they describe.

EF01 (59 or 79 bytes): plate 12 (GB2312, zero padded), colour 2, class 1, user type 1, then
dimensions and the rest. 0015 (43 or 50 bytes): issuer 8, card type 1, version 1, network 2,
card number 8, start 4, expiry 4, plate 12 at offset 28, user type 1, plate colour 1, class 1.
When EF01 is all zeros, the plate and colour come from 0015.
"""

from __future__ import annotations

from crosspark.identity import PlateColor
from crosspark.plate import PlateError, is_valid, normalize
from recognition_core.etc.records import CardFile, FrameError, Vehicle, VehicleFile, VehicleSource

PLATE_BYTES = 12
SHORT_VEHICLE_BYTES = 16  # plate, colour, class, user type: the head of EF01 and a lane B3 short form
VEHICLE_FILE_SIZES = (59, 79)
CARD_FILE_SIZES = (43, 50)
CARD_FILE_PLATE_OFFSET = 28


def plate_text(raw: bytes) -> str | None:
    """The normalised text of a GB2312, zero-padded plate field; ``None`` when the field is blank.

    Bytes that are not GB2312 (or a zero inside the text) become U+FFFD, so the text can never pass
    for a valid plate."""
    stripped = raw.rstrip(b"\x00")
    if not stripped:
        return None
    text = stripped.decode("gb2312", errors="replace").replace("\x00", "\ufffd")
    try:
        return normalize(text)
    except PlateError:  # pragma: no cover - 12 bytes never exceed the length bound
        return text


def color_of(code: int, where: str) -> PlateColor:
    """Map an ETC plate colour code; an unknown one is a ``FrameError`` (the vehicle cannot be placed)."""
    try:
        return PlateColor.from_etc_code(code)
    except ValueError:
        raise FrameError("color", f"{where}: unknown plate colour code {code}") from None


def parse_vehicle_file(data: bytes, where: str, sizes: tuple[int, ...] = VEHICLE_FILE_SIZES) -> VehicleFile:
    """Parse EF01 (or its 16-byte head, when ``sizes`` allows it)."""
    if len(data) not in sizes:
        allowed = " or ".join(str(s) for s in sizes)
        raise FrameError("length", f"{where}: vehicle file of {len(data)} bytes, expected {allowed}")
    return VehicleFile(
        plate_raw=data[:PLATE_BYTES],
        color_code=int.from_bytes(data[12:14], "big"),
        vehicle_class=data[14],
        user_type=data[15],
        rest=data[SHORT_VEHICLE_BYTES:],
    )


def parse_card_file(data: bytes, where: str) -> CardFile:
    """Parse the card file 0015 (43 or 50 bytes; the last 7 of the long form are kept raw)."""
    if len(data) not in CARD_FILE_SIZES:
        raise FrameError("length", f"{where}: card file 0015 of {len(data)} bytes, expected 43 or 50")
    return CardFile(
        issuer=data[0:8],
        card_type=data[8],
        version=data[9],
        network=data[10:12],
        card_number=data[12:20],
        start=data[20:24],
        expiry=data[24:28],
        plate_raw=data[28:40],
        user_type=data[40],
        color_code=data[41],
        vehicle_class=data[42],
        rest=data[43:],
    )


def is_blank(vehicle_file: VehicleFile) -> bool:
    """Whether a vehicle file is all zeros (an OBU without vehicle data)."""
    return (
        not any(vehicle_file.plate_raw)
        and not any(vehicle_file.rest)
        and not (vehicle_file.color_code or vehicle_file.vehicle_class or vehicle_file.user_type)
    )


def vehicle_from_vehicle_file(vehicle_file: VehicleFile, source: VehicleSource) -> Vehicle | None:
    """The vehicle EF01 (or a B3 short form) describes; ``None`` when its plate is blank."""
    plate = plate_text(vehicle_file.plate_raw)
    if plate is None:
        return None
    where = "B3" if source is VehicleSource.B3_SHORT else "EF01"
    return Vehicle(
        plate=plate,
        color=color_of(vehicle_file.color_code, where),
        color_code=vehicle_file.color_code,
        vehicle_class=vehicle_file.vehicle_class,
        user_type=vehicle_file.user_type,
        plate_valid=is_valid(plate),
        source=source,
    )


def vehicle_from_card_file(card_file: CardFile) -> Vehicle | None:
    """The vehicle the card file 0015 names; ``None`` when its plate is blank."""
    plate = plate_text(card_file.plate_raw)
    if plate is None:
        return None
    return Vehicle(
        plate=plate,
        color=color_of(card_file.color_code, "0015"),
        color_code=card_file.color_code,
        vehicle_class=card_file.vehicle_class,
        user_type=card_file.user_type,
        plate_valid=is_valid(plate),
        source=VehicleSource.CARD_FILE,
    )


def place_vehicle(vehicle_file: VehicleFile | None, card_file: CardFile | None) -> Vehicle | None:
    """EF01 names the vehicle; only when EF01 is absent or all zeros does 0015 stand in."""
    if vehicle_file is not None and not is_blank(vehicle_file):
        source = VehicleSource.B3_SHORT if vehicle_file.size == SHORT_VEHICLE_BYTES else VehicleSource.VEHICLE_FILE
        return vehicle_from_vehicle_file(vehicle_file, source)
    if card_file is not None:
        return vehicle_from_card_file(card_file)
    return None
