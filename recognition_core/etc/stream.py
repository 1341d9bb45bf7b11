"""Splitting a byte stream from a serial line or TCP socket into RSU frames.

The reader looks for ``FF FF``, takes the frame the framing describes from there (lane: up to the
next ``FF``; its and genvict: the length ``LEN`` gives) and decodes it. Garbage between frames is
skipped and counted. A candidate that fails its check yields a ``FrameError`` and the scan goes on
from the next byte that could start a frame, so a torn frame costs only itself: a lane frame's end
mark is never consumed by a bad frame (it may be the first byte of the next one), and an its or
genvict candidate is retried one byte further on. In ``auto`` mode the reader locks onto the
framing of the first frame that passes its check.
"""

from __future__ import annotations

import enum

from recognition_core.etc.decode import AUTO, decode_raw
from recognition_core.etc.framing import GENVICT_HEADER, ITS_HEADER, START, unwrap
from recognition_core.etc.records import MAX_FRAME_BYTES, Frame, FrameError, Framing

Item = Frame | FrameError


class _Step(enum.Enum):
    FRAME = "frame"  # a frame (or its decoding error) ends at `end`
    BAD = "bad"  # nothing starts here; resume at `end`
    MORE = "more"  # cannot tell until more bytes arrive


class StreamReader:
    """Feed bytes in, get decoded frames (and ``FrameError`` values for bad candidates) out."""

    def __init__(self, framing: Framing | str = AUTO, max_frame: int = MAX_FRAME_BYTES) -> None:
        self._framing: Framing | None = None if framing == AUTO else Framing(framing)
        self._max = max_frame
        self._buf = bytearray()
        self.discarded = 0  # bytes skipped as garbage or as parts of bad candidates
        self.frames = 0
        self.errors = 0

    @property
    def framing(self) -> Framing | None:
        """The framing in use; ``None`` while an ``auto`` reader has not seen a good frame yet."""
        return self._framing

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Item]:
        """Add ``data`` and return every frame now complete, in order."""
        buf = self._buf
        buf += data
        out: list[Item] = []
        p = 0
        while True:
            start = buf.find(START, p)
            if start < 0:
                keep = len(buf) - 1 if buf and buf[-1] == 0xFF else len(buf)
                self.discarded += max(keep - p, 0)
                p = max(keep, p)
                break
            self.discarded += start - p
            p = start
            step, end, item = self._step(buf, p)
            if step is _Step.MORE:
                break
            if item is not None:
                out.append(item)
                if isinstance(item, Frame):
                    self.frames += 1
                else:
                    self.errors += 1
            if step is _Step.BAD:
                self.discarded += end - p
            p = end
        del buf[:p]
        return out

    def flush(self) -> list[FrameError]:
        """End of stream: whatever is left is a torn frame (reported) or garbage (counted)."""
        rest, self._buf = bytes(self._buf), bytearray()
        self.discarded += len(rest)
        if rest.startswith(START) and len(rest) > 2:
            self.errors += 1
            return [FrameError("torn", f"stream ended inside a frame ({len(rest)} bytes: {rest[:16].hex()}…)")]
        return []

    def _step(self, buf: bytearray, p: int) -> Step:
        if self._framing is not None:
            return _STEPS[self._framing](buf, p, self._max)
        results = [(framing, _STEPS[framing](buf, p, self._max)) for framing in Framing]
        found = [(f, r) for f, r in results if r[0] is _Step.FRAME]
        if len(found) > 1:  # as in decode_auto: only a frame of a known type can be placed
            found = [(f, r) for f, r in found if not (isinstance(r[2], FrameError) and r[2].reason == "type")] or found
        if len(found) > 1:
            return _Step.BAD, p + 1, FrameError("ambiguous", "a frame passes the checks of several framings")
        if found:
            self._framing = found[0][0]
            return found[0][1]
        if any(r[0] is _Step.MORE for _, r in results):
            return _Step.MORE, p, None
        return _Step.BAD, p + 1, None


def _lane_step(buf: bytearray, p: int, max_frame: int) -> Step:
    q = p + 2
    n = len(buf)
    while q < n and buf[q] == 0xFF:
        q += 1
    end = buf.find(b"\xff", q)
    if end < 0 and q == n and n - p > 2:
        return _Step.BAD, n - 2, None  # a run of FF: keep the last two, they may start a frame
    if end < 0:
        if n - q + 3 > max_frame:
            return _Step.BAD, n, None
        return _Step.MORE, p, None
    if end - q + 3 > max_frame:
        return _Step.BAD, end, None
    candidate = START + bytes(buf[q : end + 1])
    try:
        raw = unwrap(candidate, Framing.LANE)
    except FrameError as exc:
        return _Step.BAD, end, exc  # the end mark may start the next frame
    return _Step.FRAME, end + 1, _decoded(raw)


Step = tuple[_Step, int, Item | None]


def _length_step(framing: Framing, header: int, buf: bytearray, p: int, max_frame: int, ahead: bool = True) -> Step:
    step = _length_candidate(framing, header, buf, p, max_frame)
    if step[0] is not _Step.MORE or not ahead:
        return step
    # Incomplete: if a whole frame that passes its check already starts further on, the bytes at
    # `p` are a torn frame (its LEN reaches into the frames after it) and waiting would stall them.
    q = buf.find(START, p + 1)
    while q >= 0:
        later = _length_candidate(framing, header, buf, q, max_frame)
        if later[0] is _Step.FRAME:
            return _Step.BAD, q, FrameError("torn", f"{framing.value}: frame cut short by the next frame")
        q = buf.find(START, q + 1)
    return step


def _length_candidate(framing: Framing, header: int, buf: bytearray, p: int, max_frame: int) -> Step:
    n = len(buf)
    if n - p < header:
        return _Step.MORE, p, None
    if framing is Framing.ITS:
        if buf[p + 2] != 0:
            return _Step.BAD, p + 1, None
        declared = int.from_bytes(buf[p + 4 : p + 8], "big")
    else:
        declared = int.from_bytes(buf[p + 2 : p + 4], "big")
    shortest = header + declared + 2  # LEN counts TYPE and DATA
    if declared < 1 or shortest + 1 > max_frame:
        return _Step.BAD, p + 1, None
    first_error: FrameError | None = None
    for total in (shortest, shortest + 1):  # ... or DATA alone
        if n - p < total:
            return _Step.MORE, p, None
        try:
            raw = unwrap(bytes(buf[p : p + total]), framing)
        except FrameError as exc:
            first_error = first_error or exc
            continue
        return _Step.FRAME, p + total, _decoded(raw)
    return _Step.BAD, p + 1, first_error


def _decoded(raw) -> Item:  # type: ignore[no-untyped-def]
    try:
        return decode_raw(raw)
    except FrameError as exc:
        return exc


_STEPS = {
    Framing.LANE: _lane_step,
    Framing.ITS: lambda buf, p, m: _length_step(Framing.ITS, ITS_HEADER, buf, p, m),
    Framing.GENVICT: lambda buf, p, m: _length_step(Framing.GENVICT, GENVICT_HEADER, buf, p, m),
}
