"""The tariff engine (资费标准, DESIGN section 7): the fee of a stay under the tariff agreed with its lot.

Pure: no I/O. The platform prices monthly-card stays with it and the lot node prices temporary
vehicles with it, so both sides compute the same fen from the same rules.

* ``price_stay(tariff, entry, exit)``: one stay.
* ``price_stays(tariff, entries, exits)``: many stays at once, vectorised over NumPy arrays of epoch
  seconds; ``price_stays_by_version`` picks each stay's version by its entry instant first.
* ``reference_price(tariff, entry, exit)``: a brute-force walk of the stay minute by minute, kept
  to check the fast path (property tests, benchmark).

Instants are priced to the whole second (fractions are dropped), durations are ``exit - entry``.

How the fast path avoids walking units: unit *k* starts ``k·u`` minutes after entry, so its local
minute of the day is ``(m0 + k·u) mod 1440``. Adding ``u`` modulo 1440 splits the 1440 minutes into
``g = gcd(u, 1440)`` cycles of ``P = 1440 / g`` minutes each::

    u = 540 (9 h), g = 180, P = 8:   m0 → m0+540 → m0+1080 → m0+180 → … → m0 (after 8 units)

so the fees of any run of consecutive units are a prefix-sum difference over the cycle that holds
``m0`` (whole turns of the cycle cost its total). A stay is cut into its 24-hour windows (only when
a daily cap exists) and at the zone's UTC-offset changes (only in zones that have them); every
piece is then one such lookup, whatever the stay's length.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from numpy.typing import ArrayLike, NDArray

MINUTES_PER_DAY = 1440
SECONDS_PER_DAY = 86_400
#: Bounds on a tariff's figures (DESIGN section 11: bounded inputs).
MAX_FEE_FEN = 100_000_000  # one million yuan
MAX_CAP_FEN = 10_000_000_000
MAX_FREE_MINUTES = 31 * MINUTES_PER_DAY
MAX_BANDS = 96

I64 = NDArray[np.int64]


class TariffKind(enum.Enum):
    PER_VISIT = "per_visit"  # 按次
    PER_TIME = "per_time"  # 按时


class TariffError(ValueError):
    """A tariff that breaks a rule; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.description = message


@dataclass(frozen=True, slots=True)
class Band:
    """From ``start_minute`` (after local midnight) to the next band's start; fee of a unit starting in it."""

    start_minute: int
    unit_fee_fen: int

    @property
    def start(self) -> str:
        return f"{self.start_minute // 60:02d}:{self.start_minute % 60:02d}"

    @classmethod
    def parse(cls, start: str, unit_fee_fen: int, field: str = "bands") -> Band:
        """``"HH:MM"`` (00:00–23:59) and a fee."""
        hours, sep, minutes = start.partition(":")
        if not (sep and len(hours) == 2 and len(minutes) == 2 and hours.isdigit() and minutes.isdigit()):
            raise TariffError(f"{field}.start", f"{start!r} is not HH:MM")
        if int(hours) > 23 or int(minutes) > 59:
            raise TariffError(f"{field}.start", f"{start!r} is not a time of day between 00:00 and 23:59")
        return cls(int(hours) * 60 + int(minutes), unit_fee_fen)


@dataclass(frozen=True, slots=True)
class Price:
    """What a stay costs: fen, billing units charged (PER_TIME) and visits (PER_VISIT)."""

    fee_fen: int
    units: int
    visits: int


@dataclass(frozen=True)
class Tariff:
    """One version of the tariff agreed between the platform and a lot; ``time_zone`` is the lot's."""

    kind: TariffKind
    time_zone: str = "Asia/Shanghai"
    visit_fee_fen: int = 0
    unit_minutes: int = 60
    bands: tuple[Band, ...] = ()
    free_minutes: int = 0
    cap_per_24h_fen: int = 0
    max_per_stay_fen: int = 0
    version: int = 0
    effective_from: datetime | None = None
    lot_id: str = ""
    _fee_by_minute: tuple[int, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_amount("free_minutes", self.free_minutes, MAX_FREE_MINUTES)
        _check_amount("max_per_stay_fen", self.max_per_stay_fen, MAX_CAP_FEN)
        if self.effective_from is not None and self.effective_from.tzinfo is None:
            raise TariffError("effective_from", "must be a timezone-aware instant")
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise TariffError("time_zone", f"{self.time_zone!r} is not an IANA time zone") from None
        if self.kind is TariffKind.PER_VISIT:
            _check_amount("visit_fee_fen", self.visit_fee_fen, MAX_FEE_FEN)
            return
        if not 1 <= self.unit_minutes <= MINUTES_PER_DAY:
            raise TariffError("unit_minutes", f"{self.unit_minutes} is outside 1–1440")
        _check_amount("cap_per_24h_fen", self.cap_per_24h_fen, MAX_CAP_FEN)
        if not self.bands:
            raise TariffError("bands", "a PER_TIME tariff needs at least one band")
        if len(self.bands) > MAX_BANDS:
            raise TariffError("bands", f"{len(self.bands)} bands; at most {MAX_BANDS}")
        starts = [b.start_minute for b in self.bands]
        if len(set(starts)) != len(starts):
            raise TariffError("bands", "two bands start at the same time")
        for i, band in enumerate(self.bands):
            if not 0 <= band.start_minute < MINUTES_PER_DAY:
                raise TariffError(f"bands[{i}].start", "outside 00:00–23:59")
            _check_amount(f"bands[{i}].unit_fee_fen", band.unit_fee_fen, MAX_FEE_FEN)
        object.__setattr__(self, "bands", tuple(sorted(self.bands, key=lambda b: b.start_minute)))
        object.__setattr__(self, "_fee_by_minute", _fee_by_minute(self.bands))

    def fee_at_minute(self, minute_of_day: int) -> int:
        """Fee of a unit starting at this local minute of the day (PER_TIME)."""
        return self._fee_by_minute[minute_of_day]


def _check_amount(name: str, value: int, limit: int) -> None:
    if not 0 <= value <= limit:
        raise TariffError(name, f"{value} is outside 0–{limit}")


def _fee_by_minute(bands: tuple[Band, ...]) -> tuple[int, ...]:
    fees = [bands[-1].unit_fee_fen] * MINUTES_PER_DAY  # before the first start: the last band, wrapped
    for band, following in zip(bands, (*bands[1:], None), strict=True):
        end = following.start_minute if following is not None else MINUTES_PER_DAY
        fees[band.start_minute : end] = [band.unit_fee_fen] * (end - band.start_minute)
    return tuple(fees)


# ---------------------------------------------------------------------------------------- one stay


def epoch_seconds(instant: datetime) -> int:
    """Whole seconds since 1970 (fractions dropped); the instant must be timezone-aware."""
    if instant.tzinfo is None:
        raise ValueError("naive datetime given for an instant")
    return math.floor(instant.timestamp())


def price_stay(tariff: Tariff, entry: datetime, exit: datetime) -> Price:
    """The price of the stay ``[entry, exit)`` under ``tariff``."""
    fee, units, visits = price_stays(
        tariff, np.array([epoch_seconds(entry)], np.int64), np.array([epoch_seconds(exit)], np.int64)
    )
    return Price(int(fee[0]), int(units[0]), int(visits[0]))


def tariff_in_force(tariffs: Sequence[Tariff], entry: datetime) -> Tariff | None:
    """The version in force at ``entry``: the latest ``effective_from`` at or before it (the higher
    version wins a tie); None before the first version."""
    chosen = None
    for tariff in sorted(tariffs, key=_version_order):
        if tariff.effective_from is None or tariff.effective_from <= entry:
            chosen = tariff
    return chosen


def _version_order(tariff: Tariff) -> tuple[int, int]:
    start = epoch_seconds(tariff.effective_from) if tariff.effective_from is not None else -(2**62)
    return start, tariff.version


# ---------------------------------------------------------------------------------------- many stays


def price_stays(tariff: Tariff, entries: ArrayLike, exits: ArrayLike) -> tuple[I64, I64, I64]:
    """Prices of the stays ``[entries[i], exits[i])`` given as epoch seconds: (fee_fen, units, visits)."""
    entry = np.asarray(entries, dtype=np.int64)
    exit_ = np.asarray(exits, dtype=np.int64)
    if entry.shape != exit_.shape or entry.ndim != 1:
        raise ValueError("entries and exits must be 1-d arrays of the same length")
    duration = exit_ - entry
    if duration.size and int(duration.min()) < 0:
        raise ValueError("a stay exits before it enters")
    charged = duration > tariff.free_minutes * 60
    zeros = np.zeros(entry.size, np.int64)
    if tariff.kind is TariffKind.PER_VISIT:
        fee = np.where(charged, np.int64(tariff.visit_fee_fen), zeros)
        if tariff.max_per_stay_fen:
            fee = np.minimum(fee, tariff.max_per_stay_fen)
        return fee, zeros, np.ones(entry.size, np.int64)
    u = tariff.unit_minutes
    unit_seconds = u * 60
    units = np.where(charged, (duration + unit_seconds - 1) // unit_seconds, 0)
    if entry.size == 0:
        return zeros, units, zeros
    cap = tariff.cap_per_24h_fen
    if cap:
        # Units starting in 24-hour window w (from entry) are k in [ceil(1440w/u), ceil(1440(w+1)/u)).
        windows = np.where(units > 0, (units - 1) * u // MINUTES_PER_DAY + 1, 1)
        first = np.cumsum(windows) - windows
        stay = np.repeat(np.arange(entry.size), windows)
        w = np.arange(stay.size, dtype=np.int64) - first[stay]
        k_from = (w * MINUTES_PER_DAY + u - 1) // u
        k_to = np.minimum(units[stay], ((w + 1) * MINUTES_PER_DAY + u - 1) // u)
        window_fee = np.minimum(_units_fee(tariff, entry[stay], k_from, k_to), cap)
        fee = np.add.reduceat(window_fee, first)
    else:
        fee = _units_fee(tariff, entry, zeros, units)
    if tariff.max_per_stay_fen:
        fee = np.minimum(fee, tariff.max_per_stay_fen)
    return fee.astype(np.int64, copy=False), units, zeros


def price_stays_by_version(
    tariffs: Sequence[Tariff], entries: ArrayLike, exits: ArrayLike
) -> tuple[I64, I64, I64, I64]:
    """Like ``price_stays``, each stay under the version in force at its entry:
    (fee_fen, units, visits, version). Stays entering before every version cost 0 with version 0."""
    entry = np.asarray(entries, dtype=np.int64)
    exit_ = np.asarray(exits, dtype=np.int64)
    fee = np.zeros(entry.size, np.int64)
    units = np.zeros(entry.size, np.int64)
    visits = np.zeros(entry.size, np.int64)
    version = np.zeros(entry.size, np.int64)
    ordered = sorted(tariffs, key=_version_order)
    if not ordered:
        return fee, units, visits, version
    starts = np.array([_version_order(t)[0] for t in ordered], np.int64)
    which = np.searchsorted(starts, entry, side="right") - 1
    for index in np.unique(which):
        if index < 0:
            continue
        mask = which == index
        tariff = ordered[int(index)]
        fee[mask], units[mask], visits[mask] = price_stays(tariff, entry[mask], exit_[mask])
        version[mask] = tariff.version
    return fee, units, visits, version


# ---------------------------------------------------------------------------------------- internals


@dataclass(frozen=True)
class _Cycles:
    """Prefix sums of unit fees around each cycle of ``m → (m + u) mod 1440`` (see module docstring)."""

    period: int  # P
    stride: int  # 2P + 1: each cycle's prefix sums over two turns, so a run never wraps the array
    position: I64  # minute → its index in its cycle
    base: I64  # minute → offset of its cycle's prefix sums in ``prefix``
    total: I64  # minute → fee of one whole turn of its cycle
    prefix: I64


@lru_cache(maxsize=256)
def _cycles(unit_minutes: int, fee_by_minute: tuple[int, ...]) -> _Cycles:
    g = math.gcd(unit_minutes, MINUTES_PER_DAY)
    period = MINUTES_PER_DAY // g
    steps = np.arange(period, dtype=np.int64)
    minutes = (np.arange(g, dtype=np.int64)[:, None] + steps[None, :] * unit_minutes) % MINUTES_PER_DAY
    fees = np.asarray(fee_by_minute, dtype=np.int64)[minutes]
    prefix = np.zeros((g, 2 * period + 1), np.int64)
    prefix[:, 1:] = np.cumsum(np.concatenate([fees, fees], axis=1), axis=1)
    position = np.empty(MINUTES_PER_DAY, np.int64)
    position[minutes] = steps[None, :]
    coset = np.arange(MINUTES_PER_DAY, dtype=np.int64) % g
    return _Cycles(
        period=period,
        stride=2 * period + 1,
        position=position,
        base=coset * (2 * period + 1),
        total=prefix[:, period][coset],
        prefix=prefix.ravel(),
    )


def _run_fee(cycles: _Cycles, start_minute: I64, k_from: I64, k_to: I64) -> I64:
    """Fees of units ``k_from..k_to-1`` of stays whose unit 0 starts at local minute ``start_minute``."""
    count = np.maximum(k_to - k_from, 0)
    turns, rest = np.divmod(count, cycles.period)
    at = cycles.base[start_minute] + (cycles.position[start_minute] + k_from) % cycles.period
    return turns * cycles.total[start_minute] + cycles.prefix[at + rest] - cycles.prefix[at]


def _units_fee(tariff: Tariff, entry: I64, k_from: I64, k_to: I64) -> I64:
    """Sum of the fees of units ``k_from..k_to-1`` of each stay, in the lot's zone."""
    cycles = _cycles(tariff.unit_minutes, tariff._fee_by_minute)
    unit_seconds = tariff.unit_minutes * 60
    last_start = entry + np.maximum(k_to - 1, k_from) * unit_seconds
    changes, offsets = offset_changes(
        tariff.time_zone, int(entry.min()) // SECONDS_PER_DAY, int(last_start.max()) // SECONDS_PER_DAY
    )
    if changes.size == 0:
        start_minute = ((entry + offsets[0]) // 60) % MINUTES_PER_DAY
        return _run_fee(cycles, start_minute, k_from, k_to)
    # Cut each run at the offset changes its unit starts cross; piece j uses the j-th offset.
    first_start = entry + k_from * unit_seconds
    seg_from = np.searchsorted(changes, first_start, side="right")
    seg_to = np.where(k_to > k_from, np.searchsorted(changes, last_start, side="right"), seg_from)
    pieces = seg_to - seg_from + 1
    first = np.cumsum(pieces) - pieces
    run = np.repeat(np.arange(entry.size), pieces)
    segment = seg_from[run] + np.arange(run.size, dtype=np.int64) - first[run]
    bounds = np.concatenate([[-(2**62)], changes, [2**62]])
    run_entry = entry[run]
    # First unit starting at or after a change at instant t: ceil((t - entry) / unit).
    seg_k_from = -((run_entry - bounds[segment]) // unit_seconds)
    seg_k_to = -((run_entry - bounds[segment + 1]) // unit_seconds)
    piece_from = np.maximum(k_from[run], seg_k_from)
    piece_to = np.minimum(k_to[run], seg_k_to)
    start_minute = ((run_entry + offsets[segment]) // 60) % MINUTES_PER_DAY
    return np.add.reduceat(_run_fee(cycles, start_minute, piece_from, piece_to), first)


_PROBE_SECONDS = 6 * 3600  # offset changes are never closer together than this


@lru_cache(maxsize=512)
def offset_changes(time_zone: str, first_day: int, last_day: int) -> tuple[I64, I64]:
    """The instants (epoch seconds) in and around days ``first_day..last_day`` (counted from
    1970-01-01) at which the zone's UTC offset changes, and the offsets (seconds) before, between
    and after them."""
    zone = ZoneInfo(time_zone)

    def offset(t: int) -> int:
        delta = datetime.fromtimestamp(t, zone).utcoffset()
        return int(delta.total_seconds()) if delta is not None else 0

    t = (first_day - 1) * SECONDS_PER_DAY
    end = (last_day + 2) * SECONDS_PER_DAY
    changes, offsets = [], [offset(t)]
    while t < end:
        following = t + _PROBE_SECONDS
        if offset(following) != offsets[-1]:
            low, high = t, following  # offset(low) is the old one, offset(high) the new one
            while high - low > 1:
                middle = (low + high) // 2
                if offset(middle) == offsets[-1]:
                    low = middle
                else:
                    high = middle
            changes.append(high)
            offsets.append(offset(high))
        t = following
    return np.array(changes, np.int64), np.array(offsets, np.int64)


# ---------------------------------------------------------------------------------------- reference


def reference_price(tariff: Tariff, entry: datetime, exit: datetime) -> Price:
    """Brute force: walk every started minute of the stay; a unit starts every ``unit_minutes``
    minutes and costs its band's fee at that local time; sum per 24-hour window, cap, sum, cap."""
    entry_s, exit_s = epoch_seconds(entry), epoch_seconds(exit)
    duration = exit_s - entry_s
    if duration < 0:
        raise ValueError("a stay exits before it enters")
    free = duration <= tariff.free_minutes * 60
    if tariff.kind is TariffKind.PER_VISIT:
        fee = 0 if free else tariff.visit_fee_fen
        if tariff.max_per_stay_fen:
            fee = min(fee, tariff.max_per_stay_fen)
        return Price(fee, 0, 1)
    if free:
        return Price(0, 0, 0)
    zone = ZoneInfo(tariff.time_zone)
    window_fees: dict[int, int] = {}
    units = 0
    for minute in range(-(-duration // 60)):
        if minute % tariff.unit_minutes:
            continue
        local = datetime.fromtimestamp(entry_s + minute * 60, zone)
        time_of_day = local.hour * 60 + local.minute
        band_fee = tariff.bands[-1].unit_fee_fen
        for band in tariff.bands:
            if band.start_minute <= time_of_day:
                band_fee = band.unit_fee_fen
        window = minute // MINUTES_PER_DAY
        window_fees[window] = window_fees.get(window, 0) + band_fee
        units += 1
    cap = tariff.cap_per_24h_fen
    fee = sum(min(f, cap) if cap else f for f in window_fees.values())
    if tariff.max_per_stay_fen:
        fee = min(fee, tariff.max_per_stay_fen)
    return Price(fee, units, 0)
