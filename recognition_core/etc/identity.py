"""Turning a decoded ETC frame into the ``VehicleIdentity`` the gate decides on."""

from __future__ import annotations

from crosspark.identity import IdentitySource, VehicleIdentity
from recognition_core.etc.records import Frame, FrameError, ObuInfo


def to_identity(frame: Frame, obu_info: ObuInfo | None = None) -> VehicleIdentity:
    """The ETC identity of the vehicle ``frame`` places, with the OBU contract serial and issuer
    from ``obu_info`` (the ``B2`` frame of the same OBU, when the RSU sent one).

    Raises ``FrameError`` when the frame places no vehicle or its plate is not a valid GA 36 plate
    (a test OBU): an identity is never made from a plate the grammar refuses."""
    vehicle = frame.vehicle
    if vehicle is None:
        raise FrameError("no_vehicle", f"{frame.framing.value} {frame.frame_type.code} frame places no vehicle")
    if not vehicle.plate_valid:
        raise FrameError("plate", f"OBU plate {vehicle.plate!r} is not a valid GA 36 plate")
    serial = issuer = ""
    obu_id = getattr(frame.record, "obu_id", None)
    if obu_info is not None and obu_info.obu_id == obu_id:
        serial = obu_info.serial.hex() if obu_info.serial is not None else ""
        issuer = obu_info.issuer.hex() if obu_info.issuer is not None else ""
    return VehicleIdentity(
        plate=vehicle.plate,
        color=vehicle.color,
        source=IdentitySource.ETC,
        confidence=1.0,
        obu_serial=serial,
        obu_issuer=issuer,
        vehicle_class=vehicle.vehicle_class,
    )
