"""gRPC entry points of the card side. RPCs not yet built answer UNIMPLEMENTED (issue 3)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from crosspark.server import Registration
from crosspark.v1 import admin_pb2, admin_pb2_grpc, cards_pb2, cards_pb2_grpc

if TYPE_CHECKING:
    from crosspark.platform import PlatformContext


class CardServicer(cards_pb2_grpc.CardServiceServicer):
    def __init__(self, ctx: PlatformContext) -> None:
        self.ctx = ctx


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, ctx: PlatformContext) -> None:
        self.ctx = ctx


def services(ctx: PlatformContext) -> list[Registration]:
    return [
        Registration(
            cards_pb2_grpc.add_CardServiceServicer_to_server,
            CardServicer(ctx),
            cards_pb2.DESCRIPTOR.services_by_name["CardService"].full_name,
        ),
        Registration(
            admin_pb2_grpc.add_AdminServiceServicer_to_server,
            AdminServicer(ctx),
            admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
        ),
    ]
