"""The operator commands `crosspark card …` and `crosspark lot register|list|status|rotate`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from crosspark.cli import cli
from crosspark.platform import Platform
from tests.support import ADMIN_TOKEN, running_platform

HEADER = "plate,color,holder_name,holder_phone,start_date,months,scope,request_id\n"


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    with running_platform(tmp_path, scheduler=False) as running:
        yield running


def run(platform: Platform | None, *args: str) -> Result:
    remote = ["--platform", platform.address, "--insecure", "--token", ADMIN_TOKEN] if platform else []
    return CliRunner().invoke(cli, [*args[:2], *remote, *args[2:]], catch_exceptions=False)


def run_json(platform: Platform, *args: str) -> dict:  # type: ignore[type-arg]
    result = run(platform, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def register(platform: Platform, lot_id: str = "lot-a") -> dict:  # type: ignore[type-arg]
    return run_json(
        platform, "lot", "register", "--lot-id", lot_id, "--name", "东门", "--mode", "cached", "--period", "daily"
    )


def test_lot_register_prints_credentials_as_json(platform: Platform) -> None:
    record = register(platform)
    assert record["lot_id"] == "lot-a" and len(record["token"]) >= 40
    assert len(bytes.fromhex(record["card_hash_key"])) == 32
    assert (record["mode"], record["period"]) == ("CACHED", "DAILY")


def test_lot_list_status_and_rotate(platform: Platform) -> None:
    first = register(platform)
    assert [lot["lot_id"] for lot in run_json(platform, "lot", "list")["lots"]] == ["lot-a"]
    assert run_json(platform, "lot", "status", "lot-a")["connected"] is False
    rotated = run_json(platform, "lot", "rotate", "lot-a")
    assert rotated["token"] != first["token"]


def test_card_apply_show_renew_cancel_list(platform: Platform) -> None:
    card = run_json(
        platform,
        "card",
        "apply",
        "--plate",
        "粤b12345",
        "--color",
        "blue",
        "--holder-name",
        "张三",
        "--holder-phone",
        "13800000000",
        "--start-date",
        "2030-01-31",
        "--months",
        "1",
    )
    assert (card["plate"], card["color"], card["state"], card["scope_lot_ids"]) == ("粤B12345", "blue", "active", [])
    assert run_json(platform, "card", "show", card["card_id"]) == card
    renewed = run_json(platform, "card", "renew", card["card_id"], "--months", "2")
    assert renewed["months"] == 3 and renewed["version"] == 2
    cancelled = run_json(platform, "card", "cancel", card["card_id"], "--reason", "moved away")
    assert cancelled["state"] == "cancelled"
    listing = run_json(platform, "card", "list", "--plate", "粤B12345")
    assert [c["card_id"] for c in listing["cards"]] == [card["card_id"]] and listing["next_page_token"] == ""


def test_human_output_masks_the_phone(platform: Platform) -> None:
    result = run(
        platform,
        "card",
        "apply",
        "--plate",
        "粤B12345",
        "--color",
        "blue",
        "--holder-name",
        "张三",
        "--holder-phone",
        "13812345678",
        "--start-date",
        "2030-01-01",
    )
    assert result.exit_code == 0 and "13812345678" not in result.output and "5678" in result.output


def test_a_refused_call_is_one_line_with_its_code_and_field(platform: Platform) -> None:
    result = run(
        platform,
        "card",
        "apply",
        "--plate",
        "粤B1234",
        "--color",
        "blue",
        "--holder-name",
        "张三",
        "--holder-phone",
        "13800000000",
    )
    assert result.exit_code == 1
    assert "INVALID_ARGUMENT" in result.output and "vehicle.plate" in result.output


def test_import_loads_valid_rows_and_reports_each_rejected_one(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'platform.db'}"
    csv_file = tmp_path / "cards.csv"
    csv_file.write_text(
        "\ufeff"
        + HEADER
        + "粤B11111,blue,张三,13800000000,2030-01-01,1,,a1\n"
        + "粤B1111,blue,李四,13800000000,2030-01-01,1,,a2\n"  # bad plate
        + "粤B22222,purple,王五,13800000000,2030-01-01,1,,a3\n"  # bad colour
        + "粤B11111,blue,赵六,13800000000,2030-01-15,1,,a4\n"  # overlaps line 2
        + "粤B33333,yellow,钱七,13800000000,2030-01-01,13,,a5\n"  # months
        + "粤B44444,0,孙八,13800000000,2030-01-01,12,lot-x,a6\n"  # unknown lot
        + "京AD12345,green,周九,+8613800000000,2030-02-01,3,,a7\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["card", "import", str(csv_file), "--db", db, "--json"], catch_exceptions=False)
    report = json.loads(result.output)
    assert (report["rows"], report["imported"], report["rejected"]) == (7, 2, 5)
    assert [r["line"] for r in report["rejections"]] == [3, 4, 5, 6, 7]
    assert "rule: length" in report["rejections"][0]["reason"]
    assert result.exit_code == 2


def test_import_again_skips_rows_already_imported(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'platform.db'}"
    csv_file = tmp_path / "cards.csv"
    csv_file.write_text(HEADER + "粤B11111,blue,张三,13800000000,2030-01-01,1,,a1\n", encoding="utf-8")
    args = ["card", "import", str(csv_file), "--db", db, "--json"]
    CliRunner().invoke(cli, args, catch_exceptions=False)
    again = json.loads(CliRunner().invoke(cli, args, catch_exceptions=False).output)
    assert (again["imported"], again["skipped"], again["rejected"]) == (0, 1, 0)


def test_imported_cards_get_consecutive_versions_after_existing_ones(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'platform.db'}"
    csv_file = tmp_path / "cards.csv"
    rows = "".join(f"粤B{i:05d},blue,张三,13800000000,2030-01-01,1,,\n" for i in range(250))
    csv_file.write_text(HEADER + rows, encoding="utf-8")
    first = json.loads(
        CliRunner().invoke(cli, ["card", "import", str(csv_file), "--db", db, "--json", "--batch", "100"]).output
    )
    csv_file.write_text(HEADER + rows.replace("2030-01-01", "2030-03-01"), encoding="utf-8")
    second = json.loads(CliRunner().invoke(cli, ["card", "import", str(csv_file), "--db", db, "--json"]).output)
    assert (first["first_version"], first["last_version"]) == (1, 250)
    assert (second["first_version"], second["last_version"]) == (251, 500)


def test_import_without_the_required_columns_fails_clearly(tmp_path: Path) -> None:
    csv_file = tmp_path / "cards.csv"
    csv_file.write_text("plate,colour\n粤B11111,blue\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["card", "import", str(csv_file), "--db", f"sqlite:///{tmp_path / 'p.db'}"])
    assert result.exit_code == 1 and "missing: color" in result.output


def test_imported_cards_are_served_by_the_platform(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'platform.db'}"
    csv_file = tmp_path / "cards.csv"
    csv_file.write_text(HEADER + "粤B11111,blue,张三,13800000000,2030-01-01,1,,a1\n", encoding="utf-8")
    CliRunner().invoke(cli, ["card", "import", str(csv_file), "--db", db], catch_exceptions=False)
    with running_platform(tmp_path, db_url=db, scheduler=False) as platform:
        listing = run_json(platform, "card", "list")
    assert [c["plate"] for c in listing["cards"]] == ["粤B11111"]
