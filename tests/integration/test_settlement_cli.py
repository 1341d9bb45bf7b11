"""The operator commands: crosspark tariff|statement|dispute against a real platform."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from crosspark.cli import cli
from crosspark.clock import ManualClock
from crosspark.platform import Platform
from crosspark.v1 import settlement_pb2 as pb
from tests.support import ADMIN_TOKEN, running_platform
from tests.support import add_settlement_lot as add_lot
from tests.support import entry_passage as entry
from tests.support import exit_passage as exit_of
from tests.support import report_passages as report
from tests.support import settlement_stub as stub

SH = ZoneInfo("Asia/Shanghai")
DAY = datetime(2026, 11, 3, tzinfo=SH)
NOW = DAY + timedelta(days=1, hours=2)


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    with running_platform(tmp_path, clock=ManualClock(NOW), scheduler=False) as running:
        yield running


def run(platform: Platform, *args: str, token: str = ADMIN_TOKEN) -> list[dict[str, object]]:
    remote = ["--platform", platform.address, "--insecure", "--token", token]
    result = CliRunner().invoke(cli, [*args[:2], *remote, *args[2:], "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    return [r for r in records if "event" not in r]  # log lines are JSON too


@pytest.fixture
def issued(platform: Platform) -> tuple[str, str]:
    token = add_lot(platform, "lot-a", registered_at=DAY)
    run(
        platform,
        "tariff",
        "put",
        "--lot-id",
        "lot-a",
        "--effective-from",
        "2026-11-01T00:00:00+08:00",
        "--kind",
        "per_time",
        "--band",
        "08:00=1500",
        "--band",
        "20:00=1000",
    )
    e = entry("lot-a", DAY.replace(hour=9))
    report(platform, token, "lot-a", [e, exit_of(e, DAY.replace(hour=10))])
    [statement] = run(platform, "statement", "issue")
    return token, str(statement["statement_id"])


def test_tariff_put_then_show_returns_the_version(platform: Platform, issued: tuple[str, str]) -> None:
    [shown] = run(platform, "tariff", "show", "--lot-id", "lot-a")
    assert (shown["version"], shown["kind"], shown["bands"][0]) == (
        1,
        "per_time",
        {"start": "08:00", "unit_fee_fen": 1500},
    )  # type: ignore[index]


def test_statement_list_shows_issued_statement(platform: Platform, issued: tuple[str, str]) -> None:
    [listed] = run(platform, "statement", "list", "--lot-id", "lot-a")
    assert (listed["statement_id"], listed["total_fee_fen"]) == (issued[1], 1500)


def test_fetch_then_offline_verify_succeeds(platform: Platform, issued: tuple[str, str], tmp_path: Path) -> None:
    out = tmp_path / "s.csv"
    [fetched] = run(platform, "statement", "fetch", issued[1], "--out", str(out), token=issued[0])
    key = json.loads((tmp_path / "s.csv.sig.json").read_text())["public_key"]
    result = CliRunner().invoke(cli, ["statement", "verify", str(out), "--public-key", key, "--json"])
    assert fetched["verified"] is True
    assert next(json.loads(x) for x in result.output.splitlines() if '"ok"' in x)["ok"] is True


def test_verify_fails_on_tampered_file(platform: Platform, issued: tuple[str, str], tmp_path: Path) -> None:
    out = tmp_path / "s.csv"
    run(platform, "statement", "fetch", issued[1], "--out", str(out), token=issued[0])
    key = json.loads((tmp_path / "s.csv.sig.json").read_text())["public_key"]
    out.write_bytes(out.read_bytes().replace(b"15.00", b"05.00"))
    result = CliRunner().invoke(cli, ["statement", "verify", str(out), "--public-key", key, "--json"])
    assert result.exit_code == 1
    assert next(json.loads(x) for x in result.output.splitlines() if '"ok"' in x)["ok"] is False


def test_verify_fetches_key_from_platform(platform: Platform, issued: tuple[str, str], tmp_path: Path) -> None:
    out = tmp_path / "s.csv"
    run(platform, "statement", "fetch", issued[1], "--out", str(out), token=issued[0])
    [verified] = run(platform, "statement", "verify", str(out))
    assert verified["ok"] is True


def test_dispute_list_and_resolve(platform: Platform, issued: tuple[str, str]) -> None:

    statement = stub(platform, issued[0]).ListStatements(pb.ListStatementsRequest(lot_id="lot-a")).statements[0]
    line = pb.ReconciliationItem(
        stay_id="", result=pb.LINE_RESULT_FEE_MISMATCH, line_no=1, platform_fee_fen=1500, lot_fee_fen=1000
    )
    from settlement import statement_file
    from tests.integration.test_settlement_statements import fetch

    _, data = fetch(platform, issued[0], statement.statement_id)
    line.stay_id = statement_file.parse(data).lines[0].stay_id
    stub(platform, issued[0]).SubmitReconciliation(
        pb.Reconciliation(lot_id="lot-a", statement_id=statement.statement_id, sha256=statement.sha256, items=[line])
    )
    [open_dispute] = run(platform, "dispute", "list", "--state", "open")
    [resolved] = run(platform, "dispute", "resolve", str(open_dispute["dispute_id"]), "--accept-lot", "--note", "ok")
    assert resolved["state"] == "accepted"
