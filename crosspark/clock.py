"""Clocks are passed in, never read deep inside the domain, so tests and the demo can run a
month in seconds."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
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
    Every process given the same ``start``, ``epoch`` and ``factor`` reads the same time."""

    def __init__(self, start: datetime, factor: float, epoch: float | None = None) -> None:
        if start.tzinfo is None:
            raise ValueError("ScaledClock needs a timezone-aware start")
        if factor <= 0:
            raise ValueError("factor must be positive")
        self.start = start.astimezone(UTC)
        self.factor = factor
        self.epoch = time.time() if epoch is None else epoch

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.time() - self.epoch) * self.factor)


def parse_clock(spec: str | None) -> Clock:
    """``None``/``"system"`` → system clock; ``"scaled:START:FACTOR:EPOCH"`` → ScaledClock
    (START in ISO 8601), which lets separate processes share an accelerated clock."""
    if not spec or spec == "system":
        return SystemClock()
    kind, _, rest = spec.partition(":")
    if kind == "scaled":
        start_text, factor_text, epoch_text = rest.rsplit(":", 2)
        return ScaledClock(datetime.fromisoformat(start_text), float(factor_text), float(epoch_text))
    raise ValueError(f"unknown clock {spec!r}: use 'system' or 'scaled:START:FACTOR:EPOCH'")
