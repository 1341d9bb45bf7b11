"""The Prometheus metrics endpoint (``/metrics`` over HTTP) of a service process."""

from __future__ import annotations

from prometheus_client import start_http_server

from crosspark.server import split_host_port


def serve_metrics(listen: str) -> int:
    """Expose metrics on ``HOST:PORT`` (port 0: the OS chooses); returns the port."""
    host, port = split_host_port(listen)
    server, _thread = start_http_server(port, addr=host)
    return int(server.server_address[1])
