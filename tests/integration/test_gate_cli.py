"""`crosspark gate pass|pay|status` speak GateService like a gate controller."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime

import pytest
from click.testing import CliRunner

from crosspark.auth import TokenAuthenticator
from crosspark.cli import cli
from crosspark.server import GrpcServer, Registration, ServerOptions
from crosspark.v1 import common_pb2, gate_pb2, gate_pb2_grpc, settlement_pb2


class FakeGate(gate_pb2_grpc.GateServiceServicer):
    def __init__(self) -> None:
        self.requests: list[object] = []

    def Pass(self, request, context):  # type: ignore[no-untyped-def]
        self.requests.append(request)
        return gate_pb2.PassDecision(open=True, kind=gate_pb2.VEHICLE_KIND_MONTHLY, passage_id="p-1")

    def Pay(self, request, context):  # type: ignore[no-untyped-def]
        self.requests.append(request)
        return gate_pb2.PayReceipt(open=True, passage_id=request.passage_id, paid_fen=request.amount_fen)


@pytest.fixture(scope="module")
def gate() -> Iterator[tuple[str, FakeGate]]:
    fake = FakeGate()
    server = GrpcServer(
        ServerOptions(listen="127.0.0.1:0", insecure=True),
        TokenAuthenticator(),
        [Registration(gate_pb2_grpc.add_GateServiceServicer_to_server, fake, "crosspark.v1.GateService")],
    ).start()
    yield server.address, fake
    server.stop(grace=0)


def test_gate_pass_sends_the_identity_and_instant(gate: tuple[str, FakeGate]) -> None:
    address, fake = gate
    result = CliRunner().invoke(
        cli,
        ["gate", "pass", "--lot", address, "--insecure", "--direction", "exit", "--plate", "粤B12345",
         "--color", "green", "--at", "2026-11-24T10:00:00+08:00", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["passage_id"] == "p-1"
    request = fake.requests[-1]
    assert request.direction == settlement_pb2.DIRECTION_EXIT  # type: ignore[attr-defined]
    assert request.identity.plate == "粤B12345"  # type: ignore[attr-defined]
    assert request.identity.color == common_pb2.PLATE_COLOR_GREEN  # type: ignore[attr-defined]
    at = datetime.fromisoformat("2026-11-24T10:00:00+08:00")
    assert request.occurred_at.seconds == int(at.timestamp())  # type: ignore[attr-defined]


def test_gate_pay_sends_the_amount(gate: tuple[str, FakeGate]) -> None:
    address, fake = gate
    result = CliRunner().invoke(cli, ["gate", "pay", "--lot", address, "--insecure", "p-9", "1200", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["paid_fen"] == "1200"
    assert fake.requests[-1].amount_fen == 1200  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--direction", "entry"], "give --image, --etc-frame or --plate"),
        (["--direction", "entry", "--plate", "粤B12345", "--color", "purple"], "unknown colour"),
        (["--direction", "entry", "--plate", "粤B12345", "--at", "2026-11-24T10:00"], "with an offset"),
        (["--direction", "entry", "--etc-frame", "zz"], "not hex"),
    ],
)
def test_gate_pass_refuses_bad_input_before_calling(gate: tuple[str, FakeGate], args: list[str], message: str) -> None:
    address, fake = gate
    before = len(fake.requests)
    result = CliRunner().invoke(cli, ["gate", "pass", "--lot", address, "--insecure", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert len(fake.requests) == before
