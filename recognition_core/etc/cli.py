"""``crosspark etc``: ETC roadside-unit frames from the command line (DESIGN section 15).

``crosspark etc decode [--framing auto|lane|its|genvict] --json HEX…`` prints one JSON line per
frame: ``{"ok": true, "framing", "frame_type", "obu_id", "vehicle": {...} | null}`` or
``{"ok": false, "error"}``. A bad frame is reported, not fatal: the exit status is 0 unless the
command line itself is wrong.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

import click

from recognition_core.etc.decode import AUTO, FRAMING_NAMES
from recognition_core.etc.fast import decode
from recognition_core.etc.records import MAX_FRAME_BYTES, Frame, FrameError

_SEPARATORS = str.maketrans("", "", " \t\r\n:")


def decode_hex(text: str, framing: str = AUTO) -> Frame:
    """Decode a frame given as hexadecimal (spaces and colons allowed, optional ``0x``)."""
    cleaned = text.translate(_SEPARATORS)
    if cleaned[:2].lower() == "0x":
        cleaned = cleaned[2:]
    if len(cleaned) > 2 * MAX_FRAME_BYTES:
        raise FrameError("too_long", f"{len(cleaned) // 2} bytes exceeds {MAX_FRAME_BYTES}")
    try:
        data = bytes.fromhex(cleaned)
    except ValueError:
        raise FrameError("hex", f"not hexadecimal: {text[:40]!r}") from None
    if not data:
        raise FrameError("short", "empty frame")
    return decode(data, framing)


def result_of(text: str, framing: str = AUTO) -> dict[str, Any]:
    """The JSON object of one frame: the decoded frame or ``{"ok": false, "error": …}``."""
    try:
        return decode_hex(text, framing).to_json()
    except FrameError as exc:
        return {"ok": False, "error": str(exc)}


def describe(result: dict[str, Any]) -> str:
    """One human line for a result."""
    if not result["ok"]:
        return f"error  {result['error']}"
    obu = f"  obu {result['obu_id']}" if result["obu_id"] else ""
    vehicle = result["vehicle"]
    if vehicle is None:
        what = "no vehicle"
    else:
        what = f"{vehicle['plate']} {vehicle['color']} class {vehicle['vehicle_class']}"
        if not vehicle["plate_valid"]:
            what += " (not a valid plate)"
    return f"{result['framing']:<7}  {result['frame_type']}{obu}  {what}"


def _inputs(frames: Iterable[str]) -> Iterable[str]:
    for item in frames:
        if item == "-":
            yield from (line for line in sys.stdin.read().splitlines() if line.strip())
        else:
            yield item


@click.group("etc")
def etc() -> None:
    """ETC roadside-unit (RSU) frames."""


@etc.command("decode")
@click.option(
    "--framing",
    type=click.Choice(FRAMING_NAMES),
    default=AUTO,
    show_default=True,
    help="The RSU's framing; auto accepts a frame only when exactly one framing's check passes.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON line per frame.")
@click.argument("frames", nargs=-1, required=True, metavar="HEX…")
def decode_command(framing: str, as_json: bool, frames: tuple[str, ...]) -> None:
    """Decode frames given in hexadecimal (``-`` reads one frame per line from standard input)."""
    for text in _inputs(frames):
        result = result_of(text, framing)
        click.echo(json.dumps(result, ensure_ascii=False) if as_json else describe(result))
