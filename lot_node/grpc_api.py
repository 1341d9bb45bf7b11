"""``GateService``: the lot node's API for its gate controllers. Thin servicers: request →
domain values → one service call → reply; errors become status codes in ``crosspark.rpc``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, cast

from crosspark.errors import InvalidArgument
from crosspark.server import Registration
from crosspark.v1 import common_pb2, gate_pb2, gate_pb2_grpc
from lot_node.convert import DIRECTION_FROM_PB, decision_to_pb, identity_from_pb, instant, timestamp
from lot_node.service import Evidence, GateService, NodeStatus, PassResult


def evidence_from_pb(request: gate_pb2.PassRequest) -> Evidence:
    if request.etc_framing and len(request.etc_framing) > 16:
        raise InvalidArgument.field("etc_framing", "at most 16 characters")
    return Evidence(
        gate_id=request.gate_id,
        direction=DIRECTION_FROM_PB.get(request.direction),
        image=request.image,
        etc_frame=request.etc_frame,
        etc_framing=request.etc_framing,
        identity=identity_from_pb(request.identity) if request.HasField("identity") else None,
        occurred_at=instant(request.occurred_at) if request.HasField("occurred_at") else None,
        request_id=request.request_id,
    )


def result_to_pb(result: PassResult) -> gate_pb2.PassDecision:
    if result.decision is None:
        return gate_pb2.PassDecision(
            open=False, display=result.display, candidates=[], kind=gate_pb2.VEHICLE_KIND_UNSPECIFIED
        )
    return decision_to_pb(result.decision, result.candidates)  # type: ignore[return-value]


def status_to_pb(status: NodeStatus) -> gate_pb2.GateStatus:
    reply = gate_pb2.GateStatus(
        lot_id=status.lot_id,
        mode=cast(Any, common_pb2.MembershipMode.Value(f"MEMBERSHIP_MODE_{status.mode}")),
        platform_reachable=status.platform_reachable,
        platform_last_ok_at=timestamp(status.platform_last_ok_at),
        outbox_depth=status.outbox_depth,
        outbox_oldest_at=timestamp(status.outbox_oldest_at),
        rejected_count=status.rejected_count,
        card_version=status.card_version,
        cards_cached=status.cards_cached,
        open_stays=status.open_stays,
    )
    if status.last_statement:
        reply.last_statement.ParseFromString(status.last_statement)
    return reply


class GateServicer(gate_pb2_grpc.GateServiceServicer):
    def __init__(self, gate: GateService, status: Callable[[], NodeStatus]) -> None:
        self.gate = gate
        self.status = status

    def Pass(self, request: gate_pb2.PassRequest, context) -> gate_pb2.PassDecision:  # type: ignore[no-untyped-def]
        return result_to_pb(self.gate.pass_vehicle(evidence_from_pb(request)))

    def PassStream(  # type: ignore[no-untyped-def]
        self, request_iterator: Iterator[gate_pb2.PassRequest], context
    ) -> Iterator[gate_pb2.PassDecision]:
        """One decision per request, in order. A request that is wrong ends the stream with its
        error (the controller re-opens it), after every earlier decision was sent."""
        for request in request_iterator:
            yield result_to_pb(self.gate.pass_vehicle(evidence_from_pb(request)))

    def Pay(self, request: gate_pb2.PayRequest, context) -> gate_pb2.PayReceipt:  # type: ignore[no-untyped-def]
        receipt = self.gate.pay(request.passage_id, request.amount_fen, request.method, request.payment_ref)
        return gate_pb2.PayReceipt(
            open=True, passage_id=receipt.passage_id, paid_fen=receipt.paid_fen, paid_at=timestamp(receipt.paid_at)
        )

    def Status(self, request: gate_pb2.GateStatusRequest, context) -> gate_pb2.GateStatus:  # type: ignore[no-untyped-def]
        return status_to_pb(self.status())


def services(gate: GateService, status: Callable[[], NodeStatus]) -> list[Registration]:
    return [
        Registration(
            gate_pb2_grpc.add_GateServiceServicer_to_server,
            GateServicer(gate, status),
            gate_pb2.DESCRIPTOR.services_by_name["GateService"].full_name,
        )
    ]

