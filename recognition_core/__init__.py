"""Recognition core: gate-camera plate reading and ETC frame decoding, all yielding `VehicleIdentity` values."""
