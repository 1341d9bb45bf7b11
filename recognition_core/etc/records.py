"""Typed records for the frames an ETC roadside unit (RSU, 路侧单元) sends the lot controller.

A decoded frame is a ``Frame``: the framing it came in, its type byte, its sequence byte and one
record per frame type (DESIGN section 14). ``Frame.vehicle`` is the vehicle the frame places, if
any. Identifiers and files that are opaque to the lot (issuer, serial, card number, BCD dates)
are kept as the bytes that were sent.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from crosspark.identity import PlateColor

#: Longest frame accepted on the wire (escaped lane frames included); anything longer is refused.
MAX_FRAME_BYTES = 4096


class FrameError(ValueError):
    """A frame that cannot be checked or placed. ``reason`` is a stable code, the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Framing(enum.Enum):
    """How frames are delimited and checked on the wire."""

    LANE = "lane"  # FF FF · RSCTL · TYPE · DATA · BCC · FF, escaped
    ITS = "its"  # FF FF · VER · SEQ · LEN(u32) · TYPE · DATA · CRC16
    GENVICT = "genvict"  # FF FF · LEN(u16) · TYPE · DATA · CRC16


class FrameType(enum.IntEnum):
    """The type byte of a frame from the RSU."""

    RSU_STATUS = 0xB0
    HEARTBEAT = 0xB1
    OBU_INFO = 0xB2
    VEHICLE_INFO = 0xB3
    CARD_INFO = 0xB4
    TRANSACTION_RESULT = 0xB5

    @property
    def code(self) -> str:
        """The type as written in the protocol tables: ``"B3"``."""
        return f"{self.value:02X}"


class VehicleSource(enum.Enum):
    """Which field of the frame a vehicle was read from."""

    B3_SHORT = "b3"  # plate, colour, class, user type straight in a lane B3 frame
    VEHICLE_FILE = "ef01"  # the OBU's vehicle file EF01
    CARD_FILE = "0015"  # the card's file 0015 (when EF01 is all zeros or absent)


@dataclass(frozen=True, slots=True)
class Vehicle:
    """A vehicle placed by a frame. ``plate`` is normalised text; ``plate_valid`` says whether it
    follows GA 36 (test OBUs carry ``测A12345``). The raw colour and class codes are kept."""

    plate: str
    color: PlateColor
    color_code: int
    vehicle_class: int
    user_type: int
    plate_valid: bool
    source: VehicleSource


@dataclass(frozen=True, slots=True)
class VehicleFile:
    """The OBU's vehicle file EF01 (59 or 79 bytes), or the 16-byte short form of a lane B3 frame.

    ``plate_raw`` is the 12-byte GB2312 field as sent (zero padded); ``rest`` is everything after
    the user type (dimensions and the rest, not interpreted here)."""

    plate_raw: bytes
    color_code: int
    vehicle_class: int
    user_type: int
    rest: bytes

    @property
    def size(self) -> int:
        return 16 + len(self.rest)


@dataclass(frozen=True, slots=True)
class CardFile:
    """The card's file 0015 (43 or 50 bytes); BCD and identifier fields are kept as sent."""

    issuer: bytes
    card_type: int
    version: int
    network: bytes
    card_number: bytes
    start: bytes
    expiry: bytes
    plate_raw: bytes
    user_type: int
    color_code: int
    vehicle_class: int
    rest: bytes

    @property
    def size(self) -> int:
        return 43 + len(self.rest)


@dataclass(frozen=True, slots=True)
class RsuStatus:
    """RSU status: a ``B0`` frame (layout not published: status byte, rest kept raw), or a genvict
    ``B2`` frame (status, RSU switch, PSAM authorisation)."""

    status: int
    rsu_switch: int | None
    psam_auth: int | None
    raw: bytes


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A heartbeat: a ``B1`` frame, or a ``B2`` frame with OBUID ``00000000`` and error ``80``."""

    raw: bytes


@dataclass(frozen=True, slots=True)
class ObuInfo:
    """OBU information (``B2``). Fields are ``None`` where the framing's layout lacks them, and all
    but ``obu_id`` and ``error`` are ``None`` in an error-only frame (error not zero, 5 bytes)."""

    obu_id: bytes
    error: int
    issuer: bytes | None
    contract_type: int | None
    contract_version: int | None
    serial: bytes | None
    issued: bytes | None
    expires: bytes | None
    equipment: int | None
    obu_status: int | None
    antenna: int | None = None
    device_type: int | None = None
    tamper: int | None = None


@dataclass(frozen=True, slots=True)
class VehicleInfo:
    """Vehicle information (``B3``): the short form or the full vehicle file; ``None`` in an
    error-only frame."""

    obu_id: bytes
    error: int
    vehicle_file: VehicleFile | None


@dataclass(frozen=True, slots=True)
class CardInfo:
    """Card / vehicle information (``B4``). ``error`` is ``None`` in the genvict layout (it has none);
    fields absent from a framing's layout are ``None``; ``rest`` holds genvict's trailing bytes."""

    obu_id: bytes
    error: int | None
    card_file: CardFile | None
    file_0019: bytes | None
    balance: int | None
    trans_type: int | None = None
    vehicle_file: VehicleFile | None = None
    card_type: int | None = None
    physical_card_type: int | None = None
    card_id: bytes | None = None
    obu_type: int | None = None
    card_present: int | None = None
    obu_status: int | None = None
    system_info: bytes | None = None
    rest: bytes = b""


@dataclass(frozen=True, slots=True)
class TransactionResult:
    """Transaction result (``B5``): only the published head is interpreted, ``rest`` is raw."""

    obu_id: bytes
    error: int
    obu_type: int | None
    psam_id: bytes | None
    time_bcd: bytes | None
    rest: bytes


Record = RsuStatus | Heartbeat | ObuInfo | VehicleInfo | CardInfo | TransactionResult


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame. ``seq`` is the lane RSCTL or the its SEQ byte (0 for genvict)."""

    framing: Framing
    frame_type: FrameType
    seq: int
    record: Record
    vehicle: Vehicle | None

    @property
    def obu_id(self) -> str | None:
        """The OBU id as lower-case hex, or ``None`` for frames about the RSU itself."""
        obu = getattr(self.record, "obu_id", None)
        return obu.hex() if obu is not None else None

    @property
    def is_heartbeat(self) -> bool:
        return isinstance(self.record, Heartbeat)

    def to_json(self) -> dict[str, Any]:
        """The ``crosspark etc decode --json`` line for this frame (DESIGN section 15)."""
        vehicle = None
        if self.vehicle is not None:
            vehicle = {
                "plate": self.vehicle.plate,
                "color": self.vehicle.color.value,
                "vehicle_class": self.vehicle.vehicle_class,
                "plate_valid": self.vehicle.plate_valid,
            }
        return {
            "ok": True,
            "framing": self.framing.value,
            "frame_type": self.frame_type.code,
            "obu_id": self.obu_id,
            "vehicle": vehicle,
        }
