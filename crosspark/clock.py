"""Clocks are passed in, never read deep inside the domain, so tests and the demo can run a
month in seconds."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that moves only when told to (tests)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, instant: datetime) -> None:
        with self._lock:
            self._now = instant.astimezone(UTC)

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now += delta
            return self._now


class ScaledClock:
    """Runs ``factor`` times faster than real time from ``start`` (the demo's accelerated month).
    Every process given the same ``start``, ``epoch`` and ``factor`` reads the same time.

    ``epoch`` may instead name a file (``epoch_file``): the clock stands still at ``start`` until
    that file appears, then runs from the real instant written in it — a starting gun that lets
    separate processes be set up before shared time begins.
    """

    def __init__(
        self, start: datetime, factor: float, epoch: float | None = None, *, epoch_file: Path | None = None
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("ScaledClock needs a timezone-aware start")
        if factor <= 0:
            raise ValueError("factor must be positive")
        self.start = start.astimezone(UTC)
        self.factor = factor
        self.epoch_file = epoch_file
        self.epoch: float | None = epoch if epoch is not None or epoch_file is not None else time.time()

    def now(self) -> datetime:
        epoch = self.epoch
        if epoch is None:
            epoch = self._read_epoch()
            if epoch is None:
                return self.start
        return self.start + timedelta(seconds=(time.time() - epoch) * self.factor)

    def _read_epoch(self) -> float | None:
        assert self.epoch_file is not None
        try:
            text = self.epoch_file.read_text().strip()
        except FileNotFoundError:
            return None
        if not text:
            return None  # being written
        self.epoch = float(text)
        return self.epoch

    def fire(self, delay: float = 0.0) -> None:
        """Start the shared time ``delay`` real seconds from now (writes the epoch file)."""
        if self.epoch_file is None:
            raise ValueError("this clock has no epoch file")
        epoch = time.time() + delay
        partial = self.epoch_file.with_suffix(".tmp")
        partial.write_text(repr(epoch))
        partial.replace(self.epoch_file)  # atomic: readers see all of it or nothing
        self.epoch = epoch

    @property
    def spec(self) -> str:
        """The ``--clock`` value that gives another process this clock."""
        tail = f"@{self.epoch_file}" if self.epoch_file is not None else repr(self.epoch)
        return f"scaled:{self.start.isoformat()}:{self.factor!r}:{tail}"


def parse_clock(spec: str | None) -> Clock:
    """``None``/``"system"`` → system clock; ``"scaled:START:FACTOR:EPOCH"`` → ScaledClock
    (START in ISO 8601; EPOCH a Unix time, or ``@FILE`` for a clock that waits for its starting
    gun), which lets separate processes share an accelerated clock."""
    if not spec or spec == "system":
        return SystemClock()
    kind, _, rest = spec.partition(":")
    if kind == "scaled":
        start_text, factor_text, epoch_text = rest.rsplit(":", 2)
        start, factor = datetime.fromisoformat(start_text), float(factor_text)
        if epoch_text.startswith("@"):
            return ScaledClock(start, factor, epoch_file=Path(epoch_text[1:]))
        return ScaledClock(start, factor, float(epoch_text))
    raise ValueError(f"unknown clock {spec!r}: use 'system' or 'scaled:START:FACTOR:EPOCH'")
