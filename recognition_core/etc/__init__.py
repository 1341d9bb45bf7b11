"""ETC frame decoding: RSU frames (lane, its and genvict framings) into typed records and the
vehicle identity (DESIGN section 14).

``decode(data, framing)`` decodes one frame (the compiled decoder; ``decode_reference`` is the
pure-Python reference it is tested against, with identical results), ``StreamReader`` splits a byte
stream into frames, ``encode`` writes frames (tests, the simulated RSU), ``to_identity`` makes the
``VehicleIdentity``. Every failure is a ``FrameError`` whose message says why.
"""

from recognition_core.etc.decode import AUTO, FRAMING_NAMES, decode_raw
from recognition_core.etc.decode import decode as decode_reference
from recognition_core.etc.encode import card_file_for, encode, encode_frame, plate_field, vehicle_file_for
from recognition_core.etc.fast import decode, decode_many
from recognition_core.etc.framing import RawFrame, unwrap, wrap
from recognition_core.etc.identity import to_identity
from recognition_core.etc.records import (
    MAX_FRAME_BYTES,
    CardFile,
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
    VehicleFile,
    VehicleInfo,
    VehicleSource,
)
from recognition_core.etc.stream import StreamReader

__all__ = [
    "AUTO",
    "FRAMING_NAMES",
    "MAX_FRAME_BYTES",
    "CardFile",
    "CardInfo",
    "Frame",
    "FrameError",
    "FrameType",
    "Framing",
    "Heartbeat",
    "ObuInfo",
    "RawFrame",
    "Record",
    "RsuStatus",
    "StreamReader",
    "TransactionResult",
    "Vehicle",
    "VehicleFile",
    "VehicleInfo",
    "VehicleSource",
    "card_file_for",
    "decode",
    "decode_many",
    "decode_raw",
    "decode_reference",
    "encode",
    "encode_frame",
    "plate_field",
    "to_identity",
    "unwrap",
    "vehicle_file_for",
    "wrap",
]
