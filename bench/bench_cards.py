"""Card side at scale: bulk import, CheckMembership latency under load, WatchCards snapshot.

1. ``crosspark card import`` of N cards (1,000,000; ``--quick`` 20,000) into a fresh platform
   database, against the baseline of ApplyCard RPCs one by one.
2. A platform process (``crosspark platform serve``) on that database; CheckMembership at a fixed
   rate (1,000 calls/s) over loopback, latency measured from each call's scheduled start (so a slow
   server cannot hide behind a slowed-down client), against gRPC health checks at the same rate,
   on the platform and on a bare gRPC server (grpcio and its health servicer, no crosspark code:
   what this machine's gRPC alone gives at that rate, with the same client).
3. WatchCards snapshot of every card to one lot, applied to the lot's ``CardCache``, against the
   same stream read without applying; the cache's size.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _harness import OtherLoad, Report, cpu_seconds, parser, percentiles, rss_mb, time_each

ADMIN = "bench-admin-token-0123456789abcdef"
PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"


def plate(i: int) -> str:
    """The i-th of 74 million distinct regular plates."""
    return f"{PROVINCES[i % 31]}{LETTERS[(i // 31) % 24]}{i // 744:05d}"


def write_csv(path: Path, n: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["plate", "color", "holder_name", "holder_phone", "start_date", "months", "scope", "request_id"]
        )
        for i in range(n):
            writer.writerow([plate(i), "blue", "张三", "13800000000", f"2030-01-{1 + i % 28:02d}", 1 + i % 12, "", ""])


def start_platform(workdir: Path, db_url: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "crosspark",
            "--log-level",
            "warning",
            "platform",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
            db_url,
            "--insecure",
        ],
        cwd=workdir,
        env={**os.environ, "CROSSPARK_ADMIN_TOKEN": ADMIN},
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        if found := re.search(r"listening on (\S+)", line):
            threading.Thread(target=process.stderr.read, daemon=True).start()  # keep the pipe drained
            return process, found.group(1)
    raise RuntimeError(f"platform exited with {process.wait()} before listening")


#: A gRPC server with nothing but grpcio's health servicer, same thread pool size as the platform's
#: default: the floor under any crosspark server on this machine.
BARE_SERVER = """
from concurrent import futures
import grpc
from grpc_health.v1 import health, health_pb2_grpc
server = grpc.server(futures.ThreadPoolExecutor(max_workers=256))
health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
print(server.add_insecure_port("127.0.0.1:0"), flush=True)
server.start()
server.wait_for_termination()
"""


def start_bare_server() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, "-c", BARE_SERVER], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    return process, f"127.0.0.1:{process.stdout.readline().strip()}"


def paced(call: Callable[[int], None], per_second: int, seconds: float, threads: int = 4) -> tuple[list[float], float]:
    """Run ``call(i)`` at ``per_second`` for ``seconds`` on ``threads`` threads; latencies from each
    call's scheduled start; returns them and the rate achieved."""
    interval = threads / per_second
    count = int(per_second * seconds / threads)
    samples: list[list[float]] = [[] for _ in range(threads)]
    begin = time.perf_counter() + 0.05

    def worker(t: int) -> None:
        clock = time.perf_counter
        for k in range(count):
            scheduled = begin + (k + t / threads) * interval
            delay = scheduled - clock()
            if delay > 0:
                time.sleep(delay)
            call(t * count + k)
            samples[t].append(clock() - scheduled)

    workers = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    flat = [s for chunk in samples for s in chunk]
    return flat, len(flat) / (time.perf_counter() - begin)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--cards", type=int, help="cards to load (default 1,000,000; --quick 20,000)")
    p.add_argument("--rate", type=int, default=1000, help="CheckMembership calls per second")
    p.add_argument("--seconds", type=float, help="seconds of CheckMembership load (default 10; --quick 2)")
    p.add_argument("--db", help="an empty PostgreSQL database URL to use instead of a SQLite file")
    args = p.parse_args(argv)
    n = args.cards or (20_000 if args.quick else 1_000_000)
    seconds = args.seconds or (1.0 if args.quick else 10.0)
    report = Report("bench_cards")

    def row(what: str, cards: int, result: str, baseline: str, ratio: float | None, **detail: object) -> None:
        """A compact row for people; every figure for machines (--json)."""
        extra = detail if args.json else {}
        report.add(what=what, cards=cards, result=result, baseline=baseline, ratio=ratio, **extra)

    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from card_service.bulk_import import import_csv
    from crosspark.client import open_channel
    from crosspark.db import Database, upgrade
    from crosspark.identity import PlateColor
    from crosspark.v1 import admin_pb2, admin_pb2_grpc, cards_pb2, cards_pb2_grpc, common_pb2
    from lot_node.card_cache import CardCache

    with tempfile.TemporaryDirectory(prefix="bench_cards_") as tmp:
        workdir = Path(tmp)
        db_url = args.db or f"sqlite:///{workdir / 'platform.db'}"
        csv_path = workdir / "cards.csv"
        write_csv(csv_path, n)

        # 1. bulk import
        db = Database(db_url)
        upgrade(db, "platform")
        result = import_csv(db, csv_path, "Asia/Shanghai")
        db.dispose()
        assert result.imported == n and not result.rejected, result.summary(with_rejections=False)
        import_rate = result.imported / result.seconds

        process, address = start_platform(workdir, db_url)
        try:
            admin_channel = open_channel(address, token=ADMIN, insecure=True)
            admin = admin_pb2_grpc.AdminServiceStub(admin_channel)
            credentials = admin.RegisterLot(
                admin_pb2.RegisterLotRequest(
                    lot=admin_pb2.Lot(
                        lot_id="bench-lot",
                        name="bench",
                        time_zone="Asia/Shanghai",
                        mode=common_pb2.MEMBERSHIP_MODE_ONLINE,
                        period=common_pb2.SETTLEMENT_PERIOD_DAILY,
                    )
                )
            )
            cards = cards_pb2_grpc.CardServiceStub(admin_channel)

            # baseline of the import: ApplyCard one RPC at a time (plates beyond the imported ones)
            k = 200 if not args.quick else 50
            started = time.perf_counter()
            for i in range(k):
                cards.ApplyCard(
                    cards_pb2.ApplyCardRequest(
                        request_id=uuid.uuid4().hex,
                        vehicle=common_pb2.VehicleIdentity(plate=plate(n + i), color=common_pb2.PLATE_COLOR_BLUE),
                        holder_name="张三",
                        holder_phone="13800000000",
                        start_date="2030-01-01",
                        months=1,
                    )
                )
            rpc_rate = k / (time.perf_counter() - started)
            row(
                "card import (CSV → database)",
                n,
                f"{import_rate:,.0f} cards/s ({result.seconds:.1f} s)",
                f"ApplyCard one by one: {rpc_rate:,.0f}/s",
                import_rate / rpc_rate,
                seconds=result.seconds,
                per_second=import_rate,
                baseline_per_second=rpc_rate,
            )
            report.target("import cards/s", import_rate, 50_000, higher_is_better=True)

            # 2. CheckMembership at a fixed rate, 3 of 4 vehicles holding a card. The client runs on
            # the same two cores as the server, so it is kept as cheap as gRPC Python allows: a
            # plain channel with the bearer token as call metadata (no Python interceptor).
            lot_channel = open_channel(address, insecure=True)
            lot = cards_pb2_grpc.CardServiceStub(lot_channel)
            health = health_pb2_grpc.HealthStub(lot_channel)
            bearer = (("authorization", f"Bearer {credentials.token}"),)
            requests = [
                cards_pb2.CheckMembershipRequest(
                    lot_id="bench-lot",
                    vehicle=common_pb2.VehicleIdentity(
                        plate=plate((i * 7919) % n if i % 4 else n + 10_000 + i), color=common_pb2.PLATE_COLOR_BLUE
                    ),
                )
                for i in range(4096)
            ]
            statuses: dict[int, int] = {}

            def check(i: int) -> None:
                answer = lot.CheckMembership(requests[i % len(requests)], metadata=bearer)
                statuses[answer.status] = statuses.get(answer.status, 0) + 1

            for i in range(200):  # warm-up: connections, caches
                check(i)
            # The import and the platform's first checkpoint left ~1 GB of dirty pages; the kernel
            # writing them back keeps most of a core busy for seconds. Latency is measured after.
            os.sync()
            sequential = percentiles(time_each(lambda: check(0), 2000))
            row(
                "CheckMembership, one caller back to back",
                n,
                f"p50 {sequential['p50_ms']:.2f} / p99 {sequential['p99_ms']:.2f} ms",
                "",
                None,
                **sequential,
            )
            statuses.clear()
            # The server's CPU per call tells a busy server from a busy machine (the p99 of both
            # runs moves with whatever else shares the cores).
            server_cpu = cpu_seconds(process.pid)
            with OtherLoad(process.pid) as health_others:
                health_samples, health_rate = paced(
                    lambda _i: health.Check(health_pb2.HealthCheckRequest()), args.rate, seconds
                )
            health_cpu_us = (cpu_seconds(process.pid) - server_cpu) / len(health_samples) * 1e6
            server_cpu = cpu_seconds(process.pid)
            with OtherLoad(process.pid) as others:
                check_samples, check_rate = paced(check, args.rate, seconds)
            check_cpu_us = (cpu_seconds(process.pid) - server_cpu) / len(check_samples) * 1e6
            bare, bare_address = start_bare_server()
            try:
                bare_health = health_pb2_grpc.HealthStub(open_channel(bare_address, insecure=True))
                for _ in range(200):
                    bare_health.Check(health_pb2.HealthCheckRequest())
                bare_cpu = cpu_seconds(bare.pid)
                with OtherLoad(bare.pid) as bare_others:
                    bare_samples, bare_rate = paced(
                        lambda _i: bare_health.Check(health_pb2.HealthCheckRequest()), args.rate, seconds
                    )
                bare_cpu_us = (cpu_seconds(bare.pid) - bare_cpu) / len(bare_samples) * 1e6
            finally:
                bare.terminate()
                bare.wait(timeout=30)
            base, measured, floor = percentiles(health_samples), percentiles(check_samples), percentiles(bare_samples)
            row(
                f"bare gRPC server, health Check at {args.rate}/s",
                0,
                f"p50 {floor['p50_ms']:.2f} / p99 {floor['p99_ms']:.2f} ms at {bare_rate:,.0f}/s,"
                f" server {bare_cpu_us:.0f} µs CPU/call, other processes {bare_others.cores:.2f} cores",
                "",
                None,
                calls_per_second=bare_rate,
                **floor,
                server_cpu_us_per_call=bare_cpu_us,
                other_processes_cores=bare_others.cores,
            )
            row(
                f"CheckMembership at {args.rate}/s (loopback)",
                n,
                f"p50 {measured['p50_ms']:.2f} / p99 {measured['p99_ms']:.2f} ms at {check_rate:,.0f}/s,"
                f" server {check_cpu_us:.0f} µs CPU/call, other processes {others.cores:.2f} cores",
                f"health Check p99 {base['p99_ms']:.2f} ms, server {health_cpu_us:.0f} µs CPU/call,"
                f" other processes {health_others.cores:.2f} cores",
                measured["p99_ms"] / base["p99_ms"],
                calls_per_second=check_rate,
                **measured,
                server_cpu_us_per_call=check_cpu_us,
                baseline_p99_ms=base["p99_ms"],
                baseline_calls_per_second=health_rate,
                baseline_server_cpu_us_per_call=health_cpu_us,
                bare_grpc_p99_ms=floor["p99_ms"],
                load_average_1m=os.getloadavg()[0],
                other_processes_cores=others.cores,
                baseline_other_processes_cores=health_others.cores,
            )
            monthly = statuses.get(cards_pb2.MEMBERSHIP_STATUS_MONTHLY, 0) + statuses.get(
                cards_pb2.MEMBERSHIP_STATUS_EXPIRED, 0
            )
            assert monthly >= sum(statuses.values()) // 2, statuses
            report.target(
                f"CheckMembership p99 at {args.rate}/s", measured["p99_ms"], 2.0, higher_is_better=False, unit=" ms"
            )

            # 3. WatchCards snapshot to one lot: read only (baseline), then applied to the cache
            def snapshot(apply: bool) -> tuple[float, CardCache, int]:
                cache = CardCache(credentials.card_hash_key)
                stream = lot.WatchCards(cards_pb2.WatchCardsRequest(lot_id="bench-lot"), metadata=bearer)
                started = time.perf_counter()
                received = 0
                for message in stream:
                    if message.WhichOneof("body") == "chunk":
                        received += len(message.chunk.entries)
                    if apply:
                        cache.apply(message)
                    if message.WhichOneof("body") == "snapshot_end":
                        break
                elapsed = time.perf_counter() - started
                stream.cancel()
                return elapsed, cache, received

            read_seconds, _, received = snapshot(apply=False)
            rss_before = rss_mb()
            apply_seconds, cache, _ = snapshot(apply=True)
            rss_growth = rss_mb() - rss_before
            assert received == len(cache) == n + k, (received, len(cache))
            probe = cache.vehicle_hash(plate(1), PlateColor.BLUE)
            assert cache.lookup(probe) is not None
            lookups = 20_000
            started = time.perf_counter()
            for _ in range(lookups):
                cache.lookup(probe)
            lookup_us = (time.perf_counter() - started) / lookups * 1e6
            row(
                "WatchCards snapshot → CardCache",
                len(cache),
                f"{apply_seconds:.1f} s, table {cache.nbytes / 2**20:.1f} MB, lookup {lookup_us:.1f} µs",
                f"stream read only: {read_seconds:.1f} s",
                apply_seconds / read_seconds,
                seconds=apply_seconds,
                per_second=len(cache) / apply_seconds,
                baseline_seconds=read_seconds,
                table_mb=cache.nbytes / 2**20,
                rss_growth_mb=rss_growth,
                lookup_us=lookup_us,
            )
            report.target("snapshot seconds", apply_seconds, 10.0, higher_is_better=False, unit=" s")
            report.target("lookup table MB", cache.nbytes / 2**20, 150.0, higher_is_better=False, unit=" MB")
        finally:
            process.terminate()
            process.wait(timeout=30)
    return report.emit(args.json)


if __name__ == "__main__":
    raise SystemExit(main())
