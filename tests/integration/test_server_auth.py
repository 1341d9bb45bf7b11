"""Authentication and authorisation of every RPC by its `access` option, on a real server."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc
import pytest

from crosspark.auth import TokenAuthenticator
from crosspark.client import open_channel
from crosspark.errors import InvalidArgument, NotFound
from crosspark.rpc import bad_request_violations, principal_of
from crosspark.server import GrpcServer, Registration, ServerOptions
from crosspark.v1 import admin_pb2, admin_pb2_grpc, cards_pb2, cards_pb2_grpc

ADMIN = "admin-token-for-tests-0123456789"
LOT_TOKENS = {"lot-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaa": "lot-a"}


class FakeCards(cards_pb2_grpc.CardServiceServicer):
    """Answers with what the server knows of the caller, or raises domain errors on request."""

    def GetCard(self, request, context):  # type: ignore[no-untyped-def]
        if request.card_id == "missing":
            raise NotFound("card 'missing' does not exist")
        if request.card_id == "bad":
            raise InvalidArgument("bad request", [("card_id", "must not be 'bad'")])
        return cards_pb2.Card(card_id=request.card_id, holder_name=principal_of(context).role.value)

    def CheckMembership(self, request, context):  # type: ignore[no-untyped-def]
        who = principal_of(context)
        return cards_pb2.MembershipAnswer(card_id=f"{who.role.value}:{who.lot_id}")

    def WatchCards(self, request, context):  # type: ignore[no-untyped-def]
        yield cards_pb2.CardListMessage(heartbeat=cards_pb2.Heartbeat(version=1))
        raise NotFound("stream ends with a domain error")


class FakeAdmin(admin_pb2_grpc.AdminServiceServicer):
    def ListLots(self, request, context):  # type: ignore[no-untyped-def]
        return admin_pb2.ListLotsResponse()


@pytest.fixture(scope="module")
def server() -> Iterator[GrpcServer]:
    authenticator = TokenAuthenticator(admin_token=ADMIN, lot_lookup=LOT_TOKENS.get)
    services = [
        Registration(cards_pb2_grpc.add_CardServiceServicer_to_server, FakeCards(), "crosspark.v1.CardService"),
        Registration(admin_pb2_grpc.add_AdminServiceServicer_to_server, FakeAdmin(), "crosspark.v1.AdminService"),
    ]
    running = GrpcServer(
        ServerOptions(listen="127.0.0.1:0", insecure=True, max_message_bytes=1 << 20), authenticator, services
    )
    running.start()
    yield running
    running.stop(grace=0)


def cards(server: GrpcServer, token: str | None) -> cards_pb2_grpc.CardServiceStub:
    return cards_pb2_grpc.CardServiceStub(open_channel(server.address, token=token, insecure=True))


def admin(server: GrpcServer, token: str | None) -> admin_pb2_grpc.AdminServiceStub:
    return admin_pb2_grpc.AdminServiceStub(open_channel(server.address, token=token, insecure=True))


def test_call_without_token_is_unauthenticated(server: GrpcServer) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        cards(server, None).GetCard(cards_pb2.GetCardRequest(card_id="c1"))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_call_with_wrong_token_is_unauthenticated(server: GrpcServer) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        cards(server, "not-a-real-token").GetCard(cards_pb2.GetCardRequest(card_id="c1"))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_stream_without_token_is_unauthenticated(server: GrpcServer) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        list(cards(server, None).WatchCards(cards_pb2.WatchCardsRequest(lot_id="lot-a")))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_lot_token_on_admin_rpc_is_permission_denied(server: GrpcServer) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        admin(server, "lot-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaa").ListLots(admin_pb2.ListLotsRequest())
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_lot_token_on_admin_card_rpc_is_permission_denied(server: GrpcServer) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        cards(server, "lot-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaa").GetCard(cards_pb2.GetCardRequest(card_id="c1"))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_lot_token_reaches_lot_rpc_as_that_lot(server: GrpcServer) -> None:
    answer = cards(server, "lot-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaa").CheckMembership(cards_pb2.CheckMembershipRequest())
    assert answer.card_id == "lot:lot-a"


def test_admin_token_reaches_admin_and_lot_rpcs(server: GrpcServer) -> None:
    assert cards(server, ADMIN).GetCard(cards_pb2.GetCardRequest(card_id="c1")).holder_name == "admin"
    assert cards(server, ADMIN).CheckMembership(cards_pb2.CheckMembershipRequest()).card_id == "admin:"


def test_unimplemented_rpc_answers_unimplemented_after_auth(server: GrpcServer) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        admin(server, ADMIN).RegisterLot(admin_pb2.RegisterLotRequest())
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_domain_error_becomes_its_status_code(server: GrpcServer) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        cards(server, ADMIN).GetCard(cards_pb2.GetCardRequest(card_id="missing"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "does not exist" in caught.value.details()


def test_invalid_argument_carries_field_violations(server: GrpcServer) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        cards(server, ADMIN).GetCard(cards_pb2.GetCardRequest(card_id="bad"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_violations(caught.value) == [("card_id", "must not be 'bad'")]


def test_domain_error_inside_a_stream_ends_it_with_its_code(server: GrpcServer) -> None:
    received = []
    with pytest.raises(grpc.RpcError) as caught:
        for message in cards(server, ADMIN).WatchCards(cards_pb2.WatchCardsRequest(lot_id="lot-a")):
            received.append(message)
    assert len(received) == 1
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_oversized_message_is_resource_exhausted(server: GrpcServer) -> None:
    huge = cards_pb2.GetCardRequest(card_id="x" * (2 << 20))
    with pytest.raises(grpc.RpcError) as caught:
        cards(server, ADMIN).GetCard(huge)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_slow_token_lookup_holds_up_only_its_own_call() -> None:
    """Callers are authenticated on the call's worker thread, not on the server's one serving
    thread: while one lookup waits (a database busy for a moment), other calls are answered."""
    entered, release = threading.Event(), threading.Event()

    def lookup(token: str) -> str | None:
        if token == "slow-token-bbbbbbbbbbbbbbbbbbbbbbbbbbb":
            entered.set()
            release.wait(30)
        return LOT_TOKENS.get(token)

    services = [Registration(cards_pb2_grpc.add_CardServiceServicer_to_server, FakeCards(), "crosspark.v1.CardService")]
    running = GrpcServer(
        ServerOptions(listen="127.0.0.1:0", insecure=True),
        TokenAuthenticator(admin_token=ADMIN, lot_lookup=lookup),
        services,
    ).start()
    try:
        slow = cards(running, "slow-token-bbbbbbbbbbbbbbbbbbbbbbbbbbb").CheckMembership.future(
            cards_pb2.CheckMembershipRequest(lot_id="lot-a")
        )
        assert entered.wait(10)
        answer = cards(running, "lot-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaa").CheckMembership(
            cards_pb2.CheckMembershipRequest(lot_id="lot-a"), timeout=10
        )
        assert answer.card_id == "lot:lot-a" and not slow.done()
        release.set()
        with pytest.raises(grpc.RpcError) as caught:
            slow.result(timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        release.set()
        running.stop(grace=0)
