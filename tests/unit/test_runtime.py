"""The shared runtime: clocks, configuration precedence, log redaction, token checks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from crosspark.auth import ADMIN, Principal, Role, TokenAuthenticator, allowed, bearer, method_access, require_lot
from crosspark.cli_support import config_option
from crosspark.clock import ManualClock, ScaledClock, parse_clock
from crosspark.errors import PermissionDenied
from crosspark.v1 import common_pb2


def test_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(datetime(2026, 11, 24, tzinfo=UTC))
    assert clock.now() == datetime(2026, 11, 24, tzinfo=UTC)
    clock.advance(timedelta(hours=2))
    assert clock.now() == datetime(2026, 11, 24, 2, tzinfo=UTC)


def test_manual_clock_refuses_naive_start() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ManualClock(datetime(2026, 11, 24))


def test_scaled_clock_spec_round_trips_between_processes() -> None:
    clock = parse_clock("scaled:2026-11-01T00:00:00+00:00:3600:1000.0")
    assert isinstance(clock, ScaledClock)
    assert clock.factor == 3600 and clock.epoch == 1000.0
    assert clock.start == datetime(2026, 11, 1, tzinfo=UTC)


def test_unknown_clock_spec_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown clock"):
        parse_clock("sundial")


@click.command()
@config_option("platform")
@click.option("--listen", default="127.0.0.1:1", envvar="TEST_LISTEN")
@click.option("--tls-dir", default="none")
def show(listen: str, tls_dir: str) -> None:
    click.echo(f"{listen} {tls_dir}")


@pytest.mark.parametrize(
    "args, env, expected",
    [
        ([], {}, "127.0.0.1:1 none"),  # built-in default
        (["--config", "{cfg}"], {}, "127.0.0.1:2 /tls"),  # file beats default
        (["--config", "{cfg}"], {"TEST_LISTEN": "127.0.0.1:3"}, "127.0.0.1:3 /tls"),  # env beats file
        (["--config", "{cfg}", "--listen", "127.0.0.1:4"], {"TEST_LISTEN": "127.0.0.1:3"}, "127.0.0.1:4 /tls"),
    ],
)
def test_settings_precedence_is_flag_env_file_default(tmp_path: Path, args, env, expected) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "c.toml"
    cfg.write_text('[platform]\nlisten = "127.0.0.1:2"\ntls-dir = "/tls"\n')
    result = CliRunner().invoke(show, [a.format(cfg=cfg) for a in args], env=env)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == expected


def test_config_file_with_unknown_setting_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[platform]\nlisten_on = 1\n")
    result = CliRunner().invoke(show, ["--config", str(cfg)])
    assert result.exit_code == 2
    assert "unknown setting 'listen_on'" in result.output


def test_log_lines_never_carry_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    import structlog

    from crosspark import logs

    logs.configure("info", "json")
    structlog.get_logger("t").info("lot.registered", lot_id="a", token="s3cret", holder_phone="13800000000")
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["token"] == "***" and line["holder_phone"] == "***" and line["lot_id"] == "a"


def test_every_crosspark_rpc_declares_its_access() -> None:
    from google.protobuf import descriptor_pool

    from crosspark.v1 import admin_pb2, cards_pb2, gate_pb2, settlement_pb2

    for module in (admin_pb2, cards_pb2, gate_pb2, settlement_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                access = method_access(f"/{service.full_name}/{method.name}")
                assert access != common_pb2.ACCESS_UNSPECIFIED, method.full_name
    assert descriptor_pool.Default().FindServiceByName("crosspark.v1.GateService")


def test_methods_outside_crosspark_need_no_credential() -> None:
    assert method_access("/grpc.health.v1.Health/Check") is None


def test_bearer_token_is_read_only_from_bearer_scheme() -> None:
    assert bearer((("authorization", "Bearer abc"),)) == "abc"
    assert bearer((("authorization", "Basic abc"),)) is None
    assert bearer(None) is None


def test_authenticator_tells_admin_lot_and_strangers_apart() -> None:
    auth = TokenAuthenticator(admin_token="a" * 20, lot_lookup={"t" * 20: "lot-1"}.get)
    assert auth.authenticate("a" * 20) == ADMIN
    assert auth.authenticate("t" * 20) == Principal(Role.LOT, "lot-1")
    assert auth.authenticate("x" * 20) is None
    assert auth.authenticate("") is None


def test_access_rules() -> None:
    lot = Principal(Role.LOT, "lot-1")
    assert allowed(common_pb2.ACCESS_ADMIN, lot) is False
    assert allowed(common_pb2.ACCESS_LOT, lot) is True
    assert allowed(common_pb2.ACCESS_GATE, lot) is False
    assert allowed(common_pb2.ACCESS_LOT, None) is None
    assert allowed(common_pb2.ACCESS_GATE, None, gate_open=True) is True


def test_a_lot_acts_only_as_itself() -> None:
    require_lot(Principal(Role.LOT, "lot-1"), "lot-1")
    require_lot(ADMIN, "lot-2")
    with pytest.raises(PermissionDenied, match="may not act for lot 'lot-2'"):
        require_lot(Principal(Role.LOT, "lot-1"), "lot-2")


def test_scaled_clock_with_epoch_file_stands_still_until_fired(tmp_path: Path) -> None:
    start = datetime(2026, 10, 1, tzinfo=UTC)
    clock = ScaledClock(start, 3600.0, epoch_file=tmp_path / "epoch")
    other = parse_clock(clock.spec)  # what another process is given
    assert clock.now() == start and other.now() == start
    clock.fire(delay=-10.0)  # as if fired ten real seconds ago: ten simulated hours have passed
    assert other.now() >= start + timedelta(hours=10)
    assert clock.now() >= start + timedelta(hours=10)


def test_bench_runs_a_benchmark_by_its_short_name_and_refuses_unknown_ones() -> None:
    from crosspark.cli import cli

    runner = CliRunner()
    ran = runner.invoke(cli, ["bench", "tariff", "--quick", "--json"])
    assert ran.exit_code == 0, ran.output
    assert "price_stays" in ran.output
    refused = runner.invoke(cli, ["bench", "no_such_bench"])
    assert refused.exit_code != 0 and "unknown benchmark(s) no_such_bench" in refused.output
