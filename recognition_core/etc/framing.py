"""The three framings of RSU frames (DESIGN section 14): taking a frame apart and putting one together.

| framing   | layout                                              | check                         |
|-----------|-----------------------------------------------------|-------------------------------|
| `lane`    | FF FF · RSCTL · TYPE · DATA · BCC · FF, escaped     | BCC = XOR of RSCTL..DATA      |
| `its`     | FF FF · VER(00) · SEQ · LEN(u32) · TYPE · DATA · CRC | CRC-16/X-25 over VER..DATA   |
| `genvict` | FF FF · LEN(u16) · TYPE · DATA · CRC                | CRC-16/X-25 over LEN..DATA    |

``LEN`` counts TYPE and DATA, which is what ``wrap`` writes; a frame whose ``LEN`` counts DATA
alone (one less) is also accepted, since with the whole frame in hand the two readings can never
be confused and the CRC covers ``LEN`` either way.
"""

from __future__ import annotations

from dataclasses import dataclass

from recognition_core.etc.checks import bcc, crc16_x25, escape, unescape
from recognition_core.etc.records import MAX_FRAME_BYTES, FrameError, Framing

START = b"\xff\xff"
ITS_HEADER = 8  # FF FF VER SEQ LEN(4)
GENVICT_HEADER = 4  # FF FF LEN(2)
LANE_MIN = 6  # FF FF RSCTL TYPE BCC FF
ITS_MIN = ITS_HEADER + 1 + 2
GENVICT_MIN = GENVICT_HEADER + 1 + 2


@dataclass(frozen=True, slots=True)
class RawFrame:
    """A frame whose framing check passed: its type byte, sequence byte and DATA (after TYPE)."""

    framing: Framing
    frame_type: int
    seq: int
    payload: bytes


def unwrap(data: bytes, framing: Framing) -> RawFrame:
    """Check one complete frame in ``framing`` and return its parts, or raise ``FrameError``."""
    if len(data) > MAX_FRAME_BYTES:
        raise FrameError("too_long", f"{framing.value}: frame of {len(data)} bytes exceeds {MAX_FRAME_BYTES}")
    if framing is Framing.LANE:
        return _unwrap_lane(data)
    if framing is Framing.ITS:
        return _unwrap_its(data)
    return _unwrap_genvict(data)


def _unwrap_lane(data: bytes) -> RawFrame:
    if len(data) < LANE_MIN:
        raise FrameError("short", f"lane: {len(data)} bytes, a frame has at least {LANE_MIN}")
    if data[:2] != START:
        raise FrameError("start", f"lane: frame starts {data[:2].hex()}, not ffff")
    if data[-1] != 0xFF:
        raise FrameError("end", f"lane: frame ends {data[-1]:02x}, not ff")
    try:
        inner = unescape(data[2:-1])
    except ValueError as exc:
        raise FrameError("escape", f"lane: {exc}") from None
    if len(inner) < 3:
        raise FrameError("short", f"lane: {len(inner)} bytes between the marks after unescaping, at least 3 needed")
    body, check = inner[:-1], inner[-1]
    computed = bcc(body)
    if computed != check:
        raise FrameError("bcc", f"lane: BCC is {check:02x}, the bytes give {computed:02x}")
    return RawFrame(Framing.LANE, body[1], body[0], body[2:])


def _check_len(framing: Framing, declared: int, carried: int) -> None:
    if declared != carried and declared != carried - 1:
        raise FrameError(
            "length", f"{framing.value}: LEN says {declared} bytes, the frame carries {carried} (TYPE and DATA)"
        )


def _check_crc(framing: Framing, covered: bytes, sent: bytes) -> None:
    computed = crc16_x25(covered)
    declared = int.from_bytes(sent, "big")
    if computed != declared:
        raise FrameError("crc", f"{framing.value}: CRC is {declared:04x}, the bytes give {computed:04x}")


def _unwrap_its(data: bytes) -> RawFrame:
    if len(data) < ITS_MIN:
        raise FrameError("short", f"its: {len(data)} bytes, a frame has at least {ITS_MIN}")
    if data[:2] != START:
        raise FrameError("start", f"its: frame starts {data[:2].hex()}, not ffff")
    if data[2] != 0:
        raise FrameError("version", f"its: version {data[2]:02x}, only 00 is known")
    _check_len(Framing.ITS, int.from_bytes(data[4:8], "big"), len(data) - ITS_HEADER - 2)
    _check_crc(Framing.ITS, data[2:-2], data[-2:])
    return RawFrame(Framing.ITS, data[ITS_HEADER], data[3], data[ITS_HEADER + 1 : -2])


def _unwrap_genvict(data: bytes) -> RawFrame:
    if len(data) < GENVICT_MIN:
        raise FrameError("short", f"genvict: {len(data)} bytes, a frame has at least {GENVICT_MIN}")
    if data[:2] != START:
        raise FrameError("start", f"genvict: frame starts {data[:2].hex()}, not ffff")
    _check_len(Framing.GENVICT, int.from_bytes(data[2:4], "big"), len(data) - GENVICT_HEADER - 2)
    _check_crc(Framing.GENVICT, data[2:-2], data[-2:])
    return RawFrame(Framing.GENVICT, data[GENVICT_HEADER], 0, data[GENVICT_HEADER + 1 : -2])


def wrap(framing: Framing, frame_type: int, payload: bytes, seq: int = 0) -> bytes:
    """Put ``payload`` (DATA after TYPE) into one frame; ``seq`` is the lane RSCTL or its SEQ."""
    if not 0 <= frame_type <= 0xFF or not 0 <= seq <= 0xFF:
        raise ValueError("frame type and sequence are single bytes")
    if len(payload) > MAX_FRAME_BYTES:
        raise FrameError("too_long", f"{framing.value}: payload of {len(payload)} bytes exceeds {MAX_FRAME_BYTES}")
    if framing is Framing.LANE:
        body = bytes((seq, frame_type)) + payload
        frame = START + escape(body + bytes((bcc(body),))) + b"\xff"
    elif framing is Framing.ITS:
        body = bytes((0, seq)) + (1 + len(payload)).to_bytes(4, "big") + bytes((frame_type,)) + payload
        frame = START + body + crc16_x25(body).to_bytes(2, "big")
    else:
        body = (1 + len(payload)).to_bytes(2, "big") + bytes((frame_type,)) + payload
        frame = START + body + crc16_x25(body).to_bytes(2, "big")
    if len(frame) > MAX_FRAME_BYTES:
        raise FrameError("too_long", f"{framing.value}: frame of {len(frame)} bytes exceeds {MAX_FRAME_BYTES}")
    return frame
