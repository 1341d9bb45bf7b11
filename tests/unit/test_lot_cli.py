"""``crosspark lot serve`` takes its settings from flags or from the [lot] table of a TOML file."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from crosspark.cli import cli


def test_every_setting_can_come_from_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "lot.toml"
    config.write_text(
        '[lot]\nlot_id = "lot-a"\nplatform = "127.0.0.1:1"\ntoken = "t"\nlisten = "127.0.0.1:0"\n'
        f'db = "sqlite:///{tmp_path / "lot.db"}"\ndata_dir = "{tmp_path}"\ninsecure = true\nmode = "CACHED"\n'
        "deadline_ms = 200\nexit_without_entry_fee = 500\nstatements = false\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["lot", "serve", "--config", str(config)])
    # Everything was accepted; the node refuses only because CACHED mode has no card-hash key.
    assert result.exit_code != 0 and "--card-hash-key" in result.output


def test_unknown_config_setting_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "lot.toml"
    config.write_text('[lot]\nplatfrom = "x"\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["lot", "serve", "--config", str(config)])
    assert result.exit_code != 0 and "unknown setting 'platfrom'" in result.output


def test_card_hash_key_must_be_32_bytes(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "lot",
            "serve",
            "--lot-id",
            "a",
            "--platform",
            "127.0.0.1:1",
            "--token",
            "t",
            "--card-hash-key",
            "abcd",
            "--insecure",
        ],
    )
    assert result.exit_code != 0 and "32" in result.output
