"""`crosspark platform serve` as an operator starts it: a real process, stopped by SIGTERM."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from crosspark.client import open_channel
from crosspark.demo.processes import ServiceProcess

ADMIN = "e2e-admin-token-0123456789abcdef"


def start(args: list[str], tmp_path: Path) -> ServiceProcess:
    """Start ``crosspark ARGS`` in ``tmp_path`` and wait until it listens."""
    process = ServiceProcess(args[0], args, log_path=tmp_path / f"{args[0]}.log", env={"CROSSPARK_ADMIN_TOKEN": ADMIN})
    process.start()
    return process


def test_platform_serve_runs_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    process = start(["platform", "serve", "--listen", "127.0.0.1:0", "--db", f"sqlite:///{db}", "--insecure"], tmp_path)
    try:
        health = health_pb2_grpc.HealthStub(open_channel(str(process.address), insecure=True))
        reply = health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert process.stop() == 0  # SIGTERM
        assert db.exists()
    finally:
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
    process = start(["platform", "serve", "--config", str(config)], tmp_path)
    try:
        assert str(process.address).startswith("127.0.0.1:")
        assert process.stop() == 0
        assert (tmp_path / "cfg.db").exists()
    finally:
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
    data = tmp_path / "pdata"
    process = start(["platform", "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data)], tmp_path)
    try:
        ca = data / "tls" / "ca.pem"
        assert ca.exists()
        port = str(process.address).rsplit(":", 1)[1]
        health = health_pb2_grpc.HealthStub(open_channel(f"localhost:{port}", ca_cert=ca))
        reply = health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert process.stop() == 0
    finally:
        process.kill()


@pytest.mark.parametrize(
    "url, message",
    [("mysql://root@127.0.0.1/test", "unsupported database 'mysql'"), ("postgresql://u@127.0.0.1:1/x", "refused")],
)
def test_db_upgrade_with_a_bad_database_says_why(tmp_path: Path, url: str, message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "crosspark", "db", "upgrade", "--db", url],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode in (1, 2)
    assert message in result.stderr and "Traceback" not in result.stderr
