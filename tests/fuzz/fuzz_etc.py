"""atheris harness for the ETC decoders and the stream reader (not collected by pytest).

    pip install atheris && python tests/fuzz/fuzz_etc.py -max_total_time=300

Properties: nothing but ``FrameError`` escapes; the compiled decoder gives what the reference gives;
a one-byte change to a frame that places a vehicle never places a different vehicle.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from recognition_core.etc import FrameError, decode_reference, fast
    from recognition_core.etc.stream import StreamReader

FRAMINGS = ("auto", "lane", "its", "genvict")


def outcome(decoder, data: bytes, framing: str):  # type: ignore[no-untyped-def]
    try:
        return decoder(data, framing)
    except FrameError as exc:
        return ("error", str(exc))


def test_one_input(raw: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(raw)
    framing = FRAMINGS[fdp.ConsumeIntInRange(0, 3)]
    data = b"\xff\xff" + fdp.ConsumeBytes(fdp.remaining_bytes())
    expected = outcome(decode_reference, data, framing)
    if outcome(fast.decode, data, framing) != expected:
        raise AssertionError(f"compiled and reference decoders differ on {data.hex()} ({framing})")
    if not isinstance(expected, tuple) and expected.vehicle is not None:
        for i in range(len(data)):
            mutated = data[:i] + bytes((data[i] ^ 0x5A,)) + data[i + 1 :]
            got = outcome(decode_reference, mutated, framing)
            if not isinstance(got, tuple) and got.vehicle != expected.vehicle:
                raise AssertionError(f"a one-byte change at {i} placed another vehicle: {mutated.hex()}")
    reader = StreamReader(framing)
    for start in range(0, len(data), 7):
        reader.feed(data[start : start + 7])
    reader.flush()


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
