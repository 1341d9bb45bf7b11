"""gRPC entry points of settlement. RPCs not yet built answer UNIMPLEMENTED (issue 4)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from crosspark.server import Registration
from crosspark.v1 import settlement_pb2, settlement_pb2_grpc

if TYPE_CHECKING:
    from crosspark.platform import PlatformContext


class SettlementServicer(settlement_pb2_grpc.SettlementServiceServicer):
    def __init__(self, ctx: PlatformContext) -> None:
        self.ctx = ctx


def services(ctx: PlatformContext) -> list[Registration]:
    return [
        Registration(
            settlement_pb2_grpc.add_SettlementServiceServicer_to_server,
            SettlementServicer(ctx),
            settlement_pb2.DESCRIPTOR.services_by_name["SettlementService"].full_name,
        )
    ]


def background(ctx: PlatformContext) -> None:
    """Start settlement's background workers (the statement scheduler, issue 4)."""
