"""Readings of a vehicle at a gate: a camera photo through ``recognition_core``, an RSU frame
through the ETC decoder, or an identity a device sends. Each becomes a ``VehicleIdentity``."""

from __future__ import annotations

from dataclasses import dataclass, replace

from crosspark import plate as plates
from crosspark.errors import InvalidArgument
from crosspark.identity import IdentitySource, VehicleIdentity

MAX_IMAGE_BYTES = 16 * 1024 * 1024
MAX_IMAGE_SIDE = 8000
MAX_FRAME_BYTES = 4096
FRAMINGS = ("auto", "lane", "its", "genvict")


@dataclass(frozen=True, slots=True)
class CameraReading:
    """The most confident plate of a photo (None when none read) and every plate read."""

    best: VehicleIdentity | None
    candidates: tuple[VehicleIdentity, ...]


def read_camera(image: bytes) -> CameraReading:
    """Recognise the plates of a JPEG or PNG photo. An image that cannot be decoded or is too
    large is ``InvalidArgument`` on ``image``."""
    if len(image) > MAX_IMAGE_BYTES:
        raise InvalidArgument.field("image", f"{len(image)} bytes is more than {MAX_IMAGE_BYTES} (16 MiB)")
    from recognition_core.pipeline import ImageRefused, read_image, recognize

    try:
        pixels = read_image(image)
    except ImageRefused as exc:
        raise InvalidArgument.field("image", str(exc)) from None
    height, width = pixels.shape[:2]
    if height > MAX_IMAGE_SIDE or width > MAX_IMAGE_SIDE:
        raise InvalidArgument.field(
            "image", f"{width}×{height} pixels is larger than {MAX_IMAGE_SIDE}×{MAX_IMAGE_SIDE}"
        )
    found = tuple(r.identity for r in recognize(pixels))
    return CameraReading(found[0] if found else None, found)


def read_etc(frame: bytes, framing: str) -> VehicleIdentity:
    """The vehicle an RSU frame places; ``InvalidArgument`` on ``etc_frame`` saying why not."""
    if len(frame) > MAX_FRAME_BYTES:
        raise InvalidArgument.field("etc_frame", f"{len(frame)} bytes is more than {MAX_FRAME_BYTES}")
    if framing not in FRAMINGS:
        raise InvalidArgument.field("etc_framing", f"{framing!r} is not one of {', '.join(FRAMINGS)}")
    from recognition_core.etc import FrameError, decode, to_identity

    try:
        return to_identity(decode(frame, framing))
    except FrameError as exc:
        raise InvalidArgument.field("etc_frame", str(exc)) from None


def checked_identity(identity: VehicleIdentity, field: str = "identity") -> VehicleIdentity:
    """A device's identity with its plate normalised; ``InvalidArgument`` naming the broken rule."""
    try:
        plate = plates.parse(identity.plate)
    except plates.PlateError as exc:
        raise InvalidArgument.field(f"{field}.plate", f"{exc} (rule: {exc.rule})") from None
    if not 0.0 <= identity.confidence <= 1.0:
        raise InvalidArgument.field(f"{field}.confidence", "must be in [0, 1]")
    return replace(identity, plate=plate)


def is_etc(identity: VehicleIdentity) -> bool:
    return identity.source is IdentitySource.ETC
