"""Server bootstrap: health, reflection, TLS, the loopback rule for plaintext, the platform."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from crosspark.auth import TokenAuthenticator
from crosspark.client import open_channel
from crosspark.platform import PlatformSettings
from crosspark.server import ConfigError, GrpcServer, Registration, ServerOptions
from crosspark.tls import ensure_dev_tls
from crosspark.v1 import (
    admin_pb2_grpc,
    cards_pb2_grpc,
    gate_pb2_grpc,
    settlement_pb2_grpc,
)
from tests.support import ADMIN_TOKEN, channel_to, running_platform

ALL_FOUR = [
    Registration(
        cards_pb2_grpc.add_CardServiceServicer_to_server,
        cards_pb2_grpc.CardServiceServicer(),
        "crosspark.v1.CardService",
    ),
    Registration(
        admin_pb2_grpc.add_AdminServiceServicer_to_server,
        admin_pb2_grpc.AdminServiceServicer(),
        "crosspark.v1.AdminService",
    ),
    Registration(
        settlement_pb2_grpc.add_SettlementServiceServicer_to_server,
        settlement_pb2_grpc.SettlementServiceServicer(),
        "crosspark.v1.SettlementService",
    ),
    Registration(
        gate_pb2_grpc.add_GateServiceServicer_to_server, gate_pb2_grpc.GateServiceServicer(), "crosspark.v1.GateService"
    ),
]


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "[::]", "example.org"])
def test_insecure_on_non_loopback_address_is_refused(host: str) -> None:
    with pytest.raises(ConfigError, match="loopback"):
        ServerOptions(listen=f"{host}:0", insecure=True).check()


def test_insecure_client_to_non_loopback_address_is_refused() -> None:
    with pytest.raises(ConfigError, match="loopback"):
        open_channel("203.0.113.5:443", insecure=True)


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "localhost"])
def test_insecure_on_loopback_is_allowed(host: str) -> None:
    ServerOptions(listen=f"{host}:0", insecure=True).check()


def test_short_admin_token_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 16"):
        PlatformSettings(admin_token="short").check()


def test_reflection_lists_the_four_services() -> None:
    server = GrpcServer(ServerOptions(listen="127.0.0.1:0", insecure=True), TokenAuthenticator(), ALL_FOUR).start()
    try:
        database = ProtoReflectionDescriptorDatabase(open_channel(server.address, insecure=True))
        services = set(database.get_services())
        assert {
            "crosspark.v1.CardService",
            "crosspark.v1.AdminService",
            "crosspark.v1.SettlementService",
            "crosspark.v1.GateService",
        } <= services
        # grpcurl describes a method through the file that defines it.
        method = database.FindFileContainingSymbol("crosspark.v1.CardService")
        assert method.name == "crosspark/v1/cards.proto"
    finally:
        server.stop(grace=0)


def test_platform_serves_health_and_reflection_without_credentials(tmp_path: Path) -> None:
    with running_platform(tmp_path) as platform:
        channel = open_channel(platform.address, insecure=True)
        health = health_pb2_grpc.HealthStub(channel)
        for service in ["", "crosspark.v1.CardService", "crosspark.v1.SettlementService"]:
            reply = health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
        assert {"crosspark.v1.CardService", "crosspark.v1.AdminService", "crosspark.v1.SettlementService"} <= services


def test_platform_health_reports_not_serving_for_unknown_service(tmp_path: Path) -> None:
    with running_platform(tmp_path) as platform:
        health = health_pb2_grpc.HealthStub(channel_to(platform))
        with pytest.raises(grpc.RpcError) as caught:
            health.Check(health_pb2.HealthCheckRequest(service="crosspark.v1.NoSuchService"))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_tls_server_accepts_client_that_trusts_its_ca(tmp_path: Path) -> None:
    tls = ensure_dev_tls(tmp_path / "tls")
    options = ServerOptions(listen="127.0.0.1:0", tls=tls)
    server = GrpcServer(options, TokenAuthenticator(), ALL_FOUR).start()
    try:
        trusted = health_pb2_grpc.HealthStub(open_channel(f"localhost:{server.port}", ca_cert=tls.ca_cert))
        assert (
            trusted.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
        )
        other_ca = ensure_dev_tls(tmp_path / "other").ca_cert
        untrusted = health_pb2_grpc.HealthStub(open_channel(f"localhost:{server.port}", ca_cert=other_ca))
        with pytest.raises(grpc.RpcError) as caught:
            untrusted.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(grace=0)


def test_dev_tls_keeps_existing_files(tmp_path: Path) -> None:
    first = ensure_dev_tls(tmp_path)
    before = first.server_cert.read_bytes()
    assert ensure_dev_tls(tmp_path).server_cert.read_bytes() == before
    assert (first.server_key.stat().st_mode & 0o077) == 0


def test_platform_without_admin_token_is_refused(tmp_path: Path) -> None:
    from crosspark.platform import Platform

    with pytest.raises(ConfigError, match="admin credential"):
        Platform(PlatformSettings(admin_token="", listen="127.0.0.1:0", data_dir=tmp_path, insecure=True))


def test_platform_applies_migrations_on_start(tmp_path: Path) -> None:
    from crosspark.db import Database, current_revision, head_revision

    with running_platform(tmp_path):
        pass
    db = Database(f"sqlite:///{tmp_path / 'platform' / 'platform.db'}")
    assert current_revision(db, "platform") == head_revision("platform")
    db.dispose()


def test_admin_token_env_is_not_a_lot_token(tmp_path: Path) -> None:
    from tests.support import insert_lot

    with running_platform(tmp_path) as platform:
        token = insert_lot(platform, "lot-x")
        assert token != ADMIN_TOKEN


def test_metrics_endpoint_counts_rpcs(tmp_path: Path) -> None:
    import urllib.request

    from crosspark.metrics import serve_metrics

    with running_platform(tmp_path) as platform:
        health_pb2_grpc.HealthStub(channel_to(platform)).Check(health_pb2.HealthCheckRequest())
        with pytest.raises(grpc.RpcError):
            from crosspark.v1 import admin_pb2

            admin_pb2_grpc.AdminServiceStub(channel_to(platform, token="wrong")).ListLots(admin_pb2.ListLotsRequest())
        port = serve_metrics("127.0.0.1:0")
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert 'crosspark_rpc_total{code="UNAUTHENTICATED",method="/crosspark.v1.AdminService/ListLots"}' in body
