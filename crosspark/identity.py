"""Vehicle identity (车辆信息): plate number + plate colour, and where the reading came from."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class PlateColor(enum.Enum):
    """Plate colour (车牌颜色). The value is the lower-case name used in JSON output."""

    BLUE = "blue"
    YELLOW = "yellow"
    BLACK = "black"
    WHITE = "white"
    GREEN = "green"  # gradient green, small new-energy vehicles
    YELLOW_GREEN = "yellow_green"  # large new-energy vehicles
    BLUE_WHITE = "blue_white"

    @classmethod
    def from_etc_code(cls, code: int) -> PlateColor:
        """Map an ETC colour code (GB/T 20851, JT/T 489) to a colour; 9 is a vendor's blue-white."""
        try:
            return _ETC_COLOR_CODES[code]
        except KeyError:
            raise ValueError(f"unknown ETC plate colour code {code}") from None

    @property
    def etc_code(self) -> int:
        return _ETC_CODE_OF[self]


_ETC_COLOR_CODES = {
    0: PlateColor.BLUE,
    1: PlateColor.YELLOW,
    2: PlateColor.BLACK,
    3: PlateColor.WHITE,
    4: PlateColor.GREEN,
    5: PlateColor.YELLOW_GREEN,
    6: PlateColor.BLUE_WHITE,
    9: PlateColor.BLUE_WHITE,
}
_ETC_CODE_OF = {color: code for code, color in _ETC_COLOR_CODES.items() if code != 9}


class IdentitySource(enum.Enum):
    CAMERA = "camera"
    ETC = "etc"
    MANUAL = "manual"


@dataclass(frozen=True, slots=True)
class VehicleIdentity:
    """A vehicle as read at a gate. ``plate`` is normalised; ``confidence`` is in [0, 1].

    ETC readings also carry the OBU contract serial, its issuer and the JT/T 489 vehicle class.
    """

    plate: str
    color: PlateColor
    source: IdentitySource = IdentitySource.MANUAL
    confidence: float = 1.0
    obu_serial: str = ""
    obu_issuer: str = ""
    vehicle_class: int = 0

    @property
    def key(self) -> tuple[str, PlateColor]:
        """What identifies the vehicle: 粤B12345 blue and 粤B12345 yellow are two vehicles."""
        return (self.plate, self.color)
