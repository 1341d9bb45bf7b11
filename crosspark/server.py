"""gRPC server bootstrap shared by the platform and the lot node: TLS (or plaintext on loopback
only), authentication, health checking, reflection, message-size limits, graceful shutdown."""

from __future__ import annotations

import ipaddress
import signal
import threading
from collections.abc import Callable, Iterable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from crosspark.auth import TokenAuthenticator
from crosspark.rpc import ServerInterceptor
from crosspark.tls import TlsFiles

log = structlog.get_logger("crosspark.server")

DEFAULT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024


class ConfigError(ValueError):
    """A setting that cannot work; the message says which and why."""


def split_host_port(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` → (host, port); port 0 lets the OS choose."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"listen address {listen!r} is not HOST:PORT")
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"listen address {listen!r} has a non-numeric port") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"listen address {listen!r}: port out of range")
    return host, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Registration:
    """A servicer and the generated ``add_*Servicer_to_server`` function that mounts it."""

    add: Callable[[Any, grpc.Server], None]
    servicer: Any
    service_name: str


@dataclass
class ServerOptions:
    listen: str = "127.0.0.1:50051"
    insecure: bool = False
    tls: TlsFiles | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    #: Threads serving RPCs; an open stream occupies one for its whole life.
    max_workers: int = 64
    grace_seconds: float = 5.0
    extra_options: list[tuple[str, Any]] = field(default_factory=list)

    def check(self) -> None:
        host, _ = split_host_port(self.listen)
        if self.insecure and not is_loopback(host):
            raise ConfigError(
                f"--insecure (plaintext) is allowed only on a loopback address, not {host!r}; use TLS (--tls-dir)"
            )
        if not self.insecure and self.tls is None:
            raise ConfigError("TLS files are required unless --insecure is given")


class GrpcServer:
    """A started gRPC server with health and reflection; ``stop`` drains calls for the grace period."""

    def __init__(self, options: ServerOptions, authenticator: TokenAuthenticator, services: Iterable[Registration]):
        options.check()
        self.options = options
        services = list(services)
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=options.max_workers, thread_name_prefix="grpc"),
            interceptors=[ServerInterceptor(authenticator)],
            options=[
                ("grpc.max_receive_message_length", options.max_message_bytes),
                ("grpc.max_send_message_length", options.max_message_bytes),
                ("grpc.so_reuseport", 0),
                *options.extra_options,
            ],
            # Calls beyond the thread pool are refused (RESOURCE_EXHAUSTED) rather than queued
            # behind long-lived streams.
            maximum_concurrent_rpcs=options.max_workers,
        )
        for service in services:
            service.add(service.servicer, self._server)
        self.health = health.HealthServicer(experimental_non_blocking=True)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        names = [s.service_name for s in services]
        reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], self._server)
        if options.insecure:
            self.port = self._server.add_insecure_port(options.listen)
        else:
            assert options.tls is not None
            credentials = grpc.ssl_server_credentials([options.tls.server_pair()])
            self.port = self._server.add_secure_port(options.listen, credentials)
        if self.port == 0:
            raise ConfigError(f"could not listen on {options.listen}")
        self._names = names
        self._stopped = threading.Event()

    @property
    def address(self) -> str:
        host, _ = split_host_port(self.options.listen)
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def start(self) -> GrpcServer:
        self._server.start()
        for name in ["", *self._names]:
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("server.started", address=self.address, tls=not self.options.insecure, services=self._names)
        return self

    def stop(self, grace: float | None = None) -> None:
        """Refuse new calls, let running ones finish for ``grace`` seconds, then stop."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.health.enter_graceful_shutdown()
        self._server.stop(self.options.grace_seconds if grace is None else grace).wait()
        log.info("server.stopped", address=self.address)

    def wait(self) -> None:
        self._server.wait_for_termination()


def run_until_signalled(stop: Callable[[], None], on_ready: Callable[[], None] | None = None) -> None:
    """Block the main thread until SIGTERM or SIGINT, then call ``stop`` once."""
    received = threading.Event()

    def handle(signum, _frame):  # type: ignore[no-untyped-def]
        log.info("server.signal", signal=signal.Signals(signum).name)
        received.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if on_ready is not None:
            on_ready()
        while not received.wait(1.0):
            pass
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        stop()


def tls_files_for(tls_dir: Path | None, data_dir: Path) -> TlsFiles:
    """TLS files from ``tls_dir`` (default ``DATA/tls``), generating a local CA when absent."""
    from crosspark.tls import ensure_dev_tls

    return ensure_dev_tls(tls_dir or data_dir / "tls")
