"""Passage ingest (ReportPassages): sustained passages/s from 10 concurrent lot streams (each keeping
4 batches of 1000 in flight) into a real platform (its own process) over loopback gRPC, every ack after its passages
are committed (SQLite WAL, synchronous=FULL). Baseline in the same run: raw
``sqlite3.executemany`` of the same rows into the same tables, one transaction per 1000-passage
batch (the unit a lot gets acked), same pragmas as the platform (WAL, synchronous=FULL, 64 MiB page
cache), and, as an upper bound, everything in one transaction.
``--pg URL`` (or CROSSPARK_TEST_PG_URL) adds PostgreSQL."""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _harness import Report, parser, percentiles

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from crosspark.clock import ManualClock  # noqa: E402
from crosspark.v1 import common_pb2, settlement_pb2, settlement_pb2_grpc  # noqa: E402

pb = settlement_pb2
LOTS = 10
BATCH = 1000
#: Batches a lot keeps in flight before it waits for an ack (like the lot node's outbox sender).
WINDOW = 4
NOW = datetime(2026, 11, 3, tzinfo=UTC)


def make_batches(lot_id: str, batches: int) -> list[pb.PassageBatch]:
    """Each batch: 500 entries and the 500 exits that close them (monthly-card stays)."""
    out = []
    start = NOW - timedelta(days=20)
    vehicle = common_pb2.VehicleIdentity(
        plate="粤B12345", color=common_pb2.PLATE_COLOR_BLUE, source=common_pb2.IDENTITY_SOURCE_CAMERA, confidence=0.98
    )
    for b in range(batches):
        passages = []
        for i in range(BATCH // 2):
            at = start + timedelta(seconds=(b * BATCH + i) * 7)
            entry_id = str(uuid.uuid4())
            entry = pb.Passage(
                passage_id=entry_id,
                lot_id=lot_id,
                gate_id="g1",
                direction=pb.DIRECTION_ENTRY,
                vehicle=vehicle,
                card_id=f"card_{i}",
                stay_id=entry_id,
            )
            entry.occurred_at.FromDatetime(at)
            exit_ = pb.Passage(
                passage_id=str(uuid.uuid4()),
                lot_id=lot_id,
                gate_id="g2",
                direction=pb.DIRECTION_EXIT,
                vehicle=vehicle,
                card_id=f"card_{i}",
                stay_id=entry_id,
                entry_passage_id=entry_id,
            )
            exit_.occurred_at.FromDatetime(at + timedelta(hours=2))
            passages += [entry, exit_]
        out.append(pb.PassageBatch(lot_id=lot_id, batch_seq=b + 1, passages=passages))
    return out


def _serve(db_url: str, data_dir: str, pipe) -> None:  # type: ignore[no-untyped-def]
    """The platform, in its own process (as in production: lots are other processes): sends its
    address and the lots' tokens, serves until told to stop, then sends how many passages it holds."""
    from sqlalchemy import func, select

    from crosspark import logs
    from settlement.store import PassageRow
    from tests.support import add_settlement_lot, running_platform

    logs.configure("warning", "console")  # a spawned process starts unconfigured: keep stdout for the report
    with running_platform(Path(data_dir), db_url=db_url, clock=ManualClock(NOW), scheduler=False) as platform:
        tokens = {f"lot-{n}": add_settlement_lot(platform, f"lot-{n}", registered_at=NOW) for n in range(LOTS)}
        pipe.send((platform.address, tokens))
        pipe.recv()
        with platform.ctx.db.read_session() as session:
            pipe.send(session.scalar(select(func.count()).select_from(PassageRow)) or 0)


def run_platform(db_url: str, data_dir: Path, batches_per_lot: int) -> dict[str, float]:
    import multiprocessing

    from crosspark.client import open_channel

    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    server = context.Process(target=_serve, args=(db_url, str(data_dir), theirs), daemon=True)
    server.start()
    try:
        address, tokens = ours.recv()
        work = {lot: make_batches(lot, batches_per_lot) for lot in tokens}
        latencies: list[float] = []
        lock = threading.Lock()
        barrier = threading.Barrier(LOTS + 1)
        errors: list[BaseException] = []

        def stream(lot: str) -> None:
            stub = settlement_pb2_grpc.SettlementServiceStub(open_channel(address, token=tokens[lot], insecure=True))
            sent: dict[int, float] = {}
            window = threading.Semaphore(WINDOW)

            def requests():  # type: ignore[no-untyped-def]
                for batch in work[lot]:
                    window.acquire()
                    sent[batch.batch_seq] = time.perf_counter()
                    yield batch

            barrier.wait()
            try:
                for ack in stub.ReportPassages(requests()):
                    bad = [a for a in ack.acks if a.result != pb.ACK_RESULT_ACCEPTED]
                    if bad:
                        raise RuntimeError(f"{lot}: {bad[0].reason}")
                    with lock:
                        latencies.append(time.perf_counter() - sent[ack.batch_seq])
                    window.release()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=stream, args=(lot,)) for lot in tokens]
        for t in threads:
            t.start()
        barrier.wait()
        started = time.perf_counter()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        if errors:
            raise errors[0]
        ours.send("stop")
        stored = ours.recv()
    finally:
        server.join(timeout=30)
        if server.is_alive():
            server.terminate()
    total = LOTS * batches_per_lot * BATCH
    if stored != total:
        raise RuntimeError(f"{stored} passages stored, {total} acknowledged")
    return {"rate": total / elapsed, "seconds": elapsed, **percentiles(latencies)}


def raw_sqlite(path: Path, batches_per_lot: int, per_batch: bool) -> float:
    """Raw executemany of the rows the platform writes (passages and stays), same schema."""
    from crosspark.db import Database, upgrade

    db = Database(f"sqlite:///{path}")
    upgrade(db, "platform")
    db.dispose()
    received = int(NOW.timestamp() * 1e6)
    work = [make_batches(f"lot-{n}", batches_per_lot) for n in range(LOTS)]
    batches = []
    for lot_batches in work:
        for batch in lot_batches:
            passages, stays = [], []
            for p in batch.passages:
                us = p.occurred_at.seconds * 1_000_000
                passages.append(
                    (
                        p.passage_id,
                        p.lot_id,
                        p.gate_id,
                        p.direction,
                        p.vehicle.plate,
                        "blue",
                        "camera",
                        p.card_id,
                        p.stay_id,
                        p.entry_passage_id,
                        0,
                        "",
                        us,
                        None,
                        received,
                    )
                )
                if p.direction == pb.DIRECTION_EXIT:
                    stays.append(
                        (
                            p.stay_id,
                            p.lot_id,
                            p.card_id,
                            p.vehicle.plate,
                            "blue",
                            us - 7200_000_000,
                            us,
                            us,
                            p.entry_passage_id,
                            p.passage_id,
                            0,
                            received,
                            None,
                        )
                    )
            batches.append((passages, stays))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA cache_size=-65536")  # the platform's page cache (crosspark.db), so only the path differs
    insert_p = "INSERT INTO passages VALUES (" + ",".join("?" * 15) + ")"
    insert_s = "INSERT INTO stays VALUES (" + ",".join("?" * 13) + ")"
    started = time.perf_counter()
    if not per_batch:
        conn.execute("BEGIN IMMEDIATE")
    for passages, stays in batches:
        if per_batch:
            conn.execute("BEGIN IMMEDIATE")
        conn.executemany(insert_p, passages)
        conn.executemany(insert_s, stays)
        if per_batch:
            conn.execute("COMMIT")
    if not per_batch:
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return LOTS * batches_per_lot * BATCH / elapsed


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__ or "")
    p.add_argument(
        "--pg", default=os.environ.get("CROSSPARK_TEST_PG_URL"), help="PostgreSQL URL (a scratch schema is used)"
    )
    args = p.parse_args(argv)
    batches_per_lot = 3 if args.quick else 30
    report = Report(f"passage ingest: {LOTS} lot streams × {batches_per_lot} batches of {BATCH}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        base_batch = raw_sqlite(tmp_path / "raw1.db", batches_per_lot, per_batch=True)
        base_all = raw_sqlite(tmp_path / "raw2.db", batches_per_lot, per_batch=False)
        ours = run_platform(f"sqlite:///{tmp_path / 'platform.db'}", tmp_path / "p1", batches_per_lot)
        report.add(path="raw sqlite3.executemany, commit per batch (baseline)", passages_per_s=base_batch)
        report.add(path="raw sqlite3.executemany, one transaction", passages_per_s=base_all)
        report.add(
            path="ReportPassages → SQLite",
            passages_per_s=ours["rate"],
            p50_ms=ours["p50_ms"],
            p95_ms=ours["p95_ms"],
            p99_ms=ours["p99_ms"],
        )
        report.add(path="ratio ours / baseline (per batch)", passages_per_s=ours["rate"] / base_batch)
        report.add(path="ratio ours / one transaction", passages_per_s=ours["rate"] / base_all)
        report.target("SQLite ingest", ours["rate"], 50_000, higher_is_better=True, unit=" passages/s")
        report.target(
            "ratio to raw executemany (commit per batch)", ours["rate"] / base_batch, 0.4, higher_is_better=True
        )
        if args.pg:
            pg = _pg_run(args.pg, tmp_path / "p2", batches_per_lot)
            report.add(
                path="ReportPassages → PostgreSQL",
                passages_per_s=pg["rate"],
                p50_ms=pg["p50_ms"],
                p95_ms=pg["p95_ms"],
                p99_ms=pg["p99_ms"],
            )
    return report.emit(args.json)


def _pg_run(url: str, data_dir: Path, batches_per_lot: int) -> dict[str, float]:
    import sqlalchemy as sa

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    scoped = sa.engine.make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        return run_platform(scoped.render_as_string(hide_password=False), data_dir, batches_per_lot)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
