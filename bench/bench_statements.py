"""Issuing statements (DESIGN section 8): a month of MONTHLY statements for 1,000 lots holding
1,000,000 monthly-card stays, priced, written, hashed, signed and stored in SQLite. Baseline in the
same run: the bare minimum over the same stays (read them, write them as CSV with the csv module,
SHA-256 and sign each lot's bytes) without pricing, statement rows or stay marking."""

from __future__ import annotations

import csv
import io
import secrets
import sqlite3
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from _harness import Report, parser

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from crosspark.clock import ManualClock  # noqa: E402
from crosspark.db import Database, upgrade  # noqa: E402
from settlement import statement_file  # noqa: E402
from settlement.issuing import issue_due  # noqa: E402
from settlement.service import SigningKeys  # noqa: E402
from settlement.store import to_us  # noqa: E402

MONTH = datetime(2026, 10, 1, tzinfo=UTC) - timedelta(hours=8)  # 2026-10-01 00:00 Asia/Shanghai
NEXT_MONTH = datetime(2026, 11, 1, tzinfo=UTC) - timedelta(hours=8)


def seed(path: Path, lots: int, stays_per_lot: int) -> None:
    db = Database(f"sqlite:///{path}")
    upgrade(db, "platform")
    db.dispose()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    registered = (MONTH - timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S.000000")
    conn.executemany(
        "INSERT INTO lots (lot_id, name, vendor, time_zone, mode, period, close_delay_seconds, membership_deadline_ms,"
        " enabled, token_hash, card_hash_key, registered_at, updated_at, card_version_held, outbox_depth)"
        " VALUES (?, ?, 'bench', 'Asia/Shanghai', 'CACHED', 'MONTHLY', 3600, 300, 1, ?, ?, ?, ?, 0, 0)",
        [(f"lot-{n:04d}", f"lot {n}", secrets.token_hex(32), b"k" * 32, registered, registered) for n in range(lots)],
    )
    conn.executemany(
        "INSERT INTO tariffs VALUES (?, 1, ?, 'per_time', 0, 30, ?, 15, 6000, 50000, ?)",
        [(f"lot-{n:04d}", registered, '[["08:00", 500], ["20:00", 300]]', registered) for n in range(lots)],
    )
    # Fill the previous period as already issued so only October is due.
    conn.executemany(
        "INSERT INTO statement_schedule VALUES (?, 0, ?)",
        [(f"lot-{n:04d}", MONTH.strftime("%Y-%m-%d %H:%M:%S.000000")) for n in range(lots)],
    )
    rng = np.random.default_rng(3)
    start_us, span_us = to_us(MONTH), to_us(NEXT_MONTH) - to_us(MONTH)
    for n in range(lots):
        exits = start_us + rng.integers(0, span_us, stays_per_lot)
        entries = exits - rng.integers(0, 12 * 3600 * 10**6, stays_per_lot)
        rows = []
        for i in range(stays_per_lot):
            sid = str(uuid.uuid4())
            rows.append(
                (
                    sid,
                    f"lot-{n:04d}",
                    f"card_{i % 300}",
                    "粤B12345",
                    "blue",
                    int(entries[i]),
                    int(exits[i]),
                    int(exits[i]),
                    sid,
                    str(uuid.uuid4()),
                    0,
                    int(exits[i]),
                )
            )
        conn.executemany(
            "INSERT INTO stays (stay_id, lot_id, card_id, plate, color, entry_us, exit_us, settle_to_us,"
            " entry_passage_id, exit_passage_id, flags, received_us) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
    conn.execute("COMMIT")
    conn.close()


def baseline(path: Path, key: bytes) -> float:
    conn = sqlite3.connect(path)
    started = time.perf_counter()
    lots = [r[0] for r in conn.execute("SELECT lot_id FROM lots ORDER BY lot_id")]
    for lot in lots:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerows(
            conn.execute(
                "SELECT stay_id, card_id, plate, color, entry_us, exit_us, settle_to_us, entry_passage_id,"
                " exit_passage_id FROM stays WHERE lot_id = ? AND statement_seq IS NULL ORDER BY exit_us",
                (lot,),
            )
        )
        data = out.getvalue().encode()
        statement_file.sha256_hex(data)
        statement_file.sign(key, data)
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__ or "").parse_args(argv)
    lots, per_lot = (50, 1000) if args.quick else (1000, 1000)
    report = Report(f"issuing a month of statements: {lots:,} lots × {per_lot:,} stays")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "platform.db"
        seed(path, lots, per_lot)
        base = baseline(path, statement_file.new_private_key())
        db = Database(f"sqlite:///{path}")
        now = NEXT_MONTH + timedelta(hours=2)
        keys = SigningKeys(db, ManualClock(now))
        key = keys.current()
        started, cpu_started = time.perf_counter(), time.process_time()
        issued = issue_due(db, key, now, now)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        lines = sum(s.line_count for s in issued)
        db.dispose()
    if len(issued) != lots or lines != lots * per_lot:
        raise RuntimeError(f"issued {len(issued)} statements with {lines} lines")
    report.add(path="read + csv + sha256 + sign (baseline)", seconds=base, stays_per_s=lots * per_lot / base)
    report.add(
        path="issue_due (priced, signed, stored, stays marked)",
        seconds=elapsed,
        cpu_seconds=cpu,
        stays_per_s=lots * per_lot / elapsed,
        statements=len(issued),
        ratio_to_baseline=elapsed / base,
    )
    if lots * per_lot == 1_000_000:
        report.target("a month for 1,000 lots / 1,000,000 stays", elapsed, 60.0, higher_is_better=False, unit=" s")
    return report.emit(args.json)


if __name__ == "__main__":
    raise SystemExit(main())
