"""The cost of crosspark's server plumbing: a unary call through the authentication/metrics
interceptor against the same call on a bare gRPC server (the baseline), both over loopback."""

from __future__ import annotations

from concurrent import futures

import grpc
from _harness import Report, parser, percentiles, time_each

from crosspark.auth import TokenAuthenticator
from crosspark.client import open_channel
from crosspark.server import GrpcServer, Registration, ServerOptions
from crosspark.v1 import cards_pb2, cards_pb2_grpc

TOKEN = "bench-admin-token-0123456789abcdef"


class Echo(cards_pb2_grpc.CardServiceServicer):
    def GetCard(self, request, context):  # type: ignore[no-untyped-def]
        return cards_pb2.Card(card_id=request.card_id)


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__ or "").parse_args(argv)
    n = 500 if args.quick else 5000
    report = Report("gRPC server plumbing (unary GetCard over loopback)")

    bare = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    cards_pb2_grpc.add_CardServiceServicer_to_server(Echo(), bare)
    bare_port = bare.add_insecure_port("127.0.0.1:0")
    bare.start()
    ours = GrpcServer(
        ServerOptions(listen="127.0.0.1:0", insecure=True, max_workers=8),
        TokenAuthenticator(admin_token=TOKEN),
        [Registration(cards_pb2_grpc.add_CardServiceServicer_to_server, Echo(), "crosspark.v1.CardService")],
    ).start()
    try:
        request = cards_pb2.GetCardRequest(card_id="card_1")
        baseline_stub = cards_pb2_grpc.CardServiceStub(grpc.insecure_channel(f"127.0.0.1:{bare_port}"))
        ours_stub = cards_pb2_grpc.CardServiceStub(open_channel(ours.address, token=TOKEN, insecure=True))
        base = percentiles(time_each(lambda: baseline_stub.GetCard(request), n))
        full = percentiles(time_each(lambda: ours_stub.GetCard(request), n))
    finally:
        bare.stop(0)
        ours.stop(0)
    report.add(server="bare grpc (baseline)", **base)
    report.add(server="crosspark (auth+metrics+errors)", **full)
    report.add(
        server="ratio crosspark/bare", p50_ms=full["p50_ms"] / base["p50_ms"], p99_ms=full["p99_ms"] / base["p99_ms"]
    )
    return report.emit(args.json)


if __name__ == "__main__":
    raise SystemExit(main())
