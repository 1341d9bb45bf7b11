"""Frame checks and the lane framing's byte escaping, in plain Python (the reference)."""

from __future__ import annotations


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16_x25(data: bytes) -> int:
    """CRC-16/X-25: init FFFF, reflected polynomial 8408, final XOR FFFF (``b"123456789"`` → 906E)."""
    crc = 0xFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc ^ 0xFFFF


def bcc(data: bytes) -> int:
    """Block check character: XOR of every byte."""
    value = 0
    for byte in data:
        value ^= byte
    return value


def escape(data: bytes) -> bytes:
    """Lane escaping of the bytes between start and end marks: ``FF``→``FE 01``, ``FE``→``FE 00``."""
    return data.replace(b"\xfe", b"\xfe\x00").replace(b"\xff", b"\xfe\x01")


def unescape(data: bytes) -> bytes:
    """Undo lane escaping; ``FE`` followed by anything but ``00``/``01``, a bare ``FF`` or a trailing
    ``FE`` is a ``ValueError`` naming the offset."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        byte = data[i]
        if byte == 0xFE:
            if i + 1 >= n:
                raise ValueError(f"escape byte FE at offset {i} ends the frame")
            follow = data[i + 1]
            if follow > 1:
                raise ValueError(f"escape byte FE at offset {i} is followed by {follow:02X}, not 00 or 01")
            out.append(0xFE | follow)
            i += 2
        elif byte == 0xFF:
            raise ValueError(f"unescaped FF at offset {i}")
        else:
            out.append(byte)
            i += 1
    return bytes(out)
