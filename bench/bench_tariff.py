"""Tariff engine (DESIGN section 7): pricing a million stays with the vectorised NumPy path on one
core, against the minute-by-minute reference (baseline, timed on a sample and scaled) and the
one-stay function the lot node calls at its gate."""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from _harness import Report, parser, percentiles, time_each

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from settlement.tariff import Band, Tariff, TariffKind, price_stay, price_stays, reference_price  # noqa: E402

TARIFFS = {
    "shanghai: 2 bands, 30 min, caps": Tariff(
        TariffKind.PER_TIME,
        unit_minutes=30,
        bands=(Band.parse("08:00", 500), Band.parse("20:00", 300)),
        free_minutes=15,
        cap_per_24h_fen=6000,
        max_per_stay_fen=50000,
    ),
    "london (DST): 4 bands, 15 min": Tariff(
        TariffKind.PER_TIME,
        time_zone="Europe/London",
        unit_minutes=15,
        bands=(Band.parse("00:00", 50), Band.parse("07:00", 200), Band.parse("10:00", 150), Band.parse("19:00", 100)),
    ),
}


def stays(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Stays entering over a month; most last minutes to hours, one in fifty several days."""
    rng = np.random.default_rng(seed)
    entries = int(datetime(2026, 10, 1, tzinfo=UTC).timestamp()) + rng.integers(0, 31 * 86400, n)
    lengths = np.where(rng.random(n) < 0.02, rng.integers(0, 5 * 86400, n), rng.integers(0, 12 * 3600, n))
    return entries.astype(np.int64), (entries + lengths).astype(np.int64)


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__ or "").parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    n = 100_000 if args.quick else 1_000_000
    sample = 200 if args.quick else 1000
    report = Report(f"tariff engine: {n:,} stays")
    entries, exits = stays(n)
    for name, tariff in TARIFFS.items():
        price_stays(tariff, entries[:1000], exits[:1000])  # warm the tables
        runs = [time_each(lambda t=tariff: price_stays(t, entries, exits), 1, warmup=0)[0] for _ in range(3)]
        bulk = min(runs)
        picks = np.linspace(0, n - 1, sample).astype(int)
        as_dt = [
            (datetime.fromtimestamp(int(entries[i]), UTC), datetime.fromtimestamp(int(exits[i]), UTC)) for i in picks
        ]
        started = time.perf_counter()
        for entry, exit_ in as_dt:
            reference_price(tariff, entry, exit_)
        reference_per_stay = (time.perf_counter() - started) / sample
        single = percentiles(time_each(lambda t=tariff, s=as_dt[0]: price_stay(t, *s), 500))
        report.add(tariff=name, path="reference ×n (baseline)", seconds=reference_per_stay * n)
        report.add(
            tariff=name,
            path="price_stays",
            seconds=bulk,
            ns_per_stay=bulk / n * 1e9,
            speedup=reference_per_stay * n / bulk,
        )
        report.add(tariff=name, path="price_stay (1 stay)", p50_ms=single["p50_ms"], p99_ms=single["p99_ms"])
        if n == 1_000_000:
            report.target(f"1M stays, {name}", bulk, 1.0, higher_is_better=False, unit=" s")
    return report.emit(args.json)


if __name__ == "__main__":
    raise SystemExit(main())
