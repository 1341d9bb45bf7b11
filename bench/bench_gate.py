"""Gate decisions of the lot node (issue 5 targets).

* CACHED decision from a known identity, in process: the decision itself (card-cache lookup +
  gate rules) and the whole use case with its durable commit; through ``Pass`` over loopback gRPC.
  Baselines: one bare SQLite commit with the same durability (the disk's fsync floor) and one
  gRPC health-check round trip.
* ``Pass`` with a 1280×720 JPEG (recognition included) against ``recognize`` alone.
* ``ONLINE_FALLBACK`` with the platform unreachable (port refused, and a black hole that accepts and
  never answers): decision time against the deadline, and the share flagged OFFLINE_DECISION.
* Resident memory of a real ``crosspark lot serve`` process holding N cached cards (loaded from its
  store), before and after its first photo, against one holding none.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _harness import Report, parser, percentiles, rss_mb, time_each

KEY = hashlib.sha256(b"bench-card-hash-key").digest()
T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def plates(n: int) -> list[str]:
    from crosspark.plate import LETTERS, PROVINCES

    out = []
    for i in range(n):
        out.append(f"{PROVINCES[i % 31]}{LETTERS[(i // 31) % 24]}{i % 100000:05d}")
    return out


def card_cache(n: int):  # type: ignore[no-untyped-def]
    from google.protobuf.timestamp_pb2 import Timestamp

    from card_service.domain import new_card_id, vehicle_hash
    from crosspark.identity import PlateColor
    from crosspark.v1 import cards_pb2
    from lot_node.card_cache import CardCache

    cache = CardCache(KEY)
    cache.begin_snapshot(n)
    start, end = Timestamp(), Timestamp()
    start.FromDatetime(T0 - timedelta(days=10))
    end.FromDatetime(T0 + timedelta(days=30))
    chunk = []
    for i, plate in enumerate(plates(n)):
        chunk.append(cards_pb2.CardListEntry(
            vehicle_hash=vehicle_hash(KEY, plate, PlateColor.BLUE), card_id=new_card_id(T0), valid_from=start,
            valid_until=end, state=cards_pb2.CARD_STATE_ACTIVE, valid_at_lot=True, version=i + 1,
        ))
        if len(chunk) == 20_000:
            cache.apply(cards_pb2.CardListMessage(chunk=cards_pb2.CardListChunk(entries=chunk, version=n)))
            chunk = []
    if chunk:
        cache.apply(cards_pb2.CardListMessage(chunk=cards_pb2.CardListChunk(entries=chunk, version=n)))
    cache.end_snapshot(n)
    return cache


def gate_service(db_url: str, cache, mode: str = "CACHED", online=None, deadline_s: float = 0.3):  # type: ignore[no-untyped-def]
    from crosspark.clock import SystemClock
    from crosspark.db import Database, upgrade
    from lot_node.card_sync import cached_answer
    from lot_node.membership import MembershipDecider, Mode
    from lot_node.service import GateService, GateSettings

    db = Database(db_url)
    upgrade(db, "lot")
    decider = MembershipDecider(
        Mode(mode), deadline_s=deadline_s, cached=lambda ident, at: cached_answer(cache, ident, at), online=online
    )
    return GateService(db, SystemClock(), GateSettings(lot_id="bench"), decider, lambda a, b: 0)


def sqlite_commit_floor(path: Path, n: int) -> list[float]:
    from crosspark.db import Database

    db = Database(f"sqlite:///{path}")
    with db.writer.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT)")

    def one() -> None:
        with db.writer.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t (b) VALUES ('x')")

    samples = time_each(one, n)
    db.dispose()
    return samples


def bench_cached(report: Report, quick: bool, workdir: Path) -> None:
    from crosspark.identity import IdentitySource, PlateColor, VehicleIdentity
    from lot_node.card_sync import cached_answer
    from lot_node.gate import Direction, decide_entry
    from lot_node.service import Evidence

    n_cards = 5_000 if quick else 100_000
    n = 200 if quick else 2000
    cache = card_cache(n_cards)
    members = plates(n_cards)
    idents = [VehicleIdentity(p, PlateColor.BLUE, IdentitySource.MANUAL) for p in members[: n + 20]]
    it = iter(range(10**9))

    def decide() -> None:
        ident = idents[next(it) % len(idents)]
        decide_entry("p", ident, T0, cached_answer(cache, ident, T0), [], [])

    decision = percentiles(time_each(decide, n))
    report.add(case="decision in process (cache lookup + rules)", **decision)

    floor = percentiles(sqlite_commit_floor(workdir / "floor.db", n))
    report.add(case="baseline: one SQLite commit (synchronous=FULL)", **floor)

    for label, folder in (("disk", workdir), ("tmpfs", Path("/dev/shm") if Path("/dev/shm").is_dir() else workdir)):
        with tempfile.TemporaryDirectory(dir=folder) as d:
            service = gate_service(f"sqlite:///{d}/lot.db", cache)
            k = iter(range(10**9))

            def pass_one(service=service, k=k) -> None:  # type: ignore[no-untyped-def]
                i = next(k)
                ident = idents[(i // 2) % len(idents)]
                service.pass_vehicle(Evidence("g1", Direction.ENTRY if i % 2 == 0 else Direction.EXIT, identity=ident))

            stats = percentiles(time_each(pass_one, n))
            report.add(case=f"pass_vehicle in process, CACHED, durable commit ({label})", **stats,
                       ratio_to_commit=round(stats["p50_ms"] / floor["p50_ms"], 2))
            service.db.dispose()
    report.target("CACHED decision p99 in process", decision["p99_ms"], 1.0, higher_is_better=False, unit=" ms")

    # Through Pass over loopback gRPC.
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from crosspark.auth import TokenAuthenticator
    from crosspark.server import GrpcServer, ServerOptions
    from crosspark.v1 import common_pb2, gate_pb2, gate_pb2_grpc, settlement_pb2
    from lot_node import grpc_api

    service = gate_service(f"sqlite:///{workdir}/grpc.db", cache)
    server = GrpcServer(ServerOptions(listen="127.0.0.1:0", insecure=True), TokenAuthenticator(),
                        grpc_api.services(service, lambda: None)).start()  # type: ignore[arg-type,return-value]
    channel = grpc.insecure_channel(server.address)
    stub = gate_pb2_grpc.GateServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    floor_rpc = percentiles(time_each(lambda: health.Check(health_pb2.HealthCheckRequest()), n))
    report.add(case="baseline: gRPC health check round trip", **floor_rpc)
    j = iter(range(10**9))

    def pass_rpc() -> None:
        i = next(j)
        plate = members[(i // 2) % len(members)]
        stub.Pass(gate_pb2.PassRequest(
            gate_id="g1", direction=settlement_pb2.DIRECTION_ENTRY if i % 2 == 0 else settlement_pb2.DIRECTION_EXIT,
            identity=common_pb2.VehicleIdentity(plate=plate, color=common_pb2.PLATE_COLOR_BLUE),
        ))

    through = percentiles(time_each(pass_rpc, n))
    report.add(case="Pass over loopback gRPC, CACHED, durable commit (disk)", **through,
               ratio_to_rpc=round(through["p50_ms"] / floor_rpc["p50_ms"], 2))
    report.target("CACHED decision p99 through Pass", through["p99_ms"], 5.0, higher_is_better=False, unit=" ms")

    # Pass with a 1280×720 JPEG.
    try:
        bench_photo(report, quick, stub)
    except Exception as exc:
        report.add(case=f"Pass with JPEG not measured: {type(exc).__name__}: {exc}"[:140])
    channel.close()
    server.stop(0)
    service.db.dispose()


def bench_photo(report: Report, quick: bool, stub) -> None:  # type: ignore[no-untyped-def]
    import cv2

    from crosspark.v1 import gate_pb2, settlement_pb2
    from recognition_core.pipeline import read_image, recognize
    from recognition_core.synth import render_gate_photos

    photos = [cv2.imencode(".jpg", s.image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
              for s in render_gate_photos(4 if quick else 12, seed=5)]
    m = 8 if quick else 40
    request = [gate_pb2.PassRequest(gate_id="g2", direction=settlement_pb2.DIRECTION_ENTRY, image=p) for p in photos]
    for i in range(2):  # warm up both paths
        recognize(read_image(photos[i % len(photos)]))
        stub.Pass(request[i % len(request)])
    # Interleaved, so both see the same machine load.
    alone_s, photo_s = [], []
    for i in range(m):
        start = time.perf_counter()
        recognize(read_image(photos[i % len(photos)]))
        alone_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        stub.Pass(request[i % len(request)])
        photo_s.append(time.perf_counter() - start)
    alone, photo = percentiles(alone_s), percentiles(photo_s)
    report.add(case="baseline: read_image + recognize, 1280x720 JPEG", **alone)
    report.add(case="Pass with a 1280x720 JPEG (recognition included)", **photo,
               ratio_to_recognize=round(photo["p50_ms"] / alone["p50_ms"], 2))
    report.target("Pass with 1280x720 JPEG p50", photo["p50_ms"], 30.0, higher_is_better=False, unit=" ms")


def black_hole() -> tuple[socket.socket, int]:
    """A TCP port that accepts connections and never says a word."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    return sock, sock.getsockname()[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_fallback(report: Report, quick: bool, workdir: Path) -> None:
    from crosspark.client import open_channel
    from crosspark.identity import IdentitySource, PlateColor, VehicleIdentity
    from crosspark.v1 import cards_pb2, cards_pb2_grpc, common_pb2
    from lot_node.convert import answer_from_pb, timestamp
    from lot_node.gate import Direction, Flag
    from lot_node.service import Evidence

    deadline_s = 0.3
    n = 5 if quick else 60
    cache = card_cache(1000)
    members = plates(1000)
    hole, hole_port = black_hole()
    for label, target in (("refused port", f"127.0.0.1:{free_port()}"), ("black hole", f"127.0.0.1:{hole_port}")):
        channel = open_channel(target, token="t", insecure=True)
        stub = cards_pb2_grpc.CardServiceStub(channel)

        def online(ident, at, timeout_s, stub=stub):  # type: ignore[no-untyped-def]
            vehicle = common_pb2.VehicleIdentity(plate=ident.plate, color=common_pb2.PLATE_COLOR_BLUE)
            reply = stub.CheckMembership(
                cards_pb2.CheckMembershipRequest(lot_id="bench", vehicle=vehicle, at=timestamp(at)), timeout=timeout_s
            )
            return answer_from_pb(reply)

        with tempfile.TemporaryDirectory(dir=workdir) as d:
            service = gate_service(f"sqlite:///{d}/lot.db", cache, "ONLINE_FALLBACK", online, deadline_s)
            flagged = monthly = 0
            samples = []
            for i in range(n):
                ident = VehicleIdentity(members[i], PlateColor.BLUE, IdentitySource.MANUAL)
                start = time.perf_counter()
                result = service.pass_vehicle(Evidence("g1", Direction.ENTRY, identity=ident))
                samples.append(time.perf_counter() - start)
                assert result.decision is not None
                flagged += Flag.OFFLINE_DECISION in result.decision.flags
                monthly += result.decision.kind.value == "MONTHLY"
            stats = percentiles(samples)
            report.add(case=f"ONLINE_FALLBACK, platform unreachable ({label}), deadline 300 ms", **stats,
                       offline_flagged=f"{flagged}/{n}", monthly=f"{monthly}/{n}")
            report.target(f"fallback decision max ({label})", stats["max_ms"], deadline_s * 1000 + 50,
                          higher_is_better=False, unit=" ms")
            service.db.dispose()
        channel.close()
    hole.close()


_FILL_SCRIPT = r"""
import sys, hashlib
from datetime import UTC, datetime, timedelta
sys.path.insert(0, sys.argv[3])
n, db_path = int(sys.argv[1]), sys.argv[2]
from card_service.domain import new_card_id
from crosspark.db import Database, upgrade
from lot_node import store
db = Database(f"sqlite:///{db_path}")
upgrade(db, "lot")
t0 = datetime(2026, 11, 1, tzinfo=UTC)
with db.session() as s:
    for start in range(0, n, 50_000):
        rows = [dict(card_id=new_card_id(t0), vehicle_hash=hashlib.sha256(i.to_bytes(8, "big")).digest(),
                     valid_from=t0, valid_until=t0 + timedelta(days=30), state="ACTIVE", valid_at_lot=True,
                     version=i + 1) for i in range(start, min(n, start + 50_000))]
        store.insert_cards(s, rows)
    store.put_meta(s, "card_version", str(n), t0)
db.dispose()
"""


def _lot_node_rss(workdir: Path, cards: int, photo: bytes) -> tuple[float, float, float]:
    """Start a real ``crosspark lot serve`` on a store holding ``cards`` cards (filled by another
    process); its resident memory once it is listening, and after a Pass with a photo (the
    recognition models loaded). The platform address refuses connections: the node keeps retrying
    in the background, as a lot cut off from the platform does."""
    import grpc

    from crosspark.v1 import gate_pb2, gate_pb2_grpc, settlement_pb2

    db = workdir / f"mem{cards}.db"
    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "CROSSPARK_LOG_LEVEL": "warning"}
    subprocess.run([sys.executable, "-c", _FILL_SCRIPT, str(cards), str(db), repo], check=True, env=env,
                   capture_output=True)
    listen = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [sys.executable, "-m", "crosspark", "lot", "serve", "--lot-id", "bench", "--platform",
         f"127.0.0.1:{free_port()}", "--token", "t", "--insecure", "--mode", "cached", "--card-hash-key",
         KEY.hex(), "--db", f"sqlite:///{db}", "--data-dir", str(workdir / f"node{cards}"), "--listen", listen],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if "listening on" in line:
                break
        else:
            raise RuntimeError(f"lot serve exited with {process.wait()}")
        time.sleep(1.0)  # let the start-up garbage settle (not a timing measure)
        started = rss_mb(process.pid)
        with grpc.insecure_channel(listen) as channel:
            start = time.perf_counter()
            gate_pb2_grpc.GateServiceStub(channel).Pass(
                gate_pb2.PassRequest(gate_id="g1", direction=settlement_pb2.DIRECTION_ENTRY, image=photo), timeout=60
            )
            load_s = time.perf_counter() - start
        return started, rss_mb(process.pid), load_s
    finally:
        process.terminate()
        process.wait(timeout=30)


def bench_memory(report: Report, quick: bool, workdir: Path) -> None:
    import cv2

    from recognition_core.synth import render_gate_photos

    photo = cv2.imencode(".jpg", render_gate_photos(1, seed=3)[0].image)[1].tobytes()
    n = 20_000 if quick else 1_000_000
    base_started, base_photo, _ = _lot_node_rss(workdir, 0, photo)
    started, after_photo, first_photo_s = _lot_node_rss(workdir, n, photo)
    report.add(case="lot serve RSS, empty card store: listening / after a photo Pass", rss_mb=round(base_started, 1),
               rss_after_photo_mb=round(base_photo, 1))
    report.add(case=f"lot serve RSS, {n:,} cached cards: listening / after a photo Pass", rss_mb=round(started, 1),
               rss_after_photo_mb=round(after_photo, 1), ratio_to_empty=round(after_photo / base_photo, 2),
               first_photo_s=round(first_photo_s, 2))
    if not quick:
        report.target("lot serve RSS with 1,000,000 cached cards (recognition loaded)", after_photo, 200.0,
                      higher_is_better=False, unit=" MB")


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    os.environ.setdefault("CROSSPARK_LOG_LEVEL", "warning")
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    report = Report("gate (lot node)")
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        bench_cached(report, args.quick, work)
        bench_fallback(report, args.quick, work)
        bench_memory(report, args.quick, work)
    return report.emit(args.json)


if __name__ == "__main__":
    raise SystemExit(main())
