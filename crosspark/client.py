"""Client channels to crosspark servers: TLS with a CA file (or plaintext to loopback) and the
bearer token on every call."""

from __future__ import annotations

from pathlib import Path

import grpc

from crosspark.rpc import BearerClientInterceptor
from crosspark.server import DEFAULT_MAX_MESSAGE_BYTES, ConfigError, is_loopback, split_host_port


def open_channel(
    target: str,
    *,
    token: str | None = None,
    ca_cert: Path | None = None,
    insecure: bool = False,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    options: list[tuple[str, object]] | None = None,
) -> grpc.Channel:
    """A channel to ``HOST:PORT``. Plaintext only to loopback addresses, as servers enforce too.
    ``options`` are extra gRPC channel arguments (e.g. reconnect backoff)."""
    host, _ = split_host_port(target)
    channel_options: list[tuple[str, object]] = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        *(options or []),
    ]
    if insecure:
        if not is_loopback(host):
            raise ConfigError(f"--insecure (plaintext) is allowed only to a loopback address, not {host!r}")
        channel = grpc.insecure_channel(target, options=channel_options)
    else:
        root = ca_cert.read_bytes() if ca_cert is not None else None
        channel = grpc.secure_channel(
            target, grpc.ssl_channel_credentials(root_certificates=root), options=channel_options
        )
    if token:
        channel = grpc.intercept_channel(channel, BearerClientInterceptor(token))
    return channel
