"""`crosspark platform serve` as an operator starts it: a real process, stopped by SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from crosspark.client import open_channel

ADMIN = "e2e-admin-token-0123456789abcdef"


def start(args: list[str], tmp_path: Path, **env: str) -> tuple[subprocess.Popen[str], str]:
    """Start ``crosspark ARGS``; return the process and the address it printed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "crosspark", "--log-format", "json", *args],
        cwd=tmp_path,
        env={**os.environ, "CROSSPARK_ADMIN_TOKEN": ADMIN, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        if found := re.search(r"listening on (\S+)", line):
            return process, found.group(1)
    process.wait(timeout=30)
    raise AssertionError(f"server exited with {process.returncode} before listening")


def test_platform_serve_runs_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    process, address = start(
        ["platform", "serve", "--listen", "127.0.0.1:0", "--db", f"sqlite:///{db}", "--insecure"], tmp_path
    )
    try:
        health = health_pb2_grpc.HealthStub(open_channel(address, insecure=True))
        assert (
            health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
        )
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert db.exists()
    finally:
        if process.poll() is None:
            process.kill()


def test_platform_serve_refuses_insecure_on_public_address(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "crosspark", "platform", "serve", "--listen", "0.0.0.0:0", "--insecure"],
        cwd=tmp_path,
        env={**os.environ, "CROSSPARK_ADMIN_TOKEN": ADMIN},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "loopback" in result.stderr


def test_platform_serve_takes_settings_from_config_file(tmp_path: Path) -> None:
    config = tmp_path / "crosspark.toml"
    config.write_text(f'[platform]\nlisten = "127.0.0.1:0"\ninsecure = true\ndb = "sqlite:///{tmp_path / "cfg.db"}"\n')
    process, address = start(["platform", "serve", "--config", str(config)], tmp_path)
    try:
        assert address.startswith("127.0.0.1:")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert (tmp_path / "cfg.db").exists()
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.parametrize(
    "content, message",
    [("[platform]\nlisten = 5\nbogus = 1\n", "unknown setting 'bogus'"), ("not toml [", "not valid TOML")],
)
def test_bad_config_file_is_refused_with_reason(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(content)
    result = subprocess.run(
        [sys.executable, "-m", "crosspark", "platform", "serve", "--config", str(config)],
        cwd=tmp_path,
        env={**os.environ, "CROSSPARK_ADMIN_TOKEN": ADMIN},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_platform_serve_with_tls_generates_a_local_ca(tmp_path: Path) -> None:
    process, address = start(["platform", "serve", "--listen", "127.0.0.1:0", "--data-dir", "pdata"], tmp_path)
    try:
        ca = tmp_path / "pdata" / "tls" / "ca.pem"
        assert ca.exists()
        port = address.rsplit(":", 1)[1]
        health = health_pb2_grpc.HealthStub(open_channel(f"localhost:{port}", ca_cert=ca))
        assert (
            health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
        )
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
